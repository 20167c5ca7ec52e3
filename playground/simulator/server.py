"""Run the simulator for tests and benchmarks: in a background thread or a subprocess.

Thread mode is cheapest. Subprocess mode is for tests that start other processes
(a worker, a server) that must reach the simulator, and for benchmarks that must
not share the GIL with it. Both listen on a real port, and the helpers talk to the
control API over HTTP, so they behave the same in either mode::

    with SimulatorServer(tokens_per_second=0) as sim:
        client = OpenAI(base_url=sim.base_url, api_key="sk-sim-test-1")
        ...
        sim.add_fault(status=429, retry_after=7)
        assert sim.requests()[-1]["status"] == 429

Bound to loopback (the default) the control API is open. Bound elsewhere, or given a
``control_token``, it requires the token (``control_token`` then holds it, generated
when none was configured), and the helpers send it.
"""

import os
import re
import select
import sys
import threading
import time
from pathlib import Path
from subprocess import PIPE, Popen, TimeoutExpired
from types import TracebackType

import httpx
import uvicorn

from .app import create_app
from .cli import CONTROL_TOKEN_ENV, bind, config_flags, control_token, uvicorn_config
from .control import TOKEN_HEADER
from .state import Config, SimulatorState

_REPO_ROOT = Path(__file__).resolve().parents[2]
_URL_LINE = re.compile(r"(http://\S+)/v1")


class SimulatorServer:
    """A running simulator; use as a context manager or call start() and stop().

    ``config`` keywords are :class:`~.state.Config` fields (the startup config that
    ``reset()`` returns to). ``port=0`` picks a free port.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        subprocess: bool = False,
        startup_timeout: float = 20.0,
        control_token: str | None = None,
        **config: object,
    ) -> None:
        self.config = Config(**config)
        self.control_token = control_token
        self.host = host
        self.port = port
        self.in_subprocess = subprocess
        self.startup_timeout = startup_timeout
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._process: Popen | None = None
        self._control: httpx.Client | None = None

    @property
    def base_url(self) -> str:
        """What to pass to ``OpenAI(base_url=...)``."""
        return f"{self.url}/v1"

    @property
    def control_url(self) -> str:
        return f"{self.url}/_sim"

    # Lifecycle -----------------------------------------------------------------

    def start(self) -> "SimulatorServer":
        """Start serving; returns once the server answers HTTP requests."""
        deadline = time.monotonic() + self.startup_timeout
        try:
            if self.in_subprocess:
                self._start_process(deadline)
            else:
                self._start_thread(deadline)
            headers = {TOKEN_HEADER: self.control_token} if self.control_token else {}
            self._control = httpx.Client(base_url=self.control_url, timeout=10, headers=headers)
            self._wait_healthy(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._server = self._thread = None
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process.stdout.close()
            self._process = None

    def __enter__(self) -> "SimulatorServer":
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _start_thread(self, deadline: float) -> None:
        sock = bind(self.host, self.port)
        address, self.port = sock.getsockname()[:2]
        self.url = f"http://{self.host}:{self.port}"
        self.control_token, _ = control_token(address, self.control_token)
        app = create_app(SimulatorState(self.config), control_token=self.control_token)
        # log_config=None leaves logging to the host process (pytest captures it).
        self._server = uvicorn.Server(uvicorn_config(app, log_config=None))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="openai-simulator", daemon=True
        )
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the simulator thread did not start")
            time.sleep(0.01)

    def _start_process(self, deadline: float) -> None:
        command = [sys.executable, "-m", "playground.simulator", "--host", self.host, "--port", str(self.port)]
        python_path = os.pathsep.join(filter(None, [str(_REPO_ROOT), os.environ.get("PYTHONPATH")]))
        # Decided here, and passed in the environment (not argv, which other users can see),
        # so the subprocess never generates one this side cannot know. A host name counts
        # as non-loopback: it gets a token.
        self.control_token, _ = control_token(self.host, self.control_token)
        env = {**os.environ, "PYTHONPATH": python_path, CONTROL_TOKEN_ENV: self.control_token or ""}
        self._process = Popen(
            command + config_flags(self.config),
            stdout=PIPE,
            text=True,
            env=env,
            cwd=_REPO_ROOT,
        )
        ready, _, _ = select.select([self._process.stdout], [], [], max(deadline - time.monotonic(), 0))
        match = _URL_LINE.search(self._process.stdout.readline()) if ready else None
        if match is None:
            raise RuntimeError("the simulator subprocess did not report its URL")
        self.url = match.group(1)
        self.port = int(self.url.rsplit(":", 1)[1])

    def _wait_healthy(self, deadline: float) -> None:
        """Return once the server answers HTTP, not merely once the port is bound."""
        while True:
            try:
                if self._control.get(f"{self.url}/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the simulator at {self.url} did not become healthy")
            time.sleep(0.02)

    # Control API -------------------------------------------------------------------

    def _call(self, method: str, path: str, payload: dict | None = None) -> dict:
        response = self._control.request(method, path, json=payload)
        response.raise_for_status()
        return response.json()

    def requests(self) -> list[dict]:
        """Every /v1 request so far, in arrival order (see ``GET /_sim/requests``)."""
        return self._call("GET", "/requests")["requests"]

    def clear_requests(self) -> None:
        self._call("DELETE", "/requests")

    def add_fault(self, **rule: object) -> dict:
        """Queue one fault rule (``status``, ``delay``, ``cut_after_chunks`` ...)."""
        return self._call("POST", "/faults", rule)["fault"]

    def faults(self) -> list[dict]:
        return self._call("GET", "/faults")["faults"]

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def configure(self, **config: object) -> dict:
        """Update some config fields; returns the whole config."""
        return self._call("POST", "/config", config)["config"]

    def advance_clock(self, seconds: float) -> dict:
        return self._call("POST", "/clock", {"advance": seconds})

    def reset(self) -> None:
        self._call("POST", "/reset")

    def emissions(self, request_id: str) -> list[dict]:
        return self._call("GET", f"/emissions/{request_id}")["emissions"]

    def cache(self) -> list[dict]:
        return self._call("GET", "/cache")["buckets"]
