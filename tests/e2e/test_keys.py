"""Bring-your-own key: checked upstream, encrypted at rest, shown only as a mask, never
logged, deleted for real; session-only keys never reach the database."""

import hashlib
import re
import secrets

import pytest

from tests.conftest import new_user
from tests.harness.client import UserClient
from tests.harness.page import last_reply


def planted_key() -> str:
    return f"sk-sim-{secrets.token_hex(16)}a1b2"


def redis_text(app) -> str:
    """Everything in the app's Redis database (broker, channel layer, cache, live text)."""
    if app.mode != "production":
        return ""
    import redis

    client = redis.Redis.from_url(app.env["REDIS_URL"])
    dumped = []
    for key in client.scan_iter(count=500):
        kind = client.type(key).decode()
        if kind == "string":
            dumped.append(client.get(key) or b"")
        elif kind == "list":
            dumped.extend(client.lrange(key, 0, -1))
        elif kind == "zset":
            dumped.extend(member for member, _ in client.zrange(key, 0, -1, withscores=True))
        elif kind == "hash":
            dumped.extend(v for pair in client.hgetall(key).items() for v in pair)
        elif kind == "set":
            dumped.extend(client.smembers(key))
        dumped.append(key)
    return "\n".join(item.decode("latin-1") for item in dumped)


