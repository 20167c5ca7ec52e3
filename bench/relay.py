"""Relay benchmark: N users stream replies through the app; the same N streams read directly
from the wire server with the SDK are the baseline.

Clocks: every receipt is stamped with `time.time()` in this process the moment the frame
(app) or the parsed chunk (baseline) is in hand; the simulator stamps each emitted token with
`time.time()` right after writing it. Same machine, same wall clock.

Tokens are the simulator's numbered tokens " 1", " 2", ... so loss, duplication and
reordering are checked exactly, token by token.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field

import httpx

from . import procs
from .stats import summary

DELTA_RE = re.compile(r'<div hx-swap-oob="beforeend:#body-(\d+)" data-seq="(\d+)"[^>]*>([^<]*)</div>')
SNAPSHOT_RE = re.compile(r'<div hx-swap-oob="innerHTML:#body-(\d+)" data-seq="(\d+)" data-snapshot>([^<]*)</div>')
SEQ_RE = re.compile(r'hx-swap-oob="(beforeend|innerHTML):#body-(\d+)" data-seq="(\d+)"')
ASSISTANT_RE = re.compile(r'class="msg msg-assistant status-(\w+)" id="msg-(\d+)"([^>]*)>')
TURN_STOP_RE = re.compile(r"/turns/(\d+)/stop/")
MARKER_RE = re.compile(r"bench (\w+) user (\d+):")
END_STATUSES = {"done", "failed", "incomplete", "stopped"}


@dataclass
class Stream:
    """One user's (or one baseline reader's) stream, raw, as measured."""

    index: int
    t_send: float = 0.0
    t_post_done: float = 0.0
    post_status: int = 0
    message_id: int | None = None
    turn_id: int | None = None
    frames: list[tuple[float, str]] = field(default_factory=list)  # app: raw WebSocket frames
    # (receipt, seq, tokens, is_snapshot): a snapshot replaces the text, a delta appends
    chunks: list[tuple[float, int, list[str], bool]] = field(default_factory=list)
    resyncs: int = 0  # resync requests sent after a gap in the delta seqs, as the browser does
    end_status: str | None = None
    t_end: float | None = None
    error: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    request_id: str | None = None
    received_at: float | None = None
    emissions: list[float] = field(default_factory=list)


def marker(run_id: str, index: int) -> str:
    return f"bench {run_id} user {index}: please count."


# --- app side ---------------------------------------------------------------------------------


async def wait_turn(t0: float, index: int, n: int, spread: float) -> None:
    """Hold send `index` of `n` until t0 + index x spread / n: the sends arrive evenly over
    `spread` seconds instead of in one instant (spread 0: all at t0). The app's run and the
    baseline's use the same schedule, so their ratios compare like with like."""
    if spread > 0:
        await asyncio.sleep(max(0.0, t0 + index * spread / n - time.time()))


def _ws_url(base_url: str, session_id: int) -> str:
    return base_url.replace("http://", "ws://") + f"/ws/sessions/{session_id}/"


async def _reader(ws, stream: Stream) -> None:
    """Stamp and keep every frame; parse only enough to notice the end, and a gap.

    Like the browser (static/js/app.js): a delta whose seq skips one means a frame was lost
    on the way (the in-memory layer drops events for a tab that has 100 waiting); ask the
    socket for a resync, at most once a second, and take the snapshot it sends.
    """
    have, asked = 0, 0.0
    try:
        async for frame in ws:
            now = time.time()
            if isinstance(frame, bytes):
                frame = frame.decode()
            stream.frames.append((now, frame))
            if "data-seq=" in frame:
                for kind, mid, seq in SEQ_RE.findall(frame):
                    seq = int(seq)
                    if kind == "innerHTML":
                        have = max(have, seq)
                    elif seq == have + 1:
                        have = seq
                    elif seq > have + 1 and now - asked >= 1.0:
                        asked = now
                        stream.resyncs += 1
                        await ws.send(json.dumps({"resync": int(mid)}))
            if 'hx-swap-oob="true"' in frame and "msg-assistant status-" in frame:
                for status, mid, rest in ASSISTANT_RE.findall(frame):
                    if status in END_STATUSES and 'hx-swap-oob="true"' in rest:
                        stream.end_status, stream.t_end = status, now
                        stream.message_id = stream.message_id or int(mid)
                        stream.done.set()
    except Exception as exc:  # noqa: BLE001 - a dropped socket is a measured failure
        stream.error = f"websocket: {type(exc).__name__}: {exc}"
        stream.done.set()


