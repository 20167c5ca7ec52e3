"""Fixtures: one simulator per test session (thread mode), reset before every test.

The startup config streams as fast as possible, so reset() returns to a fast
simulator; tests that care about timing configure it themselves. These tests need
no Django: run them with ``pytest tests/simulator -p no:django``.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

if importlib.util.find_spec("playground") is None:  # the editable install may not map the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from openai import AsyncOpenAI, OpenAI  # noqa: E402

from playground.simulator import SimulatorServer  # noqa: E402

API_KEY = "sk-sim-test-1"


@pytest.fixture(scope="session")
def simulator():
    with SimulatorServer(tokens_per_second=0, first_token_delay=0) as server:
        yield server


@pytest.fixture
def sim(simulator):
    simulator.reset()
    return simulator


@pytest.fixture(scope="session")
def session_client(simulator):
    with OpenAI(base_url=simulator.base_url, api_key=API_KEY, max_retries=0) as client:
        yield client


@pytest.fixture
def client(sim, session_client):
    """A synchronous SDK client (no retries) against a freshly reset simulator."""
    return session_client


@pytest.fixture
def new_async_client(sim):
    """Make an AsyncOpenAI client; create it inside the test's event loop and close it there."""
    return lambda: AsyncOpenAI(base_url=sim.base_url, api_key=API_KEY, max_retries=0)
