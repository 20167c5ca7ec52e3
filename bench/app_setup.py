"""Create N ready-to-chat users fast, inside the app's environment (run by the bench with the
app's own env: same database, same secrets).

    python -m bench.app_setup <prefix> <count>

Each user gets one hashed password (hashed once), a simulator key stored the way the app
stores keys (`crypto.encrypt`, `ApiKey`, provider "simulator"), one chat session with its main
branch (`services.session_create`, as "New session" does), and a logged-in Django session
(`SessionStore`, as `login()` would write it). Prints one JSON line:
`{"users": [{"username", "sessionid", "csrftoken", "session_id", "branch_id"}, ...]}`.
"""

from __future__ import annotations

import json
import secrets
import string
import sys
from importlib import import_module


def main() -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.auth.hashers import make_password
    from django.db import transaction
    from django.utils.module_loading import import_string

    from playground.chat import services
    from playground.chat.models import Branch
    from playground.providers import crypto
    from playground.providers.models import ApiKey

    prefix, count = sys.argv[1], int(sys.argv[2])
    User = get_user_model()
    password = make_password("bench-password-not-secret-1")
    with transaction.atomic():
        User.objects.bulk_create([User(username=f"{prefix}{i}", password=password) for i in range(count)])
        users = list(User.objects.filter(username__startswith=prefix).order_by("id"))
        keys = [f"sk-sim-bench-{prefix}-{i}" for i in range(count)]
        ApiKey.objects.bulk_create(
            [ApiKey(user=u, provider="simulator", ciphertext=crypto.encrypt(k), mask=crypto.mask(k)) for u, k in zip(users, keys)]
        )
    engine = import_module(settings.SESSION_ENGINE)
    # The backend a real sign-in records: the first that can load a user (the lockout backend
    # listed before it only refuses sign-ins and has no get_user).
    backend = next(b for b in settings.AUTHENTICATION_BACKENDS if hasattr(import_string(b), "get_user"))
    alphabet = string.ascii_letters + string.digits
    out = []
    for user in users:
        chat = services.session_create(user=user)
        if chat.provider != "simulator":
            chat.provider, chat.model = "simulator", "gpt-4o-mini"
            chat.save(update_fields=["provider", "model"])
        branch = Branch.objects.filter(session=chat).order_by("id").first()
        store = engine.SessionStore()
        store[SESSION_KEY] = user._meta.pk.value_to_string(user)
        store[BACKEND_SESSION_KEY] = backend
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.create()
        out.append(
            {
                "username": user.username,
                "sessionid": store.session_key,
                "csrftoken": "".join(secrets.choice(alphabet) for _ in range(32)),
                "session_id": chat.pk,
                "branch_id": branch.pk,
                "model": chat.model,
            }
        )
    print(json.dumps({"users": out}))


if __name__ == "__main__":
    main()
