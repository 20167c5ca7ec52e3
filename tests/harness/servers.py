"""Real app processes for end-to-end tests.

`embedded`: one uvicorn process on SQLite with the in-memory channel layer and in-process
generation (what `make run` serves). `production`: uvicorn + a Celery worker process, on a
fresh PostgreSQL database and a Redis database, the way docker/compose.yaml runs it. Tests
talk to them only over HTTP and WebSockets, like a browser would, and read their logs and
database to check what was stored.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BASE = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log.read_text()[-3000:]}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"server did not answer at {url}:\n{log.read_text()[-3000:]}")


@dataclass
class AppServer:
    mode: str
    workdir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    database_url: str = ""
    web_workers: int = 1  # uvicorn processes (embedded mode needs exactly one)
    worker_concurrency: int = 32  # Celery thread-pool size
    worker_processes: int = 1  # Celery worker processes, each a full thread pool
    web_timeout: float = 30.0  # seconds to become ready
    worker_timeout: float = 60.0
    worker_name: str = "w"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def manage(self, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=300
        )
        if out.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
        return out.stdout

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = self._log(name).open("ab")
        proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def start_web(self) -> None:
        # As docker/Dockerfile runs it: WebSocket frames uncompressed (bench/README.md, step 16).
        argv = [sys.executable, "-m", "uvicorn", "playground.asgi:application", "--host", "127.0.0.1", "--port", str(self.port),
                "--ws-per-message-deflate", "false"]
        if self.web_workers > 1:
            argv += ["--workers", str(self.web_workers)]
        proc = self._spawn("web", argv)
        _wait_http(self.base_url + "/login/", proc, self._log("web"), timeout=self.web_timeout)

    def worker_argv(self, hostname: str, *extra: str) -> list[str]:
        """One Celery worker process: a thread pool of `worker_concurrency`, named `hostname`."""
        return [sys.executable, "-m", "celery", "-A", "playground", "worker", "--pool", "threads",
                "--concurrency", str(self.worker_concurrency), "--loglevel", "INFO", "--without-gossip",
                "--without-mingle", "--without-heartbeat", "--hostname", f"{hostname}@%h", *extra]

    def start_worker(self) -> None:
        """One Celery worker process; or `worker_processes` of them, like a compose `worker`
        service scaled to N. Those are started together under one process group "worker", so
        they stop and crash together (and bench/procs.py sums their figures), each named
        `<name><port>-<i>` and logging to its own worker-<i>.log, so a test can tell which
        process ran a job. Each takes at most one job per thread from the queue
        (prefetch multiplier 1): what it cannot start yet stays there for the others."""
        ready_before = self._workers_ready()
        if self.worker_processes <= 1:
            proc = self._spawn("worker", self.worker_argv(f"{self.worker_name}{self.port}"))
        else:
            commands = [
                shlex.join(self.worker_argv(f"{self.worker_name}{self.port}-{i}", "--prefetch-multiplier", "1"))
                + f" >>{shlex.quote(str(self._log(f'worker-{i}')))} 2>&1"
                for i in range(self.worker_processes)
            ]
            proc = self._spawn("worker", ["sh", "-c", " & ".join(commands) + " & wait"])
        self._wait_workers_ready(proc, ready_before + self.worker_processes)

    def worker_logs(self) -> list[str]:
        """The text of each Celery worker process's log, in process order ("" before it starts)."""
        names = ["worker"] if self.worker_processes <= 1 else [f"worker-{i}" for i in range(self.worker_processes)]
        return [self._log(n).read_text(errors="replace") if self._log(n).exists() else "" for n in names]

    def _workers_ready(self) -> int:
        return sum(log.count(" ready.") for log in self.worker_logs())

    def start_beat(self) -> None:
        """Celery beat: the periodic stale-turn sweep, as production runs it (one per deployment)."""
        argv = [sys.executable, "-m", "celery", "-A", "playground", "beat", "--loglevel", "INFO",
                "--schedule", str(self.workdir / "beat-schedule")]
        self._spawn("beat", argv)

    def _wait_workers_ready(self, proc: subprocess.Popen, ready: int) -> None:
        """Wait until the worker logs hold `ready` "ready." lines (logs are appended to, so a
        restarted worker is waited for, not taken as ready from its previous life)."""
        deadline = time.monotonic() + self.worker_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("worker exited:\n" + "\n".join(log[-3000:] for log in self.worker_logs()))
            if self._workers_ready() >= ready:
                return
            time.sleep(0.2)
        raise RuntimeError("celery worker did not become ready")

    def kill(self, name: str) -> None:
        """Kill a process the hard way (SIGKILL), as a crash would."""
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> None:
        for name in list(self.procs):
            proc = self.procs.pop(name)
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob("*.log")))

    @contextmanager
    def _connect(self):
        """One autocommit connection to the app's database, as `execute(sql, params)` taking
        `%s` placeholders in both modes; closed on exit."""
        if self.mode == "embedded":
            conn = sqlite3.connect(self.workdir / "data" / "db.sqlite3", isolation_level=None)

            def execute(sql, params=()):
                return conn.execute(sql.replace("%s", "?"), params)
        else:
            import psycopg

            conn = psycopg.connect(self.database_url, autocommit=True)
            execute = conn.execute
        try:
            yield execute
        finally:
            conn.close()

    def query_write(self, sql: str, params: tuple = ()) -> None:
        """Change the app's database directly (tests that move time, say)."""
        with self._connect() as execute:
            execute(sql, params)

    def shift_fingerprints(self, session_id: int, seconds: float) -> None:
        """Move the stored request times of a session's fingerprints (a fake clock)."""
        import json as _json

        for turn_id, data in self.query("SELECT id, fingerprint FROM chat_turn WHERE session_id = %s", (session_id,)):
            if data is None:
                continue
            fp = _json.loads(data) if isinstance(data, str) else data
            fp["sent_at"] += seconds
            self.query_write("UPDATE chat_turn SET fingerprint = %s WHERE id = %s", (_json.dumps(fp), turn_id))

    def insert_chain(self, session_id: int, branch_id: int, length: int, *, text: str = "long branch message") -> list[int]:
        """A long branch without `length` replies: alternating user/assistant messages (done,
        no turns) inserted straight into the database under the branch's head, which then
        points at the last one. Returns their ids, root side first."""
        head = self.query("SELECT head_id FROM chat_branch WHERE id = %s", (branch_id,))[0][0]
        depth = self.query("SELECT depth FROM chat_message WHERE id = %s", (head,))[0][0] + 1 if head else 0
        if self.mode == "embedded":
            start = (self.query("SELECT max(id) FROM chat_message")[0][0] or 0) + 1
            ids = list(range(start, start + length))
        else:  # reserve real sequence values, so the app's own inserts never collide
            ids = [r[0] for r in self.query(
                "SELECT nextval(pg_get_serial_sequence('chat_message', 'id')) FROM generate_series(1, %s)", (length,))]
        rows, params = [], []
        for i, mid in enumerate(ids):
            d = depth + i
            rows.append("(%s, %s, %s, %s, %s, %s, 'done', CURRENT_TIMESTAMP)")
            params += [mid, session_id, ids[i - 1] if i else head, d, "user" if d % 2 == 0 else "assistant", f"{text} {d}"]
        self.query_write(
            "INSERT INTO chat_message (id, session_id, parent_id, depth, role, content, status, created_at) VALUES " + ", ".join(rows),
            tuple(params),
        )
        self.query_write("UPDATE chat_branch SET head_id = %s WHERE id = %s", (ids[-1], branch_id))
        return ids

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Read the app's database directly (what is really stored)."""
        with self._connect() as execute:
            return execute(sql, params).fetchall()

    def sample(self, sql: str, params: tuple, *, until, timeout: float = 20.0) -> list[list[tuple]]:
        """Run one read over and over on one connection (a sample every ~ms, far tighter than a
        page poll) until `until(rows)` holds; every result seen, in order. For tests about which
        states other processes' commits can ever show."""
        seen: list[list[tuple]] = []
        deadline = time.monotonic() + timeout
        with self._connect() as execute:
            while True:
                rows = execute(sql, params).fetchall()
                seen.append(rows)
                if until(rows):
                    return seen
                if time.monotonic() > deadline:
                    raise AssertionError(f"not reached after {timeout:.0f}s; last seen {rows}")
                time.sleep(0.0005)


