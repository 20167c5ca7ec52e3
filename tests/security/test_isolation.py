"""Walk every route the app has, as another user and as an anonymous visitor, with the
first user's object ids: nothing of the first user's comes back, nothing changes.

Routes are enumerated from the URL and WebSocket routing configuration, so a new route is
covered without editing this file; a route with a parameter this file cannot fill fails
loudly, so its author has to say which object it refers to.
"""

from __future__ import annotations

import asyncio

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from cryptography.fernet import Fernet
from django.urls import URLPattern, URLResolver, get_resolver

from playground.chat.models import Branch, Budget, ChatSession, FanOut, Message, Turn
from playground.chat.routing import websocket_urlpatterns
from playground.lab.models import LabRun
from playground.providers import crypto
from playground.providers.models import ApiKey

SECRET_KEY_TEXT = "sk-owner-planted-secret-key-0000a1b2"
# Public by design: sign-in/up pages and static files.
PUBLIC = {"login", "signup", "logout"}
# A forgotten password is reset signed out; the deletion notice is shown once signed out.
PUBLIC |= {"password_reset", "password_reset_done", "password_reset_confirm", "password_reset_complete", "account-deleted"}


def _walk(resolver, prefix=""):
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            if str(entry.pattern).startswith("admin/"):
                continue  # the admin has its own staff-only auth: tested below
            yield from _walk(entry, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield entry.name, prefix + str(entry.pattern), entry


def routes():
    return sorted({(name, pattern) for name, pattern, _ in _walk(get_resolver())})


@pytest.fixture
def world(db, settings, django_user_model):
    settings.PLAYGROUND_KEY_SECRETS = [Fernet.generate_key().decode()]
    crypto.reset_cache()
    owner = django_user_model.objects.create_user("owner", password="pw-owner-12345")
    intruder = django_user_model.objects.create_user("intruder", password="pw-intruder-12345")
    chat = ChatSession.objects.create(owner=owner, title="Owner's secret plans", provider="simulator", model="gpt-4o-mini")
    branch = Branch.objects.create(session=chat, name="main")
    question = Message.objects.create(session=chat, role="user", content="owner question", depth=0, branch=branch)
    answer = Message.objects.create(session=chat, role="assistant", content="owner answer", depth=1, parent=question, branch=branch)
    turn = Turn.objects.create(message=answer, session=chat, branch=branch, user=owner, provider="simulator", api="chat", model="gpt-4o-mini")
    branch.head = answer
    branch.save()
    fanout = FanOut.objects.create(session=chat, parent_branch=branch, origin=answer, name="fan-out 1", join=True)
    Branch.objects.create(session=chat, name="fan-out 1.1", head=answer, forked_from=answer, parent_branch=branch)
    Budget.objects.create(user=owner, provider="simulator", daily_cap="1.00")
    ApiKey.objects.create(user=owner, provider="simulator", ciphertext=crypto.encrypt(SECRET_KEY_TEXT), mask="sk-...a1b2")
    run = LabRun.objects.create(owner=owner, session=chat, status=LabRun.Status.RUNNING)
    ids = {
        "session_id": chat.pk,
        "branch_id": branch.pk,
        "message_id": answer.pk,
        "turn_id": turn.pk,
        "fanout_id": fanout.pk,
        "run_id": run.pk,
        "provider_slug": "simulator",
        "fmt": "json",
        "uidb64": "MQ",  # a reset link for user 1, with a token that is not its own
        "token": "bogus-token",
    }
    yield {"owner": owner, "intruder": intruder, "ids": ids}
    crypto.reset_cache()




def concrete(pattern, ids) -> str:
    """The route's path with the owner's ids filled in (path converters and regex groups)."""
    import re

    def fill(name):
        if name not in ids:
            raise AssertionError(f"route {pattern!r} takes <{name}>: add it to the isolation test's ids")
        return str(ids[name])

    path = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: fill(m.group(1)), pattern)
    path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: fill(m.group(1)), path)
    return "/" + path.lstrip("^").rstrip("$").replace("\\.", ".")


