"""The /_sim control API, the SimulatorServer helpers and the subprocess mode."""

import hashlib
import time

import httpx
import openai
import pytest

from playground.simulator import SimulatorServer

from .conftest import API_KEY

HELLO = [{"role": "user", "content": "Hello"}]


def test_requests_are_recorded_in_order_with_bodies(client, sim):
    client.models.list()
    client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, prompt_cache_key="pk-1")
    list(client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True))
    listing, whole, streamed = sim.requests()
    assert (listing["method"], listing["path"], listing["status"]) == ("GET", "/v1/models", 200)
    assert whole["body"] == {"model": "gpt-4o-mini", "messages": HELLO, "prompt_cache_key": "pk-1"}
    assert whole["usage"]["prompt_tokens"] > 0 and whole["cached_tokens"] == 0
    assert whole["stream"] is False and whole["stream_completed"] is None
    assert streamed["stream"] is True and streamed["stream_completed"] is True
    assert streamed["usage"] is None  # include_usage was not asked for
    assert whole["api_key_fingerprint"] == hashlib.sha256(API_KEY.encode()).hexdigest()[:12]
    assert whole["org_fingerprint"].startswith("org-")
    assert listing["received_at"] <= whole["received_at"] <= streamed["received_at"]
    assert API_KEY not in str(sim.requests())
    sim.clear_requests()
    assert sim.requests() == []


def test_record_id_is_the_request_id_header(client, sim):
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert sim.requests()[-1]["id"] == completion._request_id


def test_config_round_trip_and_validation(sim):
    config = sim.configure(reply_tokens=5, tokens_per_second=10)
    assert config["reply_tokens"] == 5 and config["tokens_per_second"] == 10.0
    with httpx.Client(base_url=sim.control_url) as control:
        assert control.get("/config").json()["config"] == config
        assert control.post("/config", json={"reply_mode": "poetry"}).status_code == 400
        assert control.post("/config", json={"no_such_setting": 1}).status_code == 400
        assert control.post("/config", json={"reply_tokens": "many"}).status_code == 400
    sim.reset()
    assert httpx.get(f"{sim.control_url}/config").json()["config"]["reply_tokens"] == 60


def test_clock(sim):
    before = sim.advance_clock(0)
    after = sim.advance_clock(120)
    assert after["offset"] == before["offset"] + 120
    assert httpx.post(f"{sim.control_url}/clock", json={"advance": -1}).status_code == 400


def test_reset_clears_everything(client, sim):
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x " * 1100}])
    sim.add_fault(status=500)
    sim.advance_clock(10)
    sim.configure(reply_tokens=3)
    sim.reset()
    assert sim.requests() == [] and sim.faults() == [] and sim.cache() == []
    assert sim.advance_clock(0)["offset"] == 0


def test_emissions_are_recorded_per_content_chunk(client, sim):
    sim.configure(record_emissions=True, reply_mode="numbered", reply_tokens=10, tokens_per_second=100)
    list(client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True))
    emissions = sim.emissions(sim.requests()[-1]["id"])
    assert [row["index"] for row in emissions] == list(range(10))
    monotonic = [row["monotonic"] for row in emissions]
    assert monotonic == sorted(monotonic)
    assert 0.07 < monotonic[-1] - monotonic[0] < 0.3  # 9 intervals of 10 ms
    assert httpx.get(f"{sim.control_url}/emissions/req_unknown").status_code == 404


def test_streaming_pace_follows_the_config(client, sim):
    sim.configure(reply_mode="numbered", reply_tokens=20, tokens_per_second=50, first_token_delay=0.2)
    start = time.monotonic()
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True)
    arrivals = [time.monotonic() - start for chunk in stream if chunk.choices and chunk.choices[0].delta.content]
    assert 0.18 < arrivals[0] < 0.5
    assert 0.3 < arrivals[-1] - arrivals[0] < 0.7  # 19 intervals of 20 ms


def test_subprocess_mode():
    with SimulatorServer(subprocess=True, reply_mode="echo", tokens_per_second=0) as sim:
        with openai.OpenAI(base_url=sim.base_url, api_key=API_KEY, max_retries=0) as client:
            completion = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
        assert completion.choices[0].message.content == "Hello"
        assert sim.requests()[0]["status"] == 200
        sim.configure(reply_mode="numbered")
        sim.reset()  # back to the startup config given on the command line
        assert httpx.get(f"{sim.control_url}/config").json()["config"]["reply_mode"] == "echo"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{sim.url}/health")


def test_health(sim):
    assert httpx.get(f"{sim.url}/health").json() == {"status": "ok"}