FINAL_BODY_RE = re.compile(r'<div class="msg-body (?:md|plain)" id="body-(\d+)">(.*?)</div>', re.S)
TAG_RE = re.compile(r"<[^>]+>")
FINAL_SEQ = 10**9  # the ended message replaces the body whatever the page had


def parse_frames(stream: Stream) -> None:
    """Turn the raw frames into (receipt, seq, tokens, is_snapshot) for the stream's
    assistant message. The frame that ends the reply carries the whole final text, which
    replaces the live body on the page: it counts as a last snapshot (tokens the page had
    not shown yet, e.g. after a lost delta, are delivered then)."""
    mid = stream.message_id
    for t, frame in stream.frames:
        if mid is None:
            m = ASSISTANT_RE.search(frame)
            if m:
                mid = stream.message_id = int(m.group(2))
        if 'hx-swap-oob="true"' in frame and "msg-assistant status-" in frame:
            for fmid, body in FINAL_BODY_RE.findall(frame):
                if mid is None or int(fmid) == mid:
                    stream.chunks.append((t, FINAL_SEQ, TAG_RE.sub(" ", body).split(), True))
            continue
        found = [(m.start(), m, False) for m in DELTA_RE.finditer(frame)]
        found += [(m.start(), m, True) for m in SNAPSHOT_RE.finditer(frame)]
        for _, m, snapshot in sorted(found, key=lambda f: f[0]):
            fmid, seq, text = m.groups()
            if mid is None or int(fmid) == mid:
                stream.chunks.append((t, int(seq), text.split(), snapshot))


