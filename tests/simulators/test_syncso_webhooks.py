"""Signed webhook deliveries of the sync.so simulator, received by a loopback HTTP server in the test."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from simulators.config import SimConfig
from simulators.server import SimulatorServer
from simulators.syncso.config import SyncSoSimConfig
from tests.simulators.conftest import API_KEY, FAST

SECRET = "whsec_test_5f1c0ffee"
SIGNATURE = re.compile(r"t=(\d+),v1=(.+)")
VIDEO = {"type": "video", "url": "https://cdn.example.com/talk.mp4"}
AUDIO = {"type": "audio", "url": "https://cdn.example.com/voice.wav"}


@dataclass(frozen=True)
class Delivery:
    at: float
    headers: dict[str, str]  # lower-cased names
    body: bytes


class Receiver:
    """A loopback HTTP server that records every POST and answers `status` (after `release` is set)."""

    def __init__(self) -> None:
        self.status = 200
        self.deliveries: list[Delivery] = []
        self.release = threading.Event()
        self.release.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {name.lower(): value for name, value in self.headers.items()}
                receiver.deliveries.append(Delivery(time.time(), headers, body))
                receiver.release.wait(5)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/sync"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def wait(self, count: int, timeout_s: float = 3.0) -> list[Delivery]:
        until(lambda: len(self.deliveries) >= count, timeout_s)
        return self.deliveries

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def hooks(configure: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """`configure` with the test's webhook secret."""
    return lambda **fields: configure(webhook_secret=SECRET, **fields)


def until(condition: Callable[[], bool], timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def create(api: httpx.Client, url: str) -> dict[str, Any]:
    response = api.post(
        "/v2/generate", json={"model": "lipsync-2", "input": [VIDEO, AUDIO], "webhookUrl": url}
    )
    assert response.status_code == 201, response.text
    return response.json()


def webhook_stats(control: httpx.Client) -> dict[str, int]:
    return control.get("/_sim/stats").json()["syncso"]["webhooks"]


def verified(delivery: Delivery, secret: str = SECRET) -> dict[str, Any]:
    """The delivery's payload once its signature checks out (an implementation independent of the sim)."""
    match = SIGNATURE.fullmatch(delivery.headers["sync-signature"])
    assert match is not None
    timestamp, signature = match.groups()
    signed = timestamp.encode() + b"." + delivery.body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, signature)
    assert delivery.headers["x-signature-primary"] == signature
    assert delivery.headers["content-type"] == "application/json"
    assert abs(int(timestamp) - delivery.at) < 2
    return json.loads(delivery.body)


def test_completed_generation_delivers_one_signed_post(api, control, hooks, receiver):
    hooks()
    gen_id = create(api, receiver.url)["id"]
    (delivery,) = receiver.wait(1)
    payload = verified(delivery)
    until(lambda: webhook_stats(control)["delivered"] == 1)
    assert len(receiver.deliveries) == 1
    assert payload["id"] == gen_id and payload["status"] == "COMPLETED"
    assert payload["webhookUrl"] == receiver.url and payload["error_code"] is None
    got = api.get(f"/v2/generate/{gen_id}").json()
    assert {k: v for k, v in payload.items() if k != "outputUrl"} == {
        k: v for k, v in got.items() if k != "outputUrl"
    }
    with httpx.Client() as anonymous:
        assert anonymous.get(payload["outputUrl"]).status_code == 200  # signed like the GET's


def test_rejected_generation_delivers_one_signed_post(api, control, hooks, receiver):
    hooks()
    control.post("/_sim/faults", json={"route": "syncso.outcome", "status": "REJECTED"})
    gen_id = create(api, receiver.url)["id"]
    (delivery,) = receiver.wait(1)
    payload = verified(delivery)
    until(lambda: webhook_stats(control)["delivered"] == 1)
    assert len(receiver.deliveries) == 1
    assert payload["id"] == gen_id and payload["status"] == "REJECTED"
    assert payload["error_code"] and payload["error"] and payload["outputUrl"] is None


