"""Many concurrent streams keep their pace and deliver every token in order.

The simulator runs in a subprocess so it does not share this process's GIL. The
streams go through the real AsyncOpenAI client over HTTP, but are read raw
(``with_streaming_response``) and decoded with ``json.loads``: the SDK's parsed
iteration costs about 0.4 ms of CPU per chunk, so 2,500 chunks/s would measure the
SDK, not the simulator. Parsed SDK streaming is covered by the functional tests.
"""

import asyncio
import json
import time

import pytest
from openai import AsyncOpenAI

from playground.simulator import SimulatorServer

from .conftest import API_KEY

STREAMS = 50
TOKENS = 100
RATE = 50.0
FIRST_TOKEN_DELAY = 0.05


@pytest.fixture(scope="module")
def paced_simulator():
    with SimulatorServer(
        subprocess=True,
        reply_mode="numbered",
        reply_tokens=TOKENS,
        tokens_per_second=RATE,
        first_token_delay=FIRST_TOKEN_DELAY,
        record_emissions=True,
    ) as server:
        yield server


async def stream_tokens(client: AsyncOpenAI, index: int) -> list[str]:
    tokens = []
    messages = [{"role": "user", "content": f"stream {index}"}]
    async with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=messages, stream=True
    ) as response:
        async for line in response.iter_lines():
            if line.startswith("data: {"):
                choices = json.loads(line.removeprefix("data: "))["choices"]
                if choices and choices[0]["delta"].get("content"):
                    tokens.append(choices[0]["delta"]["content"])
    return tokens


def test_50_concurrent_streams_keep_their_rate(paced_simulator):
    async def run() -> tuple[list[list[str]], float]:
        async with AsyncOpenAI(base_url=paced_simulator.base_url, api_key=API_KEY, max_retries=0) as client:
            await client.models.list()  # warm the client up, so its first-call costs stay out of the timing
            start = time.monotonic()
            results = await asyncio.gather(*(stream_tokens(client, index) for index in range(STREAMS)))
            return results, time.monotonic() - start

    results, elapsed = asyncio.run(run())

    expected = [f" {number}" for number in range(1, TOKENS + 1)]
    assert all(tokens == expected for tokens in results)

    records = [record for record in paced_simulator.requests() if record["stream"]]
    assert len(records) == STREAMS and all(record["stream_completed"] for record in records)
    for record in records:
        emitted = [row["monotonic"] for row in paced_simulator.emissions(record["id"])]
        assert len(emitted) == TOKENS
        assert emitted[-1] - emitted[0] < 1.25 * (TOKENS - 1) / RATE, "the server fell behind its schedule"

    ideal = FIRST_TOKEN_DELAY + (TOKENS - 1) / RATE
    assert elapsed < 1.5 * ideal, f"{STREAMS} streams took {elapsed:.2f}s, ideal {ideal:.2f}s"