async def _db_connections(db_url: str, peak: dict, stop: asyncio.Event) -> None:
    """Sample how many PostgreSQL connections the app holds (its database only), every 0.5 s."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        while not stop.is_set():
            cur = await conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
            count = (await cur.fetchone())[0] - 1  # not this one
            peak["peak"] = max(peak.get("peak", 0), count)
            peak.setdefault("samples", []).append(count)
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except TimeoutError:
                pass


async def run_app(*, base_url: str, users: list[dict], run_id: str, timeout: float, pids: dict[str, int],
                  profilers=None, db_url: str | None = None, spread: float = 0.0) -> tuple[list[Stream], dict]:
    """Open every user's WebSocket, send all messages at once (or evenly over `spread` seconds),
    read until every reply ended."""
    import websockets

    streams = [Stream(i) for i in range(len(users))]
    origin = base_url
    sockets = [None] * len(users)
    gate = asyncio.Semaphore(25)
    t_conn = time.time()

    async def connect(i: int, user: dict) -> None:
        headers = {"Cookie": f"sessionid={user['sessionid']}; csrftoken={user['csrftoken']}", "Origin": origin}
        async with gate:
            sockets[i] = await websockets.connect(
                _ws_url(base_url, user["session_id"]), additional_headers=headers, open_timeout=60, max_size=None
            )

    await asyncio.gather(*(connect(i, u) for i, u in enumerate(users)))
    ws_connect_s = time.time() - t_conn
    readers = [asyncio.create_task(_reader(ws, s)) for ws, s in zip(sockets, streams)]
    clients = [
        httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(120.0),
            headers={"Cookie": f"sessionid={u['sessionid']}; csrftoken={u['csrftoken']}", "X-CSRFToken": u["csrftoken"],
                     "HX-Request": "true"},
        )
        for u in users
    ]
    await asyncio.sleep(0.5)  # let the server settle after the connection burst

    async def send(i: int, user: dict) -> None:
        s = streams[i]
        await wait_turn(t0, i, len(users), spread)
        s.t_send = time.time()
        try:
            resp = await clients[i].post(f"/sessions/{user['session_id']}/b/{user['branch_id']}/send/",
                                         data={"content": marker(run_id, i)})
            s.post_status = resp.status_code
            m = ASSISTANT_RE.search(resp.text)
            if m and s.message_id is None:
                s.message_id = int(m.group(2))
            m = TURN_STOP_RE.search(resp.text)
            if m:
                s.turn_id = int(m.group(1))
            if resp.status_code != 200:
                s.error = f"POST {resp.status_code}: {resp.text[:200]}"
                s.done.set()
        except httpx.HTTPError as exc:
            s.error = f"POST failed: {type(exc).__name__}: {exc}"
            s.done.set()
        s.t_post_done = time.time()

    sampler = procs.Sampler(pids)
    cpu = procs.CpuMeter(pids)
    db_conns: dict = {}
    db_stop = asyncio.Event()
    db_task = asyncio.create_task(_db_connections(db_url, db_conns, db_stop)) if db_url else None
    sampler.start()
    cpu.start()
    if profilers:
        profilers.start()
    t0 = time.time()
    await asyncio.gather(*(send(i, u) for i, u in enumerate(users)))
    try:
        await asyncio.wait_for(asyncio.gather(*(s.done.wait() for s in streams)), timeout)
        timed_out = False
    except TimeoutError:
        timed_out = True
    t1 = time.time()
    cpu_used = cpu.stop()
    await sampler.stop()
    db_stop.set()
    if db_task:
        await asyncio.gather(db_task, return_exceptions=True)
    if profilers:
        profilers.stop()
    hwm = {name: round(procs.hwm_mb(pid), 1) for name, pid in pids.items() if name != "simulator"}
    # Replies still running at the deadline are stopped the way a user would (the Stop button),
    # so the next run does not share the machine with them.
    unfinished = [(s, u) for s, u in zip(streams, users) if not s.done.is_set()]
    stop_codes = await asyncio.gather(*(clients[s.index].post(f"/turns/{s.turn_id}/stop/") for s, u in unfinished if s.turn_id),
                                      return_exceptions=True)
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)
    for s in streams:
        parse_frames(s)
        if not s.done.is_set() and s.error is None:
            s.error = "timed out"
    info = {
        "wall_s": round(t1 - t0, 3),
        "timed_out": timed_out,
        "ws_connect_s": round(ws_connect_s, 3),
        "cpu_s": cpu_used,
        "rss_start_mb": {k: round(v, 1) for k, v in sampler.starts.items()},
        "rss_peak_mb": {k: round(v, 1) for k, v in sampler.peaks.items()},
        "cpu_timeline": sampler.cpu_timeline(),
        "vm_hwm_mb": hwm,
        "frames": sum(len(s.frames) for s in streams),
        "frame_bytes": sum(len(f) for s in streams for _, f in s.frames),
        "end_status": dict(_count(s.end_status or (s.error and "error") or "none" for s in streams)),
        "errors": sorted({s.error for s in streams if s.error})[:5],
        "stopped_at_deadline": len(stop_codes),
        "db_connections_peak": db_conns.get("peak"),
        "db_connections_at_end": (db_conns.get("samples") or [None])[-1],
    }
    return streams, info


def _count(items) -> dict:
    out: dict = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


# --- baseline: the SDK straight from the wire server -----------------------------------------


async def run_baseline(*, sim_base_url: str, n: int, model: str, run_id: str, timeout: float,
                       pids: dict[str, int], spread: float = 0.0) -> tuple[list[Stream], dict]:
    import openai

    streams = [Stream(i) for i in range(n)]
    # Like the app: one shared connection pool, one SDK client per user key.
    pool = httpx.AsyncClient(limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200))

    async def one(s: Stream) -> None:
        client = openai.AsyncOpenAI(api_key=f"sk-sim-baseline-{run_id}-{s.index}", base_url=sim_base_url, max_retries=0,
                                    timeout=httpx.Timeout(60.0, connect=10.0), http_client=pool)
        await wait_turn(t0, s.index, n, spread)
        s.t_send = time.time()
        seq = 0
        try:
            stream = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": marker(run_id, s.index)}], stream=True,
                stream_options={"include_usage": True},
            )
            async with stream:
                async for chunk in stream:
                    now = time.time()
                    for choice in chunk.choices:
                        if choice.delta and choice.delta.content:
                            seq += 1
                            s.chunks.append((now, seq, choice.delta.content.split(), False))
                        if choice.finish_reason:
                            s.end_status, s.t_end = "done", now
        except Exception as exc:  # noqa: BLE001
            s.error = f"{type(exc).__name__}: {exc}"
        s.done.set()

    sampler = procs.Sampler(pids)
    cpu = procs.CpuMeter(pids)
    sampler.start()
    cpu.start()
    t0 = time.time()
    tasks = [asyncio.create_task(one(s)) for s in streams]
    done, pending = await asyncio.wait(tasks, timeout=timeout + spread)  # the app's deadline starts after its last send
    for task in pending:
        task.cancel()
    t1 = time.time()
    for s in streams:
        if not s.done.is_set() and s.error is None:
            s.error = "timed out"
    cpu_used = cpu.stop()
    await sampler.stop()
    await pool.aclose()
    info = {
        "wall_s": round(t1 - t0, 3),
        "timed_out": bool(pending),
        "cpu_s": cpu_used,
        "cpu_timeline": sampler.cpu_timeline(),
        "errors": sorted({s.error for s in streams if s.error})[:5],
        "end_status": dict(_count(s.end_status or (s.error and "error") or "none" for s in streams)),
    }
    return streams, info


# --- matching to the wire server's records ------------------------------------------------------


async def attach_emissions(sim_url: str, streams: list[Stream], run_id: str) -> int:
    """Find each stream's upstream request by its marker; fetch its per-token emission times."""
    async with httpx.AsyncClient(base_url=sim_url + "/_sim", timeout=120) as client:
        records = (await client.get("/requests")).json()["requests"]
        by_index = {}
        for record in records:
            if not record["path"].endswith("/chat/completions"):
                continue
            m = MARKER_RE.search(json.dumps(record.get("body")))
            if m and m.group(1) == run_id:
                by_index.setdefault(int(m.group(2)), record)
        gate = asyncio.Semaphore(20)

        async def fetch(s: Stream) -> None:
            record = by_index.get(s.index)
            if record is None:
                return
            s.request_id, s.received_at = record["id"], record["received_at"]
            async with gate:
                resp = await client.get(f"/emissions/{record['id']}")
            if resp.status_code == 200:
                s.emissions = [row["wall"] for row in resp.json()["emissions"]]

        await asyncio.gather(*(fetch(s) for s in streams))
        return len(records)


