"""Infrastructure faults mid-reply (production stack): the reply survives and is stored whole."""

import re
import time

import pytest

from tests.conftest import new_user
from tests.harness.page import last_reply
from tests.harness.servers import RedisServer, drop_production, start_production

pytestmark = pytest.mark.integration


def _numbers(n):
    return [str(i) for i in range(1, n + 1)]


def _wait_for_text(app, message_id):
    deadline = time.monotonic() + 15
    while not app.query("SELECT content FROM chat_message WHERE id = %s", (message_id,))[0][0]:
        assert time.monotonic() < deadline, "no partial text was saved"
        time.sleep(0.2)


def test_redis_restarted_mid_stream(simulator, sim, tmp_path):
    redis_server = RedisServer(tmp_path).start()
    app = start_production(tmp_path / "app", simulator_url=simulator.base_url, redis_url=redis_server.url)
    try:
        user = new_user(app)
        sim.configure(reply_mode="numbered", reply_tokens=120, tokens_per_second=30, first_token_delay=0)
        sid, bid = user.new_session(provider="simulator")
        resp = user.send(sid, bid, "Count while Redis restarts")
        message_id = int(re.findall(r'id="msg-(\d+)"', resp.text)[-1])
        _wait_for_text(app, message_id)
        redis_server.stop()
        time.sleep(1.5)
        redis_server.start()
        reply = last_reply(user.wait_idle(sid, bid, timeout=40))
        assert reply.status == "done"
        assert reply.body.split() == _numbers(120), "no token lost, duplicated or reordered in what was stored"
        assert reply.number("output") == 120
        logs = app.logs()
        assert any(
            sign in logs for sign in ("could not publish", "live text not stored", "delta frames not stored or published")
        ), "the outage really hit the reply"
    finally:
        app.stop()
        drop_production(app)
        redis_server.stop()


def test_database_briefly_unavailable_mid_stream(production_app, sim):
    app = production_app
    user = new_user(app)
    sim.configure(reply_mode="numbered", reply_tokens=120, tokens_per_second=30, first_token_delay=0)
    sid, bid = user.new_session(provider="simulator")
    resp = user.send(sid, bid, "Count while the database blinks")
    message_id = int(re.findall(r'id="msg-(\d+)"', resp.text)[-1])
    _wait_for_text(app, message_id)
    db_name = app.database_url.rsplit("/", 1)[1]
    import psycopg

    from tests.harness.servers import PG_ADMIN_URL

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{db_name}" ALLOW_CONNECTIONS false')
        killed = admin.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (db_name,),
        ).fetchone()[0]
        assert killed >= 1, "the app's connections were cut mid-reply"
        time.sleep(2.5)
        admin.execute(f'ALTER DATABASE "{db_name}" ALLOW_CONNECTIONS true')
    reply = last_reply(user.wait_idle(sid, bid, timeout=40))
    assert reply.status == "done"
    assert reply.body.split() == _numbers(120)
    assert user.page(sid, bid), "and the app serves pages again"
