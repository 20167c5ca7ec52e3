from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "playground.accounts"

    def ready(self):
        from .redact import install

        install()  # reset-link tokens never reach the request logs
