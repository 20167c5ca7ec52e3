"""Sampling profiles of the app's processes during a run (py-spy), summarized for the JSON.

py-spy comes with the test extra (`make install-test`, which `make bench` runs). It
samples with `--nonblocking` (the target is never paused), `--gil` (only the thread holding the GIL: where Python CPU time goes; waits on
sockets, the database or locks are not counted) and `--threads` (each sample names its
thread). So "pct" is the share of the process's Python CPU time, and `gil_s` the seconds.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

# What the lead asked about, as frame patterns (function + file, line numbers dropped).
# A sample counts for a row when any frame of its stack matches (inclusive time).
INCLUSIVE = [
    ("generation: _consume (whole relay loop)", r"^_consume \(playground/chat/generation"),
    ("llm.client: _stream_chat (SDK iteration)", r"^_stream_chat \(playground/llm/client"),
    ("SDK: SSE decoding + chunk objects (openai/_streaming)", r"\(openai/_streaming\.py"),
    ("SDK: chunk model construction (openai/_models, pydantic)", r"\(openai/_models\.py|\(pydantic"),
    ("SDK: json.loads of chunks", r"^loads \(json/__init__"),
    ("upstream HTTP (httpx2/aiohttp; httpx/httpcore/h11 before)", r"\((httpx2?|httpcore|h11|aiohttp|openai/_vendor/httpx_aiohttp)/"),
    ("events: DeltaStream.add", r"^DeltaStream\.add \("),
    ("events: DeltaStream.flush", r"^DeltaStream\.flush \("),
    ("events: FrameSender.send (a tick's batch of frames)", r"^FrameSender\.send \("),
    ("events: store_and_publish (live text + PUBLISH, one pipeline)", r"^store_and_publish \(playground/events"),
    ("rendering.delta (template per delta)", r"^delta \(playground/chat/rendering"),
    ("Django template rendering (any)", r"\(django/template/"),
    ("live store write (_RedisLive/_MemoryLive.aset)", r"^_(Redis|Memory)Live\.aset \("),
    ("events.publish (channel-layer group_send)", r"^publish \(playground/events"),
    ("channel layer: channels_redis", r"\(channels_redis/"),
    ("channel layer: in-memory (channels/layers)", r"\(channels/layers\.py"),
    ("msgpack (channel-layer serialization)", r"msgpack"),
    ("redis client (redis/)", r"\(redis/"),
    ("DB: checkpoints (partial saves, heartbeats, stop flags)", r"^save \(playground/chat/checkpoints"),
    ("DB: start/finish (_start/_finish)", r"^_(start|finish) \(playground/chat/generation"),
    ("DB: turn_ended (final message + cost panel render)", r"^turn_ended \(playground/chat/rendering"),
    ("DB: Django ORM (django/db)", r"\(django/db/"),
    ("DB driver (psycopg/sqlite3)", r"\((psycopg|sqlite3)/"),
    ("sync_to_async / thread hand-off (asgiref)", r"\(asgiref/"),
    ("consumer: SessionConsumer.session_html", r"^SessionConsumer\.session_html \("),
    ("channels consumer dispatch (channels/consumer, utils)", r"\(channels/(consumer|utils|generic)"),
    ("WebSocket send (websockets/, uvicorn ws protocol)", r"\(websockets/|\(uvicorn/protocols/websockets"),
    ("permessage-deflate compression", r"permessage_deflate|zlib"),
    ("Django HTTP request handling (views, middleware)", r"\(django/core/handlers"),
    ("Celery/kombu machinery", r"\((celery|kombu|billiard)/"),
    ("logging", r"\(logging/"),
    ("asyncio/uvloop event-loop machinery (self)", r"\((asyncio|uvloop)/"),
]
_LINE = re.compile(r":\d+\)$")


def pyspy() -> str | None:
    candidate = Path(sys.executable).parent / "py-spy"
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


class Recorder:
    def __init__(self, pid: int, out: Path, rate: int = 100):
        self.out = out
        exe = pyspy()
        if exe is None:
            raise RuntimeError("py-spy is not installed: make install-test (the test extra has it)")
        self.rate = rate
        self.proc = subprocess.Popen(
            [exe, "record", "--nonblocking", "--gil", "--threads", "--subprocesses", "--format", "raw", "-r", str(rate),
             "-p", str(pid), "-o", str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            output, _ = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            output, _ = self.proc.communicate()
        return output or ""


def _frame(frame: str) -> str:
    return _LINE.sub(")", frame.strip())


def summarize(path: Path, rate: int, top: int = 30) -> dict:
    """Turn a py-spy raw file into: totals, per-thread, curated inclusive rows, top self frames."""
    if not path.exists():
        return {"error": "no profile written"}
    stacks: Counter = Counter()
    threads: Counter = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        parts = stack.split(";")
        thread = "?"
        while parts and (parts[0].startswith("process ") or parts[0].startswith("thread (")):
            head = parts.pop(0)
            if head.startswith("thread ("):
                thread = head.split(": ", 1)[1] if ": " in head else "unnamed"
        # ThreadPoolExecutor-1_38 -> ThreadPoolExecutor-1_*: one row per pool, not per thread.
        thread = re.sub(r"_\d+$", "_*", thread)
        key = tuple(_frame(f) for f in parts if f)
        stacks[(thread, key)] += int(count)
        threads[thread] += int(count)
    total = sum(stacks.values())
    if not total:
        return {"samples": 0}
    pct = lambda n: round(100.0 * n / total, 1)  # noqa: E731
    inclusive = []
    compiled = [(label, re.compile(rx)) for label, rx in INCLUSIVE]
    for label, rx in compiled:
        if label.endswith("(self)"):
            n = sum(c for (_, key), c in stacks.items() if key and rx.search(key[-1]))
        else:
            n = sum(c for (_, key), c in stacks.items() if any(rx.search(f) for f in key))
        if n:
            inclusive.append({"what": label, "pct": pct(n), "gil_s": round(n / rate, 2)})
    self_time: Counter = Counter()
    libs: Counter = Counter()
    for (_, key), count in stacks.items():
        if key:
            self_time[key[-1]] += count
            m = re.search(r"\(([^/)]+)", key[-1])
            libs[m.group(1).split(".")[0] if m else "?"] += count
    return {
        "samples": total,
        "rate_hz": rate,
        "gil_s": round(total / rate, 2),
        "threads": {name: pct(n) for name, n in threads.most_common(10)},
        "inclusive": inclusive,
        "self_top": [{"frame": f, "pct": pct(n)} for f, n in self_time.most_common(top)],
        "self_by_package": {lib: pct(n) for lib, n in libs.most_common(15)},
    }
