"""Shared fixtures. Unit tests use pytest-django's test database (SQLite); end-to-end tests
run the real app processes from tests/harness against the OpenAI-wire simulator."""

from __future__ import annotations

import itertools
import os
import secrets
from pathlib import Path

import pytest

from playground.chat import outbox
from playground.simulator.server import SimulatorServer
from tests.harness.client import UserClient
from tests.harness.servers import drop_production, start_embedded, start_production

ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
_names = itertools.count(1)


@pytest.fixture(scope="session")
def simulator():
    with SimulatorServer(port=0) as sim:
        yield sim


@pytest.fixture
def sim(simulator):
    """The simulator, reset (faults, records, clock, cache, config) for this test."""
    simulator.reset()
    yield simulator
    simulator.reset()


@pytest.fixture(scope="session")
def embedded_app(simulator, tmp_path_factory):
    server = start_embedded(tmp_path_factory.mktemp("embedded"), simulator_url=simulator.base_url)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def production_app(simulator, tmp_path_factory):
    server = start_production(tmp_path_factory.mktemp("production"), simulator_url=simulator.base_url)
    yield server
    server.stop()
    drop_production(server)


@pytest.fixture(params=["embedded", pytest.param("production", marks=pytest.mark.integration)])
def app(request, sim):
    """Each end-to-end test runs in both deployment modes."""
    return request.getfixturevalue(f"{request.param}_app")


def new_user(app, *, key: str | None = None) -> UserClient:
    """A fresh signed-up user with a simulator key (unique per user: its own cache org)."""
    client = UserClient(app).signup(f"user{next(_names)}_{secrets.token_hex(3)}")
    resp = client.add_key("simulator", key or f"sk-sim-{secrets.token_hex(12)}")
    assert resp.status_code == 200 and "mask" in resp.text, resp.text[:2000]
    return client


@pytest.fixture
def user(app):
    return new_user(app)


@pytest.fixture
def emitted(request):
    """The events services emit during the test, captured on commit and delivered to nobody
    (no job starts, no tab is sent anything): assert what a service announced, not how.

    Only in a test whose transactions really commit (`django_db(transaction=True)`): in
    pytest-django's default test transaction nothing commits, so nothing would be captured
    and an assertion of "no events" could never fail."""
    marker = request.node.get_closest_marker("django_db")
    if not (marker is not None and marker.kwargs.get("transaction")) and "transactional_db" not in request.fixturenames:
        pytest.fail("the `emitted` fixture needs @pytest.mark.django_db(transaction=True)")
    with outbox.capture() as captured:
        yield captured
