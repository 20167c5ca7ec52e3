from django.core.management.base import BaseCommand

from playground.providers.services import key_secrets_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored API key under the first secret of PLAYGROUND_KEY_SECRETS. "
        "Put the new secret first, run this, then remove the old secret."
    )

    def handle(self, *args, **options):
        count = key_secrets_rotate()
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {count} key(s) under the current secret."))
