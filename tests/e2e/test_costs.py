"""Cache keys and money: what goes on the wire per scope, and what the user is shown."""

import asyncio
import json
import re
from decimal import Decimal

import pytest

from tests.conftest import new_user
from tests.harness.client import collect
from tests.harness.page import last_reply

LONG_PROMPT = " ".join(f"Fact {i}: the number {i} squared is {i * i}." for i in range(150))  # ~1,500 tokens


def chat_bodies(sim):
    return [r["body"] for r in sim.requests() if r["path"] in ("/v1/chat/completions", "/v1/responses")]


def turn(user, session_id, branch_id, text="Next?"):
    user.send(session_id, branch_id, text)
    return last_reply(user.wait_idle(session_id, branch_id))


def test_keys_per_scope_on_the_wire(app, sim):
    sim.configure(reply_tokens=8)
    alice, bob = new_user(app), new_user(app)
    keys = {}
    for scope in ["session", "user", "branch", "user-bucket", "none", "uncached-baseline"]:
        for who, user in (("alice", alice), ("bob", bob)):
            sid, bid = user.new_session(provider="simulator", cache_scope=scope, system_prompt=LONG_PROMPT)
            turn(user, sid, bid, "one")
            turn(user, sid, bid, "two")
            sid2, bid2 = user.new_session(provider="simulator", cache_scope=scope, system_prompt=LONG_PROMPT)
            turn(user, sid2, bid2, "three")
            bodies = chat_bodies(sim)[-3:]
            keys[(scope, who)] = [b.get("prompt_cache_key") for b in bodies]
            for body in bodies:
                assert "prompt_cache_key" not in body if scope == "none" else len(body["prompt_cache_key"]) <= 64
                sid_value = body["safety_identifier"]
                assert len(sid_value) <= 64 and user.username not in sid_value
            if scope == "uncached-baseline":
                assert all(b["messages"][0]["content"].startswith("Chat session id: ") for b in bodies)
    namespace = keys[("session", "alice")][0].split(":")[0]
    assert all(k.startswith(namespace + ":") for v in keys.values() for k in v if k), "one deployment namespace"
    a, b = keys[("session", "alice")], keys[("session", "bob")]
    assert a[0] == a[1] != a[2] and a[0] not in b, "session scope: one key per conversation tree"
    a, b = keys[("user", "alice")], keys[("user", "bob")]
    assert a[0] == a[1] == a[2] != b[0], "user scope: one key per user"
    a = keys[("branch", "alice")]
    assert a[0] == a[1] != a[2], "branch scope: one key per branch"
    a = keys[("user-bucket", "alice")]
    assert a[0] == a[1] == a[2] and re.fullmatch(r"[\w.-]+:ub:\d+", a[0])
    assert keys[("none", "alice")] == [None, None, None]
    a = keys[("uncached-baseline", "alice")]
    assert len(set(a)) == 3, "baseline: a unique key per request"
    recorded = [r for r in sim.requests() if r["path"] == "/v1/chat/completions"]
    safety = {json.dumps(r["body"]["safety_identifier"]) for r in recorded if r["body"].get("safety_identifier")}
    assert len(safety) == 2, "one stable safety identifier per user"


def test_uncached_baseline_never_hits_while_session_scope_does(app, sim):
    user = new_user(app)
    sid, bid = user.new_session(provider="simulator", system_prompt=LONG_PROMPT)
    turn(user, sid, bid, "a")
    assert turn(user, sid, bid, "b").number("cached") >= 1024
    sid, bid = user.new_session(provider="simulator", system_prompt=LONG_PROMPT, cache_scope="uncached-baseline")
    turn(user, sid, bid, "a")
    reply = turn(user, sid, bid, "b")
    assert reply.number("cached") == 0
    assert "uncached baseline" in reply.html


def test_none_scope_warns(app, sim):
    user = new_user(app)
    sid, bid = user.new_session(provider="simulator", cache_scope="none")
    reply = turn(user, sid, bid, "hi")
    assert "<dt>cache key</dt><dd>no key" in reply.html and "shares cache routing" in reply.html


