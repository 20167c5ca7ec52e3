#!/usr/bin/env bash
# `make run`: the app on http://127.0.0.1:8000 with the embedded defaults (SQLite, in-process
# channel layer and generation), plus the OpenAI-wire simulator on :8100 as a provider so a
# newcomer can try everything without an OpenAI key. Ctrl+C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
SIM_PORT=${SIMULATOR_PORT:-8100}
export PLAYGROUND_SIMULATOR_URL=${PLAYGROUND_SIMULATOR_URL:-http://127.0.0.1:$SIM_PORT/v1}
$PY -m playground.simulator --host 127.0.0.1 --port "$SIM_PORT" &
sim=$!
trap 'kill $sim 2>/dev/null || true' EXIT INT TERM
echo "Prompt Cache Playground on http://127.0.0.1:${PORT:-8000}/ (simulator provider at $PLAYGROUND_SIMULATOR_URL)"
.venv/bin/uvicorn playground.asgi:application --host 127.0.0.1 --port "${PORT:-8000}" --no-access-log --ws-per-message-deflate false