_stalled: list[socket.socket] = []


def stalled_port() -> int:
    """A loopback port whose TCP handshake never completes: a true connect timeout.

    The socket listens with a backlog of 0 and never accepts; one connection fills its
    queue, after which the kernel drops new handshakes and clients time out connecting.
    """
    if not _stalled:
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        filler = socket.create_connection(server.getsockname(), timeout=2)
        _stalled.extend([server, filler])
    return _stalled[0].getsockname()[1]


def _base_env(workdir: Path, simulator_url: str, extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(
        PYTHONUNBUFFERED="1",
        PLAYGROUND_DATA_DIR=str(workdir / "data"),
        PLAYGROUND_SIMULATOR_URL=simulator_url,
        PLAYGROUND_LOG_LEVEL="INFO",
        PLAYGROUND_READ_TIMEOUT="3",
        PLAYGROUND_CONNECT_TIMEOUT="2",
        PLAYGROUND_KEY_CHECK_TIMEOUT="3",
        PLAYGROUND_STALE_STREAM_SECONDS="6",
        PLAYGROUND_SWEEP_SECONDS="1",
        # Every test signs up its own users from 127.0.0.1: the per-address limit is tested
        # in tests/security/test_signup_limits.py, not tripped here.
        PLAYGROUND_SIGNUPS_PER_HOUR="0",
        # A provider nobody listens on: the connection-refused path.
        PLAYGROUND_PROVIDERS=json.dumps(
            [
                {"name": "Unreachable", "slug": "unreachable", "base_url": f"http://127.0.0.1:{free_port()}/v1", "needs_key": False},
                {"name": "Stalled", "slug": "stalled", "base_url": f"http://127.0.0.1:{stalled_port()}/v1", "needs_key": False},
            ]
        ),
    )
    env.update(extra or {})
    return env


def start_embedded(workdir: Path, *, simulator_url: str, extra_env: dict[str, str] | None = None) -> AppServer:
    server = AppServer("embedded", workdir, _base_env(workdir, simulator_url, extra_env))
    server.manage("migrate", "--noinput", "-v0")
    server.start_web()
    return server


def start_production(
    workdir: Path, *, simulator_url: str, extra_env: dict[str, str] | None = None, redis_url: str | None = None,
    web_workers: int = 1, worker_processes: int = 1,
) -> AppServer:
    import psycopg
    import redis

    db_name = f"pcp_test_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    redis_url = redis_url or f"{REDIS_BASE}/{1 + secrets.randbelow(14)}"
    redis.Redis.from_url(redis_url).flushdb()
    database_url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{db_name}"
    env = _base_env(workdir, simulator_url, extra_env)
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        DJANGO_SECRET_KEY=secrets.token_urlsafe(40),
        PLAYGROUND_KEY_SECRETS=Fernet.generate_key().decode(),
        PLAYGROUND_HTTPS="0",
    )
    env.update(extra_env or {})
    server = AppServer("production", workdir, env, database_url=database_url, web_workers=web_workers,
                       worker_processes=worker_processes)
    try:
        server.manage("migrate", "--noinput", "-v0")
        server.manage("collectstatic", "--noinput", "-v0")
        server.start_worker()
        server.start_beat()
        server.start_web()
    except BaseException:
        # Whatever started is stopped and the database dropped: a failed start leaks nothing.
        server.stop()
        drop_production(server)
        raise
    return server


def drop_production(server: AppServer) -> None:
    import psycopg
    import redis

    redis.Redis.from_url(server.env["REDIS_URL"]).flushdb()
    db_name = server.database_url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


class RedisServer:
    """A Redis of a test's own (the machine's shared one must never be restarted by a test)."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                return self
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None