@pytest.mark.parametrize(
    "model, field, value",
    [
        ("gpt-4.1-mini", "prompt_cache_retention", "24h"),
        ("gpt-5.6-terra", "prompt_cache_options", {"mode": "implicit", "ttl": "30m"}),
        ("gpt-4o-mini", None, None),
    ],
)
def test_extended_retention_sends_the_field_the_model_takes(app, sim, model, field, value):
    user = new_user(app)
    sid, bid = user.new_session(provider="simulator", model=model, extended_retention=True)
    reply = turn(user, sid, bid, "hi")
    body = chat_bodies(sim)[-1]
    if field:
        assert body[field] == value
        assert reply.status == "done"
    else:
        assert "prompt_cache_retention" not in body and "prompt_cache_options" not in body
        page = user.page(sid, bid)
        assert "not known to offer extended" in page, "the option is explained where it does nothing"


def test_retention_refusal_shows_the_api_error(app, sim):
    user = new_user(app)
    sid, bid = user.new_session(provider="simulator", model="gpt-4.1-mini", extended_retention=True)
    sim.add_fault(status=400, code="invalid_parameter", message="prompt_cache_retention '24h' is not supported for this model.")
    reply = turn(user, sid, bid, "hi")
    assert reply.status == "failed"
    assert "The provider refused the request (400): prompt_cache_retention '24h' is not supported" in reply.error


def test_turn_money_arrives_live_without_reload(app, sim):
    user = new_user(app)
    sid, bid = user.new_session(provider="simulator", system_prompt=LONG_PROMPT)
    turn(user, sid, bid, "warm up")

    async def run():
        async with user.socket(sid) as ws:
            user.send(sid, bid, "again")
            return await collect(ws, until=f'id="cost-panel-{sid}"')

    frames = asyncio.run(run())
    final = frames[-1]
    assert 'hx-swap-oob="true"' in final
    assert "<dt>cached</dt>" in final and "<dt>saved</dt>" in final and "<dt>cache key</dt>" in final and "<summary>details</summary>prompt_cache_key <code>" in final
    assert "Session cost" in final and "<dt>requests</dt><dd>2</dd>" in final


def _dec(text):
    return Decimal(text) if text is not None else Decimal(0)


def test_panel_totals_equal_the_export_and_only_the_owner_exports(app, sim):
    user = new_user(app)
    sid, bid = user.new_session(provider="simulator", system_prompt=LONG_PROMPT, model="gpt-4.1-mini")
    for text in ("a", "b", "c"):
        turn(user, sid, bid, text)
    sim.add_fault(cut_after_chunks=2)
    cut = turn(user, sid, bid, "cut")  # billed, no usage reported: estimated and priced
    assert cut.status == "incomplete" and cut.usage["usage"].startswith("estimated")
    cut_turn = int(app.query("SELECT id FROM chat_turn WHERE message_id = %s", (cut.id,))[0][0])
    assert user.post(f"/turns/{cut_turn}/retry/").status_code == 204
    assert last_reply(user.wait_idle(sid, bid)).status == "done"

    exported = user.get(f"/sessions/{sid}/export.json").json()
    turns = exported["turns"]
    assert len(turns) == 5 == len(chat_bodies(sim)), "one exported attempt per request the server saw"
    totals = exported["totals"]
    assert totals["attempts"] == totals["requests"] == 5 and totals["unpriced_turns"] == 0
    assert totals["usage_estimated"] == 1 and totals["usage_unreported"] == 0
    for field in ("prompt_tokens", "cached_tokens", "output_tokens"):
        assert totals["usage"][field] == sum(t["usage"][field] or 0 for t in turns)
    for field in ("actual", "uncached", "saved"):
        assert _dec(totals["cost"][field]) == sum(_dec(t["cost"][field]) for t in turns)
    estimated, retry = turns[3], turns[4]
    assert (estimated["status"], estimated["usage_source"], estimated["attempt"]) == ("cut", "estimated", 1)
    assert (retry["status"], retry["usage_source"], retry["attempt"]) == ("ok", "reported", 2)
    assert estimated["reply_id"] == retry["reply_id"] == cut.id
    assert _dec(estimated["cost"]["actual"]) > 0 and _dec(totals["cost"]["estimated"]) == _dec(estimated["cost"]["actual"])
    # The same request ran to the end on retry: the estimate of its prompt is exact here.
    assert estimated["usage"]["prompt_tokens"] == retry["usage"]["prompt_tokens"]
    assert estimated["usage"]["cached_tokens"] >= 1024 and 1 <= estimated["usage"]["output_tokens"] <= 2
    assert turns[1]["usage"]["cached_tokens"] >= 1024 and _dec(turns[1]["cost"]["saved"]) > 0
    assert all(t["prompt_cache_key"] == turns[0]["prompt_cache_key"] for t in turns)
    assert exported["session"]["model"] == "gpt-4.1-mini"

    from playground.caching.pricing import format_usd

    panel = user.get(f"/sessions/{sid}/panel/").text
    assert format_usd(_dec(totals["cost"]["actual"])) in panel
    assert format_usd(_dec(totals["cost"]["saved"])) in panel
    assert "1 request stopped or cut" in panel and format_usd(_dec(totals["cost"]["estimated"])) in panel

    csv_text = user.get(f"/sessions/{sid}/export.csv").text
    lines = csv_text.strip().splitlines()
    assert lines[0].startswith("id,reply_id,attempt,status,reached_provider,billed,usage_source,branch,created,model")
    assert len(lines) == 1 + 5 + 1 and lines[-1].startswith("TOTAL,,5 attempts,5 billed")
    assert f",{cut.id},1,cut,yes,yes,estimated," in lines[4]
    assert lines[-1].endswith(",".join(totals["cost"][k] for k in ("actual", "uncached", "saved")))

    intruder = new_user(app)
    assert intruder.get(f"/sessions/{sid}/export.json").status_code == 404
    assert intruder.get(f"/sessions/{sid}/export.csv").status_code == 404
    assert intruder.get(f"/sessions/{sid}/panel/").status_code == 404
    from tests.harness.client import UserClient

    assert UserClient(app).get(f"/sessions/{sid}/export.json").status_code == 302

    account = user.get("/account/").text
    assert format_usd(_dec(totals["cost"]["actual"])) in account


