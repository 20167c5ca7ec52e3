"""An OpenAI-wire test server that simulates prompt caching.

The real ``openai`` SDK talks to it over HTTP exactly as it talks to OpenAI: Chat
Completions and Responses (whole and streamed), models, OpenAI-shaped errors, and
usage whose ``cached_tokens`` follow OpenAI's caching rules (1024-token minimum,
128-token steps, per-organization and per-``prompt_cache_key`` routing, idle
expiry, spill-over past ~15 requests per minute, billed cache writes on newer
models). It serves the project's tests, benchmarks, and newcomers without an OpenAI
key: ``python -m playground.simulator --port 8100``.

Modules: ``app`` (routes and request pipeline), ``models`` (the model table),
``validation`` (OpenAI's 400s),
``prompt`` and ``tokenizer`` (the prompt token sequence), ``cache`` (the cache
model), ``generation``, ``replies`` and ``wire`` (what is answered), ``streaming``
(SSE timing and injected stream faults), ``state`` and ``control`` (config, clock,
faults, recorded requests and the /_sim control API), ``errors`` and ``identity``
(error bodies, key fingerprints), ``server`` and ``cli`` (running it).
"""

from .app import create_app
from .server import SimulatorServer
from .state import Config, SimulatorState

__all__ = ["Config", "SimulatorServer", "SimulatorState", "create_app"]