def test_delivery_waits_webhook_delay_s_after_the_terminal_time(api, control, hooks, receiver):
    hooks(webhook_delay_s=0.3)
    gen_id = create(api, receiver.url)["id"]
    (delivery,) = receiver.wait(1)
    (lifecycle,) = [g for g in control.get("/_sim/syncso/generations").json() if g["id"] == gen_id]
    assert 0.3 <= delivery.at - lifecycle["terminal_at"] < 0.9


def test_loss_share_one_sends_nothing_and_counts_lost(api, control, hooks, receiver):
    hooks(webhook_loss_share=1.0)
    create(api, receiver.url)
    until(lambda: webhook_stats(control)["lost"] == 1)
    assert receiver.deliveries == []
    assert webhook_stats(control) | {"lost": 0, "scheduled": 0} == dict.fromkeys(webhook_stats(control), 0)


def test_duplicate_share_one_sends_two_identical_deliveries(api, control, hooks, receiver):
    hooks(webhook_duplicate_share=1.0)
    create(api, receiver.url)
    first, second = receiver.wait(2)
    verified(first)
    assert (first.body, first.headers) == (second.body, second.headers)
    until(lambda: webhook_stats(control)["delivered"] == 2)
    assert webhook_stats(control) | {"duplicated": 1, "sent": 2} == webhook_stats(control)


def test_receiver_answering_500_is_counted_refused_and_not_retried(api, control, hooks, receiver):
    hooks()
    receiver.status = 500
    gen_id = create(api, receiver.url)["id"]
    until(lambda: webhook_stats(control)["refused"] == 1)
    time.sleep(0.3)
    assert len(receiver.deliveries) == 1
    counters = webhook_stats(control)
    assert (counters["sent"], counters["delivered"], counters["errors"]) == (1, 0, 0)
    events = [e for e in control.get("/_sim/events").json() if e["route"] == "syncso.webhook"]
    assert [(e["status"], e["generation_id"]) for e in events] == [(500, gen_id)]


def test_unreachable_receiver_is_counted_as_an_error_and_not_retried(api, control, hooks):
    hooks()
    with socket.socket() as closed_port:  # bound, never listening: connections are refused
        closed_port.bind(("127.0.0.1", 0))
        gen_id = create(api, f"http://127.0.0.1:{closed_port.getsockname()[1]}/hook")["id"]
        until(lambda: webhook_stats(control)["errors"] == 1)
        time.sleep(0.3)
    assert webhook_stats(control)["sent"] == 1
    events = [e for e in control.get("/_sim/events").json() if e["route"] == "syncso.webhook"]
    assert [(e["status"], e["generation_id"]) for e in events] == [(0, gen_id)]


def test_reset_cancels_pending_deliveries(api, control, hooks, receiver):
    hooks(webhook_delay_s=0.3)
    create(api, receiver.url)
    control.post("/_sim/reset")
    time.sleep(0.6)  # the delivery was due ~0.45 s after creation
    assert receiver.deliveries == []
    assert webhook_stats(control)["sent"] == 0


def test_server_stops_promptly_with_pending_and_in_flight_deliveries(receiver):
    receiver.release.clear()  # the first delivery stays in flight
    config = SimConfig(syncso=SyncSoSimConfig(**FAST, webhook_secret=SECRET))
    server = SimulatorServer(config)
    with server, httpx.Client(base_url=server.base_url, headers={"x-api-key": API_KEY}) as api:
        create(api, receiver.url)
        api.post("/_sim/config", json={"syncso": {"webhook_delay_s": 60}})
        create(api, receiver.url)
        receiver.wait(1)
        started = time.monotonic()
    assert time.monotonic() - started < 2
    assert not server._thread.is_alive()
    assert len(receiver.deliveries) == 1
