"""The processes under test: the simulator (its own process) and the app in either mode.

The app is started the way tests/harness/servers.py starts it (same environment, same
commands), with two knobs the harness does not need: the number of uvicorn workers and the
Celery thread-pool size. Timeouts are the app's production defaults, not the harness's short
test values.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import select
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from tests.harness import servers as harness

ROOT = Path(__file__).resolve().parents[1]

# The app's own defaults (README), instead of the harness's short test timeouts.
BENCH_ENV = {
    "PLAYGROUND_READ_TIMEOUT": "60",
    "PLAYGROUND_CONNECT_TIMEOUT": "10",
    "PLAYGROUND_KEY_CHECK_TIMEOUT": "10",
    "PLAYGROUND_STALE_STREAM_SECONDS": "90",
    "PLAYGROUND_LOG_LEVEL": "INFO",
}


class Simulator:
    """`python -m playground.simulator` in its own process, so it never shares our GIL."""

    def __init__(self, workdir: Path, **config):
        self.workdir = workdir
        self.config = config
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> "Simulator":
        argv = [sys.executable, "-m", "playground.simulator", "--host", "127.0.0.1", "--port", "0"]
        for key, value in self.config.items():
            flag = "--" + key.replace("_", "-")
            if isinstance(value, bool):
                argv.append(flag if value else "--no-" + flag[2:])
            else:
                argv += [flag, str(value)]
        # Loopback and no control token: /_sim stays open to this process's plain requests.
        env = {**os.environ, "PYTHONPATH": str(ROOT), "SIMULATOR_CONTROL_TOKEN": ""}
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline() if ready else ""
        match = re.search(r"(http://\S+)/v1", line)
        if not match:
            self.stop()
            raise RuntimeError(f"simulator did not start: {line!r}")
        self.url = match.group(1)
        log = (self.workdir / "simulator.log").open("a")
        threading.Thread(target=lambda: [log.write(x) for x in self.proc.stdout], daemon=True).start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("simulator not healthy")

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def control(self, method: str, path: str, payload: dict | None = None, timeout: float = 60) -> dict:
        resp = httpx.request(method, f"{self.url}/_sim{path}", json=payload, timeout=timeout)
        resp.raise_for_status()
        return resp.json()

    def configure(self, **config) -> dict:
        return self.control("POST", "/config", config)["config"]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class BenchServer(harness.AppServer):
    """The harness's AppServer, sized for load: see `start` for the worker count and pool.
    Several worker processes run under one process group "worker" (the harness's
    `start_worker`), so the figures of "worker" are theirs summed (bench/procs.py counts
    descendants)."""

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.procs.items()}

    def run_script(self, module: str, args: list[str], timeout: float = 900) -> dict:
        """Run `python -m <module> args...` in the app's environment; it prints one JSON object last."""
        env = {**self.env, "DJANGO_SETTINGS_MODULE": "playground.settings", "PYTHONPATH": str(ROOT)}
        out = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"{module} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])


def start(mode: str, *, simulator_url: str, web_workers: int = 1, worker_concurrency: int = 64, worker_processes: int = 1,
          workdir: Path | None = None) -> BenchServer:
    workdir = workdir or Path(tempfile.mkdtemp(prefix=f"bench-{mode}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    env = harness._base_env(workdir, simulator_url, BENCH_ENV)
    if mode == "embedded":
        # One web process: the in-memory channel layer lives in it.
        server = BenchServer("embedded", workdir, env, web_timeout=60.0)
        server.manage("migrate", "--noinput", "-v0")
        server.start_web()
        return server
    import psycopg
    import redis
    from cryptography.fernet import Fernet

    db_name = f"pcp_bench_{secrets.token_hex(4)}"
    with psycopg.connect(harness.PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    # Database 15: the test harness picks 1-14 at random and flushes it, so a bench run never
    # collides with a test run on the same Redis.
    redis_url = f"{harness.REDIS_BASE}/15"
    redis.Redis.from_url(redis_url).flushdb()
    env.update(
        DATABASE_URL=harness.PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{db_name}",
        REDIS_URL=redis_url,
        DJANGO_SECRET_KEY=secrets.token_urlsafe(40),
        PLAYGROUND_KEY_SECRETS=Fernet.generate_key().decode(),
        PLAYGROUND_HTTPS="0",
    )
    server = BenchServer(
        "production", workdir, env, database_url=env["DATABASE_URL"], web_workers=web_workers,
        worker_concurrency=worker_concurrency, worker_processes=worker_processes, web_timeout=60.0, worker_timeout=90.0,
        worker_name="bench",
    )
    try:
        server.manage("migrate", "--noinput", "-v0")
        server.manage("collectstatic", "--noinput", "-v0")
        server.start_worker()
        server.start_web()
    except BaseException:
        stop(server)
        raise
    return server


def stop(server: BenchServer) -> None:
    server.stop()
    if server.mode == "production":
        try:
            harness.drop_production(server)
        except Exception as exc:  # noqa: BLE001 - cleanup must not hide the results
            print(f"warning: could not drop the bench database: {exc}", file=sys.stderr)