# --- the figures ------------------------------------------------------------------------------------


def analyze(streams: list[Stream], *, tokens: int, rate: float, first_token_delay: float, spread: float = 0.0) -> dict:
    lags, ttft, dispatch, first_relay, sim_lead, slips = [], [], [], [], [], []
    after_post: list[float] = []  # the POST answered -> its upstream request arrived: Celery and the job start
    per_stream_rate, completion, post_ms, tokens_per_frame = [], [], [], []
    lost = late = not_started = socket_closed = dup = reordered = foreign = seq_gaps = seq_dups = 0
    resyncs = healed = 0
    delivered = 0
    first_emission, last_receipt = None, None
    incomplete_streams = 0
    for s in streams:
        seen: dict[int, float] = {}
        max_k = 0
        last_seq = 0
        have = 0  # the browser's data-seq: what the page shows is exactly the text up to it
        resyncs += s.resyncs
        for t, seq, toks, snapshot in s.chunks:
            if not snapshot:
                if seq == last_seq:
                    seq_dups += 1
                elif seq != last_seq + 1:
                    seq_gaps += 1
                last_seq = max(last_seq, seq)
                if toks:
                    tokens_per_frame.append(len(toks))
            # The page's rules: a snapshot at or above what it has replaces the text (tokens
            # already shown stay where they are; the new ones count from now); a delta is
            # appended only when it is the next one; one after a gap is dropped (and a resync
            # asked for). So a token counts once, when the page first shows it.
            if snapshot:
                if seq < have:
                    continue
                healed += any(int(tok) not in seen for tok in toks if tok.isdigit())
                have = seq
            elif seq != have + 1:
                continue
            else:
                have = seq
            for tok in toks:
                try:
                    k = int(tok)
                except ValueError:
                    foreign += 1
                    continue
                if not 1 <= k <= tokens:
                    foreign += 1
                    continue
                if k in seen:
                    if not snapshot:
                        dup += 1
                    continue
                if k < max_k:
                    reordered += 1
                max_k = max(max_k, k)
                seen[k] = t
        missing = tokens - len(seen)
        if not seen and s.post_status and s.post_status != 200:
            # The send itself was refused: no reply was started, so nothing was lost in the
            # relay. Counted in send_failures / tokens_not_started instead.
            not_started += missing
            incomplete_streams += 1
            if s.t_post_done and s.t_send:
                post_ms.append((s.t_post_done - s.t_send) * 1000)
            continue
        # A missing token is lost when the stream ended, or a later token came through; a tail
        # still missing when the deadline hit was not delivered in time (counted apart).
        if missing and s.end_status is None and (s.error or "").startswith("websocket:"):
            # The server closed the socket before the reply ended (a restart, a crash): the
            # tail never came. Gaps before the last token received are still losses.
            gaps = sum(1 for k in range(1, max_k) if k not in seen)
            lost += gaps
            socket_closed += missing - gaps
        elif missing and s.end_status is None and s.error == "timed out":
            gaps = sum(1 for k in range(1, max_k) if k not in seen)
            lost += gaps
            late += missing - gaps
        else:
            lost += missing
        incomplete_streams += bool(missing)
        delivered += len(seen)
        if s.t_post_done and s.t_send:
            post_ms.append((s.t_post_done - s.t_send) * 1000)
        if not seen:
            continue
        first_t = min(seen.values())
        last_t = max(seen.values())
        last_receipt = last_t if last_receipt is None else max(last_receipt, last_t)
        ttft.append((first_t - s.t_send - first_token_delay) * 1000)
        completion.append((last_t - s.t_send) * 1000)
        if len(seen) > 1 and last_t > first_t:
            per_stream_rate.append((len(seen) - 1) / (last_t - first_t))
        em = s.emissions
        if em:
            first_emission = em[0] if first_emission is None else min(first_emission, em[0])
            for k, t in seen.items():
                if k - 1 < len(em):
                    lags.append((t - em[k - 1]) * 1000)
            if 1 in seen:
                first_relay.append((seen[1] - em[0]) * 1000)
            if s.received_at:
                dispatch.append((s.received_at - s.t_send) * 1000)
                if s.t_post_done:
                    after_post.append((s.received_at - s.t_post_done) * 1000)
                sim_lead.append((em[0] - s.received_at - first_token_delay) * 1000)
            if rate:
                slips.extend((em[i] - (em[0] + i / rate)) * 1000 for i in range(len(em)))
    n = len(streams)
    post_failures = {}
    for s_ in streams:
        if s_.post_status and s_.post_status != 200:
            post_failures[str(s_.post_status)] = post_failures.get(str(s_.post_status), 0) + 1
        elif s_.error and s_.error.startswith("POST failed"):
            post_failures["transport"] = post_failures.get("transport", 0) + 1
    window = (last_receipt - first_emission) if (last_receipt and first_emission) else None
    # Spread sends: the last stream starts spread x (n - 1) / n after the first.
    ideal_window = (tokens - 1) / rate + spread * (len(streams) - 1) / max(len(streams), 1) if rate else None
    return {
        "streams": n,
        "streams_complete": n - incomplete_streams,
        "send_failures": post_failures,
        "tokens_expected": n * tokens,
        "tokens_delivered": delivered,
        "lost": lost,
        "undelivered_at_deadline": late,
        "tokens_not_started": not_started,
        "undelivered_socket_closed": socket_closed,
        "duplicated": dup,
        "reordered": reordered,
        "foreign_tokens": foreign,
        "seq_gaps": seq_gaps,
        "seq_duplicates": seq_dups,
        "resyncs": resyncs,
        "snapshots_that_filled_a_gap": healed,
        "ttft_added_ms": summary(ttft),
        "ttft_parts_ms": {
            "send_to_upstream_request": summary(dispatch),
            "post_done_to_upstream_request": summary(after_post),
            "upstream_first_token_extra": summary(sim_lead),
            "first_token_relay": summary(first_relay),
        },
        "lag_ms": summary(lags),
        "tokens_per_s": round(delivered / window, 1) if window else None,
        "tokens_per_s_ideal": round(n * tokens / ideal_window, 1) if ideal_window else None,
        "stream_rate_tps": summary(per_stream_rate, scale=1),
        "completion_ms": summary(completion),
        "post_ms": summary(post_ms),
        "tokens_per_frame": summary(tokens_per_frame, scale=1),
        "emission_slip_ms": summary(slips),
        "lag_samples": len(lags),
    }
