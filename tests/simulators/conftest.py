"""A simulator on a real loopback port, shared by the module and reset before every test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from simulators.config import SimConfig
from simulators.server import SimulatorServer
from simulators.syncso.config import SyncSoSimConfig

API_KEY = "test-key"
# Short, jitter-free lifecycle so a generation completes in ~0.15 s.
FAST: dict[str, Any] = {"api_key": API_KEY, "pending_s": 0.05, "processing_s": 0.1, "duration_jitter": 0.0}


@pytest.fixture(scope="module")
def sim_server() -> Iterator[SimulatorServer]:
    with SimulatorServer(SimConfig(syncso=SyncSoSimConfig(**FAST))) as server:
        yield server


@pytest.fixture(scope="module")
def _clients(sim_server: SimulatorServer) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    with (
        httpx.Client(base_url=sim_server.base_url, timeout=15) as control,
        httpx.Client(base_url=sim_server.base_url, headers={"x-api-key": API_KEY}, timeout=15) as api,
    ):
        yield control, api


@pytest.fixture
def control(_clients: tuple[httpx.Client, httpx.Client]) -> httpx.Client:
    """Client for `/_sim/` routes; restores the baseline config and clears all state first."""
    client = _clients[0]
    baseline = SyncSoSimConfig(**FAST).model_dump(mode="json")
    assert client.post("/_sim/config", json={"syncso": baseline}).status_code == 200
    assert client.post("/_sim/reset").status_code == 200
    assert client.delete("/_sim/faults").status_code == 200
    return client


@pytest.fixture
def api(_clients: tuple[httpx.Client, httpx.Client], control: httpx.Client) -> httpx.Client:
    """Authenticated sync.so client (state already reset by `control`)."""
    return _clients[1]


@pytest.fixture
def configure(control: httpx.Client) -> Callable[..., dict[str, Any]]:
    def _configure(**fields: Any) -> dict[str, Any]:
        response = control.post("/_sim/config", json={"syncso": fields})
        assert response.status_code == 200, response.text
        return response.json()["syncso"]

    return _configure
