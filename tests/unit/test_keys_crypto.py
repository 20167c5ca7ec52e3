from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.utils import timezone

from playground.providers import crypto
from playground.providers import registry
from playground.providers.models import ApiKey
from playground.providers.selectors import key_plaintext, key_ref_for, key_statuses

KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789a1b2"


@pytest.fixture
def secrets_setting(settings):
    def use(*secrets):
        settings.PLAYGROUND_KEY_SECRETS = list(secrets)
        crypto.reset_cache()

    yield use
    crypto.reset_cache()


def test_mask_shows_only_prefix_and_last_four():
    assert crypto.mask(KEY) == "sk-...a1b2"
    assert crypto.mask("short") == "****"


def test_ciphertext_is_authenticated_and_never_the_key(secrets_setting):
    secrets_setting(Fernet.generate_key().decode())
    token = crypto.encrypt(KEY)
    assert KEY not in token and crypto.decrypt(token) == KEY
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(crypto.KeyUnreadable):
        crypto.decrypt(tampered)


@pytest.mark.django_db
def test_rotation_reencrypts_so_the_old_secret_can_be_removed(secrets_setting, make_user):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    secrets_setting(old)
    user = make_user("rot", key=KEY)
    secrets_setting(new, old)
    call_command("rotate_key_secrets")
    secrets_setting(new)  # the old secret is gone
    row = ApiKey.objects.get(user=user)
    assert crypto.decrypt(row.ciphertext) == KEY
    assert key_plaintext(user_id=user.id, key_ref=f"db:{row.pk}") == KEY
    with pytest.raises(Exception):
        Fernet(old.encode()).decrypt(row.ciphertext.encode())


@pytest.mark.django_db
def test_expired_key_is_not_used_and_shows_expired(secrets_setting, make_user, make_key):
    secrets_setting(Fernet.generate_key().decode())
    user = make_user("exp")
    provider = registry.providers()["openai"]
    key = make_key(user, KEY, expires_at=timezone.now() - timedelta(minutes=1))
    assert key_ref_for(user=user, session={}, provider=provider) is None
    with pytest.raises(LookupError):
        key_plaintext(user_id=user.id, key_ref=f"db:{key.pk}")
    status = next(s for s in key_statuses(user=user, session={}) if s.provider.slug == "openai")
    assert status.expired


@pytest.mark.django_db
def test_another_users_key_ref_does_not_decrypt(secrets_setting, owner, make_user, make_key):
    secrets_setting(Fernet.generate_key().decode())
    thief = make_user("thief")
    key = make_key(owner, KEY)
    with pytest.raises(LookupError):
        key_plaintext(user_id=thief.id, key_ref=f"db:{key.pk}")


def test_operator_providers_are_parsed_and_validated(settings):
    settings.PLAYGROUND_PROVIDERS = [{"name": "Local vLLM", "base_url": "http://127.0.0.1:9000/v1/", "api": "responses", "needs_key": False}]
    registry.providers.cache_clear()
    try:
        found = registry.providers()
        assert list(found)[0] == "openai"
        assert found["local-vllm"].base_url == "http://127.0.0.1:9000/v1" and found["local-vllm"].api == "responses"
        settings.PLAYGROUND_PROVIDERS = [{"name": "Bad", "base_url": "file:///etc/passwd"}]
        registry.providers.cache_clear()
        with pytest.raises(ImproperlyConfigured):
            registry.providers()
    finally:
        registry.providers.cache_clear()


