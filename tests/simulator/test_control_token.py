"""The /_sim control API's token: required unless the simulator listens on loopback only.

The network-bound simulators here listen on 0.0.0.0 (every interface) and are reached via
127.0.0.1: what counts is the bind, not the address a client happens to use. The OpenAI-wire
routes (/v1) never need the token.
"""

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from playground.simulator import SimulatorServer
from playground.simulator.cli import CONTROL_TOKEN_ENV, is_loopback

from .conftest import API_KEY

ROOT = Path(__file__).resolve().parents[2]
HELLO = [{"role": "user", "content": "Hello"}]
CONTROL_CALLS = [
    ("GET", "/_sim/requests", None), ("DELETE", "/_sim/requests", None), ("POST", "/_sim/faults", {"status": 500}),
    ("DELETE", "/_sim/faults", None), ("GET", "/_sim/config", None), ("POST", "/_sim/config", {"reply_tokens": 1}),
    ("POST", "/_sim/clock", {"advance": 9}), ("POST", "/_sim/reset", None), ("GET", "/_sim/cache", None),
    ("GET", "/_sim/emissions/req-1", None),
]


@pytest.fixture(scope="module")
def exposed():
    """A simulator bound to every interface, with the token it generated."""
    with SimulatorServer(host="0.0.0.0", tokens_per_second=0, first_token_delay=0) as server:
        yield server


def _local(server: SimulatorServer) -> str:
    return f"http://127.0.0.1:{server.port}"


@pytest.mark.parametrize(
    ("address", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("::ffff:127.0.0.1", True), ("0.0.0.0", False),
     ("::", False), ("10.1.2.3", False), ("localhost", False), ("", False)],
)
def test_what_counts_as_loopback(address, loopback):
    assert is_loopback(address) is loopback


@pytest.mark.parametrize(("method", "path", "payload"), CONTROL_CALLS)
def test_a_network_bind_refuses_the_control_api_without_the_token(exposed, method, path, payload):
    assert exposed.control_token and len(exposed.control_token) >= 32
    missing = httpx.request(method, _local(exposed) + path, json=payload)
    assert missing.status_code == 401
    error = missing.json()["error"]
    assert error["code"] == "control_token_required" and "X-Sim-Control-Token" in error["message"]
    for headers in ({"X-Sim-Control-Token": "wrong"}, {"Authorization": f"Bearer {exposed.control_token[:-1]}"},
                    {"X-Sim-Control-Token": exposed.control_token + "x"}, {"Authorization": exposed.control_token}):
        refused = httpx.request(method, _local(exposed) + path, json=payload, headers=headers)
        assert refused.status_code in (401, 403), headers
        assert refused.json()["error"]["code"] in ("control_token_required", "control_token_invalid")


def test_refused_calls_change_nothing(exposed):
    exposed.reset()
    exposed.add_fault(status=429)
    exposed.advance_clock(30)
    for method, path, payload in CONTROL_CALLS:
        httpx.request(method, _local(exposed) + path, json=payload, headers={"X-Sim-Control-Token": "guess"})
    assert [fault["status"] for fault in exposed.faults()] == [429]
    assert exposed.advance_clock(0)["offset"] == 30
    assert exposed.configure()["reply_tokens"] == 60
    exposed.reset()


def test_with_the_token_the_control_api_works(exposed):
    exposed.reset()
    token = exposed.control_token
    for headers in ({"X-Sim-Control-Token": token}, {"Authorization": f"Bearer {token}"}):
        resp = httpx.post(_local(exposed) + "/_sim/config", json={"reply_tokens": 7}, headers=headers)
        assert resp.status_code == 200 and resp.json()["config"]["reply_tokens"] == 7
        assert httpx.get(_local(exposed) + "/_sim/requests", headers=headers).json() == {"requests": []}
    exposed.reset()  # the helpers send the token themselves
    assert exposed.configure()["reply_tokens"] == 60


def test_the_openai_routes_need_no_control_token(exposed):
    exposed.reset()
    with OpenAI(base_url=_local(exposed) + "/v1", api_key=API_KEY, max_retries=0) as client:
        assert client.models.list().data
        completion = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
        assert completion.choices[0].message.content
        assert len(list(client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True))) > 1
    assert httpx.get(_local(exposed) + "/health").status_code == 200
    assert httpx.get(_local(exposed) + "/v1/models").status_code == 401  # the API key, not the control token
    assert [record["status"] for record in exposed.requests()] == [200, 200, 200, 401]


def test_a_loopback_bind_stays_open(monkeypatch):
    monkeypatch.delenv(CONTROL_TOKEN_ENV, raising=False)
    with SimulatorServer() as server:
        assert server.control_token is None
        assert httpx.post(server.control_url + "/reset").status_code == 200


def test_a_configured_token_is_required_on_loopback_too():
    with SimulatorServer(control_token="operator-chosen-token-0123456789") as server:
        assert httpx.get(server.control_url + "/config").status_code == 401
        assert httpx.get(server.control_url + "/config", headers={"X-Sim-Control-Token": "operator-chosen-token-0123456789"}).status_code == 200
        assert server.configure(reply_tokens=3)["reply_tokens"] == 3


def test_the_cli_generates_the_token_and_prints_it_once():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(CONTROL_TOKEN_ENV, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "playground.simulator", "--host", "0.0.0.0", "--port", "0"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready, "the simulator printed nothing"
        url = proc.stdout.readline().split(" on ", 1)[1].strip().removesuffix("/v1")
        assert url.startswith("http://0.0.0.0:")
        local = "http://127.0.0.1:" + url.rsplit(":", 1)[1]
        token = proc.stdout.readline().rsplit(": ", 1)[1].strip()  # the next line, printed right after
        assert len(token) >= 32
        for _ in range(200):
            try:
                if httpx.get(local + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        assert httpx.get(local + "/_sim/config").status_code == 401
        assert httpx.get(local + "/_sim/config", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    finally:
        proc.terminate()
        rest, _ = proc.communicate(timeout=10)
    assert token not in rest, "printed once, at startup"


def test_a_subprocess_server_on_a_network_bind_gets_and_sends_a_token(monkeypatch):
    monkeypatch.delenv(CONTROL_TOKEN_ENV, raising=False)
    with SimulatorServer(host="0.0.0.0", subprocess=True) as server:
        assert server.control_token
        assert httpx.get(_local(server) + "/_sim/config").status_code == 401
        assert server.configure(reply_tokens=4)["reply_tokens"] == 4
        cmdline = Path(f"/proc/{server._process.pid}/cmdline").read_bytes().decode()
        assert server.control_token not in cmdline, "the token goes in the environment, not argv"