def snapshot(owner):
    """Everything of the owner's that a request could change."""
    return (
        list(ChatSession.objects.filter(owner=owner).values_list("id", "title", "provider", "model", "system_prompt", "cache_scope", "deleted_at")),
        list(Branch.objects.filter(session__owner=owner).values_list("id", "name", "head_id")),
        list(FanOut.objects.filter(session__owner=owner).values_list("id", "name", "joined_at", "join_message_id")),
        list(Message.objects.filter(session__owner=owner).values_list("id", "content", "status", "parent_id")),
        list(Turn.objects.filter(session__owner=owner).values_list("id", "stop_requested", "error_kind")),
        list(ApiKey.objects.filter(user=owner).values_list("id", "ciphertext")),
        list(Budget.objects.filter(user=owner).values_list("id", "daily_cap", "monthly_cap")),
    )


FORM = {"content": "intruder text", "title": "pwned", "name": "pwned", "prompts": "a\nb", "api_key": "sk-x", "provider": "simulator",
        "model": "gpt-4o-mini", "api": "chat", "cache_scope": "session"}


def test_every_route_is_covered():
    names = {name for name, _ in routes()}
    assert {"session", "branch", "message-send", "session-export", "turn-stop", "keys"} <= names


@pytest.mark.parametrize("name, pattern", routes())
def test_second_user_and_anonymous_get_nothing_and_change_nothing(client, world, name, pattern):
    path = concrete(pattern, world["ids"])
    before = snapshot(world["owner"])
    for who in ("anonymous", "intruder"):
        client.logout()
        if who == "intruder":
            client.force_login(world["intruder"])
        for method in ("get", "post"):
            resp = getattr(client, method)(path, FORM)
            body = resp.content.decode(errors="replace") if not getattr(resp, "streaming", False) else ""
            assert "Owner's secret plans" not in body and "owner answer" not in body and "owner question" not in body
            assert SECRET_KEY_TEXT not in body and "sk-...a1b2" not in body
            if who == "anonymous" and name not in PUBLIC:
                assert resp.status_code in (302, 405), f"{method.upper()} {path} as anonymous: {resp.status_code}"
                if resp.status_code == 302:
                    assert resp["Location"].startswith("/login/")
            elif who == "intruder" and any(k in pattern for k in ("session_id", "branch_id", "turn_id", "message_id", "fanout_id")):
                assert resp.status_code in (404, 405), f"{method.upper()} {path} as another user: {resp.status_code}"
    assert snapshot(world["owner"]) == before, f"{path} changed the owner's data"


def test_admin_is_staff_only(client, world):
    client.force_login(world["intruder"])
    for path in ("/admin/", "/admin/providers/apikey/", "/admin/chat/chatsession/"):
        resp = client.get(path)
        assert resp.status_code == 302 and "/admin/login/" in resp["Location"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("route", [str(r.pattern) for r in websocket_urlpatterns])
def test_websockets_refuse_other_users_and_anonymous(world, route):
    import re

    from django.contrib.auth.models import AnonymousUser

    path = "/" + re.sub(r"<int:(\w+)>", lambda m: str(world["ids"][m.group(1)]), route)
    app = URLRouter(websocket_urlpatterns)

    async def attempt(user):
        communicator = WebsocketCommunicator(app, path)
        communicator.scope["user"] = user
        connected, _ = await communicator.connect()
        await communicator.disconnect()
        return connected

    assert asyncio.run(attempt(world["intruder"])) is False
    assert asyncio.run(attempt(AnonymousUser())) is False
    assert asyncio.run(attempt(world["owner"])) is True


@pytest.mark.parametrize("name, pattern", routes())
def test_every_post_needs_a_csrf_token(world, name, pattern):
    """Even the owner, signed in, cannot POST without the CSRF token (forms and htmx alike)."""
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(world["owner"])
    before = snapshot(world["owner"])
    resp = client.post(concrete(pattern, world["ids"]), FORM, HTTP_HX_REQUEST="true")
    assert resp.status_code in (403, 405), f"{pattern}: {resp.status_code}"
    assert snapshot(world["owner"]) == before