def database_text(app) -> str:
    """Everything the database holds, as text, to grep for a secret."""
    if app.mode == "embedded":
        data = app.workdir / "data"
        return "".join(p.read_bytes().decode("latin-1") for p in data.glob("db.sqlite3*"))
    tables = [r[0] for r in app.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    return "\n".join(
        str(row) for table in tables for row in app.query(f'SELECT row_to_json(t)::text FROM "{table}" t')
    )


def chat_once(user, sim):
    sim.configure(reply_mode="numbered", reply_tokens=5)
    session_id, branch_id = user.new_session(provider="simulator")
    user.send(session_id, branch_id, "hello")
    return last_reply(user.wait_idle(session_id, branch_id))


def test_stored_key_is_masked_encrypted_used_and_never_leaked(app, sim):
    key = planted_key()
    user = UserClient(app).signup("keyowner_" + secrets.token_hex(3))
    resp = user.add_key("simulator", key)
    assert "sk-...a1b2" in resp.text and key not in resp.text
    keys_page = user.get("/keys/").text
    assert "sk-...a1b2" in keys_page and key not in keys_page
    assert "not used yet" in keys_page

    reply = chat_once(user, sim)
    assert reply.status == "done"
    used = [r for r in sim.requests() if r["path"] == "/v1/chat/completions"][-1]
    assert used["api_key_fingerprint"] == hashlib.sha256(key.encode()).hexdigest()[:12], "the real key went upstream"
    assert "last used" in user.get("/keys/").text

    ciphertext, mask = app.query("SELECT ciphertext, mask FROM providers_apikey ORDER BY id DESC LIMIT 1")[0]
    assert mask == "sk-...a1b2" and key not in ciphertext and key[7:-4] not in ciphertext
    assert key not in database_text(app)
    assert key not in redis_text(app), "nor the broker, channel layer or cache"
    assert key not in app.logs(), "the key must never reach a log"

    other = new_user(app)
    assert "sk-...a1b2" not in other.get("/keys/").text, "a second user sees none of it"


def test_session_only_key_never_touches_the_database_and_ends_with_sign_out(app, sim):
    key = planted_key()
    user = UserClient(app).signup("ephemeral_" + secrets.token_hex(3))
    resp = user.add_key("simulator", key, session_only=True)
    assert "this browser session only" in resp.text and "sk-...a1b2" in resp.text
    assert chat_once(user, sim).status == "done"
    assert app.query("SELECT count(*) FROM providers_apikey")[0][0] == app.query(
        "SELECT count(*) FROM providers_apikey WHERE user_id <> (SELECT id FROM auth_user WHERE username = %s)",
        (user.username,),
    )[0][0]
    assert key not in database_text(app)
    assert key not in redis_text(app), "session-only keys are stored encrypted"
    assert key not in app.logs()

    user.post("/logout/", htmx=False)
    user.post("/login/", {"username": user.username, "password": "correct-horse-battery-9"}, htmx=False)
    assert "sk-...a1b2" not in user.get("/keys/").text, "the session-only key ended with the session"


def test_rejected_key_is_explained_and_not_saved(app, sim):
    user = UserClient(app).signup("revoked_" + secrets.token_hex(3))
    key = "sk-sim-revoked-" + secrets.token_hex(8)
    resp = user.add_key("simulator", key)
    assert "rejected this key (401)" in resp.text
    assert key not in resp.text
    assert 'class="mask"' not in resp.text, "no mask: nothing was saved"
    assert key not in database_text(app) and key not in app.logs()


@pytest.mark.parametrize(
    "fault, says",
    [({"status": 503}, "Simulator did not accept the check"), ({"delay": 5}, "Could not reach Simulator to check the key")],
    ids=["503", "timeout"],
)
def test_key_check_failure_says_why_and_saves_nothing(app, sim, fault, says):
    sim.add_fault(match={"path": "/v1/models"}, **fault)
    user = UserClient(app).signup("flaky_" + secrets.token_hex(3))
    key = planted_key()
    resp = user.add_key("simulator", key)
    assert says in resp.text
    assert 'class="mask"' not in resp.text and key not in resp.text


def test_delete_removes_the_row(app, sim):
    user = new_user(app)
    before = app.query("SELECT count(*) FROM providers_apikey")[0][0]
    resp = user.post("/keys/simulator/delete/")
    assert resp.status_code == 200
    simulator_card = resp.text.split('id="provider-simulator"')[1].split("</section>")[0]
    assert 'class="mask"' not in simulator_card
    assert app.query("SELECT count(*) FROM providers_apikey")[0][0] == before - 1


@pytest.mark.parametrize("path", ["/admin/providers/apikey/", "/admin/chat/turn/"])
def test_admin_never_shows_key_material(embedded_app, sim, path):
    app = embedded_app
    key = planted_key()
    user = UserClient(app).signup("admined_" + secrets.token_hex(3))
    user.add_key("simulator", key)
    chat_once(user, sim)
    name = "op_" + secrets.token_hex(3)
    app.env["DJANGO_SUPERUSER_PASSWORD"] = "operator-pass-123"
    app.manage("createsuperuser", "--noinput", "--username", name, "--email", "op@example.com")
    operator = UserClient(app)
    operator.get("/admin/login/")
    operator.post("/admin/login/?next=/admin/", {"username": name, "password": "operator-pass-123"}, htmx=False)
    listing = operator.get(path).text
    assert "sk-...a1b2" in listing or "chat_turn" in path or "Turn" in listing
    ciphertext = app.query("SELECT ciphertext FROM providers_apikey ORDER BY id DESC LIMIT 1")[0][0]
    for link in re.findall(r'href="(/admin/(?:providers/apikey|chat/turn)/\d+/change/)"', listing)[:3]:
        detail = operator.get(link).text
        assert key not in detail and ciphertext not in detail
    assert key not in listing and ciphertext not in listing


def test_a_planted_key_appears_nowhere_in_a_full_flow(app, sim):
    """Add key, chat, an error, fork, exports, tree, account and admin pages, with every HTTP
    body, every WebSocket frame, every log line, the database and Redis captured."""
    import asyncio

    from tests.harness.client import collect

    key = planted_key()
    user = UserClient(app).signup("secrecy_" + secrets.token_hex(3))
    bodies = [user.add_key("simulator", key).text]
    sim.configure(reply_mode="echo")
    sid, bid = user.new_session(provider="simulator")

    async def run():
        async with user.socket(sid) as ws:
            bodies.append(user.send(sid, bid, "hello").text)
            frames = await collect(ws, until='hx-swap-oob="true"')
            user.wait_idle(sid, bid)
            sim.add_fault(status=500)
            bodies.append(user.send(sid, bid, "now fail").text)
            frames += await collect(ws, until="The provider had an error (500)")
            return frames

    frames = asyncio.run(run())
    page = user.wait_idle(sid, bid)
    bodies.append(page)
    first_reply = int(re.findall(r'<article class="msg msg-assistant[^"]*" id="msg-(\d+)"', page)[0])
    fork = user.post(f"/sessions/{sid}/m/{first_reply}/fork/", htmx=False)
    bodies.append(user.get(fork.headers["location"]).text)
    for path in (f"/sessions/{sid}/export.json", f"/sessions/{sid}/export.csv", f"/sessions/{sid}/tree/", "/keys/", "/account/"):
        resp = user.get(path)
        assert resp.status_code == 200, path
        bodies.append(resp.text)
    name = "op_" + secrets.token_hex(3)
    app.env["DJANGO_SUPERUSER_PASSWORD"] = "operator-pass-123"
    app.manage("createsuperuser", "--noinput", "--username", name, "--email", "op@example.com")
    operator = UserClient(app)
    operator.get("/admin/login/")
    operator.post("/admin/login/?next=/admin/", {"username": name, "password": "operator-pass-123"}, htmx=False)
    for path in ("/admin/providers/apikey/", "/admin/chat/turn/", "/admin/chat/chatsession/"):
        listing = operator.get(path)
        assert listing.status_code == 200, path
        bodies.append(listing.text)
        for link in re.findall(r'href="(/admin/[a-z]+/[a-z]+/\d+/change/)"', listing.text)[:3]:
            bodies.append(operator.get(link).text)
    assert len(frames) > 2 and any("The provider had an error (500)" in f for f in frames)
    captured = "\n".join(bodies + frames) + app.logs() + database_text(app) + redis_text(app)
    assert key not in captured, "the plaintext key leaked"
    assert key[7:-4] not in captured, "not even its middle"