LIVE_ROW_RE = re.compile(
    r'<tr id="live-turn-(\d+)"><td>[^<]*</td>\s*<td>(\d+|…)</td><td class="cached">(\d+|…)</td><td class="live-output">(\d+)</td>'
)


def test_the_panel_shows_a_streaming_reply_live_in_every_tab(app, sim):
    """While a reply streams, every tab gets the panel's in-progress row, a few times a second
    at most (not per token), with prompt and cached forecast at send and the output growing;
    when the reply ends, the panel carries its own figures instead."""
    user = new_user(app)
    sid, bid = user.new_session(provider="simulator", system_prompt=LONG_PROMPT)
    turn(user, sid, bid, "warm the cache")
    n, rate = 40, 10  # 4 s of streaming
    sim.configure(reply_mode="numbered", reply_tokens=n, tokens_per_second=rate)

    async def tab(ws):
        return await collect(ws, until='id="cost-panel-', timeout=30)

    async def run():
        async with user.socket(sid) as first, user.socket(sid) as second:
            user.send(sid, bid, "count slowly")
            return await asyncio.gather(tab(first), tab(second))

    tabs = asyncio.run(run())
    seen = []
    for frames in tabs:
        rows = [LIVE_ROW_RE.findall(f) for f in frames if 'id="live-turns-' in f]
        rows = [r[0] for r in rows if r]
        assert len(rows) >= 2, "the in-progress row is pushed while the reply streams"
        assert len(rows) <= n / rate / 0.5 + 2, f"at a modest rate, not per token: {len(rows)} pushes for {n} tokens"
        outputs = [int(r[3]) for r in rows]
        assert outputs == sorted(outputs) and outputs[-1] > outputs[0] > 0, outputs
        assert all(r[1] != "…" and int(r[1]) > 1024 and int(r[2]) >= 1024 for r in rows[1:]), rows
        seen.append(rows)
    first_rows, second_rows = seen
    assert set(first_rows) & set(second_rows), "the tabs show the same running figures"
    # The end: the panel is pushed with the turn's own figures and no row in progress.
    final_panel = tabs[0][-1][tabs[0][-1].index('id="cost-panel-'):]
    assert "live-turn-" not in final_panel
    reply = last_reply(user.page(sid, bid))
    prompt = reply.number("prompt")
    assert any(int(r[1]) == prompt for r in first_rows[1:]), (prompt, first_rows)
