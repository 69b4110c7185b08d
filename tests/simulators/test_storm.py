"""The fault storm (`/_sim/storm`) over real loopback HTTP (server fixtures in conftest.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.responses import Response

from simulators.__main__ import build_parser, storm_from_args
from simulators.registry import SIMULATORS
from simulators.server import SimulatorServer
from simulators.storm import CutResponse, StormKind, StormPlan
from tests.simulators.conftest import API_KEY

KINDS = [kind.value for kind in StormKind]
PROVIDERS = [spec.name for spec in SIMULATORS]
GENERATE = {
    "model": "lipsync-2",
    "input": [
        {"type": "video", "url": "https://cdn.example.com/talk.mp4"},
        {"type": "audio", "url": "https://cdn.example.com/voice.wav"},
    ],
}
# The client gives up long before a stormed timeout answers (2 s), and waits for any other answer on a
# busy machine.
SHORT_READ = httpx.Timeout(5.0, read=0.6)


@pytest.fixture
def storm(control: httpx.Client) -> Iterator[Any]:
    """Starts a storm from keyword fields (state already reset by `control`); ends it afterwards."""

    def _start(**plan: Any) -> dict[str, Any]:
        response = control.post("/_sim/storm", json=plan)
        assert response.status_code == 201, response.text
        view: dict[str, Any] = response.json()
        return view

    yield _start
    control.delete("/_sim/storm")


@pytest.fixture
def impatient(sim_server: SimulatorServer, control: httpx.Client) -> Iterator[httpx.Client]:
    """An authenticated sync.so client whose read timeout is 0.2 s."""
    headers = {"x-api-key": API_KEY}
    with httpx.Client(base_url=sim_server.base_url, headers=headers, timeout=SHORT_READ) as client:
        yield client


def counters(control: httpx.Client, provider: str = "syncso") -> dict[str, int]:
    counts: dict[str, int] = control.get("/_sim/storm").json()["counters"][provider]
    return counts


def observe(client: httpx.Client, method: str, path: str, **kwargs: Any) -> str:
    """What the client saw, named as the storm's counters name it ("ok" when untouched)."""
    try:
        response = client.request(method, path, **kwargs)
    except httpx.ReadTimeout:
        return "timeout"
    except (httpx.RemoteProtocolError, httpx.ReadError):
        return "drop"
    if response.status_code >= 500:
        return "5xx"
    if response.status_code == 429:
        return {"rate_limit_exceeded": "429_rate", "concurrency_limit_reached": "429_concurrency"}[
            response.json()["errorCode"]
        ]
    assert response.status_code < 300, response.text
    return "ok"


# Shares, counters, determinism


@pytest.mark.slow
def test_observed_shares_match_the_plan_and_the_counters(impatient, control, configure, storm):
    configure(other_rate_limit=10_000)
    shares = {"5xx": 0.2, "429": 0.1, "timeout": 0.05, "drop": 0.05}
    storm(providers=["syncso"], **{f"share_{k}": v for k, v in shares.items()}, timeout_s=2.0, seed=7)
    seen = Counter(observe(impatient, "GET", "/v2/models") for _ in range(400))

    assert counters(control) == {"requests": 400} | {kind: seen[kind] for kind in KINDS}
    observed = {"5xx": seen["5xx"], "429": seen["429_rate"] + seen["429_concurrency"]}
    observed |= {"timeout": seen["timeout"], "drop": seen["drop"]}
    for kind, share in shares.items():
        assert abs(observed[kind] / 400 - share) <= 0.05, (kind, seen)
    assert seen["429_rate"] > 0 and seen["429_concurrency"] > 0
    stats = control.get("/_sim/stats").json()
    assert stats["storm"]["syncso"] == counters(control)
    assert stats["storm"]["aimi"] == dict.fromkeys(["requests", *KINDS], 0)  # not stormed


def test_same_seed_same_faults(api, control, storm):
    def run() -> list[tuple[int, str | None]]:
        storm(share_5xx=0.3, share_429=0.3, seed=11)
        answers = [api.get("/v2/models") for _ in range(60)]
        return [(r.status_code, r.json().get("errorCode") if r.status_code == 429 else None) for r in answers]

    first = run()
    assert first == run()
    assert {status for status, _ in first} == {200, 429, 500, 502, 503}


def test_draw_bands():
    plan = StormPlan(share_5xx=0.3, share_429=0.2, share_timeout=0.1, share_drop=0.1)
    cases = [
        (0.0, (StormKind.SERVER_ERROR, 500)),
        (0.15, (StormKind.SERVER_ERROR, 502)),
        (0.29, (StormKind.SERVER_ERROR, 503)),
        (0.31, (StormKind.RATE_LIMIT, 429)),
        (0.45, (StormKind.CONCURRENCY, 429)),
        (0.55, (StormKind.TIMEOUT, None)),
        (0.65, (StormKind.DROP, None)),
        (0.71, None),
        (0.99, None),
    ]
    assert [plan.outcome(u) for u, _ in cases] == [expected for _, expected in cases]


# Each provider's refusals


def test_each_provider_answers_a_5xx_with_its_own_error_body(control, storm):
    storm(share_5xx=1.0, seed=3)
    # The storm strikes before auth: no credentials needed.
    syncso = control.get("/v2/models")
    assert syncso.status_code in (500, 502, 503)
    assert syncso.json() == {"statusCode": syncso.status_code, "message": syncso.reason_phrase,
                             "error": syncso.reason_phrase}  # fmt: skip
    studio = control.get("/api/odin/v3/model")
    assert studio.status_code in (500, 502, 503)
    assert studio.json()["success"] is False
    assert studio.json()["error"]["msg"] == studio.reason_phrase
    aimi = control.post("/sync_status", json={"execid": "x"})
    assert aimi.status_code in (500, 502, 503)
    assert aimi.json() == {"message": aimi.reason_phrase}
    statuses = {control.get("/v2/models").status_code for _ in range(30)}
    assert statuses == {500, 502, 503}


def test_each_provider_answers_a_429_with_its_rate_and_concurrency_bodies(control, storm):
    storm(share_429=1.0, retry_after_s=2.5, seed=5)
    syncso = [control.get("/v2/models") for _ in range(12)]
    by_code = {r.json()["errorCode"]: r for r in syncso}
    assert set(by_code) == {"rate_limit_exceeded", "concurrency_limit_reached"}
    assert by_code["rate_limit_exceeded"].headers["Retry-After"] == "3"  # whole seconds, rounded up
    assert "Retry-After" not in by_code["concurrency_limit_reached"].headers  # sync.so sends none there

    aimi = {r.json()["message"]: r for r in (control.post("/sync_status", json={}) for _ in range(12))}
    assert set(aimi) == {"cooldown", "at most 10 executions at a time"}
    assert {r.status_code for r in aimi.values()} == {429}
    assert {r.headers["Retry-After"] for r in aimi.values()} == {"3"}

    studio = control.get("/api/odin/v3/model")  # AI Studios has one 429, without Retry-After
    assert studio.status_code == 429 and "Retry-After" not in studio.headers
    assert studio.json()["error"]["code"] == "TOO_MANY_REQUESTS"
    counts = counters(control)
    assert counts["429_rate"] + counts["429_concurrency"] == 12
    assert counts["429_rate"] == sum(r.json()["errorCode"] == "rate_limit_exceeded" for r in syncso)


# Timeouts and drops: processed, then the client loses the answer


def test_timeout_is_processed_and_an_idempotent_retry_gets_the_same_generation(
    impatient, api, control, storm
):
    storm(providers=["syncso"], share_timeout=1.0, timeout_s=30.0)
    key = {"Idempotency-Key": "storm-timeout-1"}
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        impatient.post("/v2/generate", json=GENERATE, headers=key)
    assert time.monotonic() - started < 2
    assert control.get("/_sim/stats").json()["syncso"]["generations_created"] == 1

    control.delete("/_sim/storm")
    retry = api.post("/v2/generate", json=GENERATE, headers=key)
    assert retry.status_code == 200 and retry.headers["Idempotent-Replayed"] == "true"
    assert [g["id"] for g in control.get("/_sim/syncso/generations").json()] == [retry.json()["id"]]
    assert control.get("/_sim/stats").json()["syncso"]["generations_created"] == 1
    assert counters(control) == {"requests": 1, "timeout": 1} | dict.fromkeys(
        ["5xx", "429_rate", "429_concurrency", "drop"], 0
    )


def test_drop_breaks_the_response_after_the_generation_exists(api, control, storm):
    storm(providers=["syncso"], share_drop=1.0)
    key = {"Idempotency-Key": "storm-drop-1"}
    with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
        api.post("/v2/generate", json=GENERATE, headers=key)
    assert control.get("/_sim/stats").json()["syncso"]["generations_created"] == 1
    assert counters(control)["drop"] == 1

    control.delete("/_sim/storm")
    retry = api.post("/v2/generate", json=GENERATE, headers=key)
    assert retry.status_code == 200 and retry.headers["Idempotent-Replayed"] == "true"
    assert control.get("/_sim/stats").json()["syncso"]["generations_created"] == 1


def test_storage_is_stormed_too(api, control, storm):
    gen_id = api.post("/v2/generate", json=GENERATE).json()["id"]
    generation = api.get(f"/v2/generate/{gen_id}", params={"wait": "true", "timeout": "5"}).json()
    assert generation["status"] == "COMPLETED"
    storm(providers=["syncso"], share_drop=1.0)
    with httpx.Client() as storage, pytest.raises(httpx.RemoteProtocolError):  # a signed URL, no key
        storage.get(generation["outputUrl"])
    assert counters(control) == {"requests": 1, "drop": 1} | dict.fromkeys(
        ["5xx", "429_rate", "429_concurrency", "timeout"], 0
    )


def test_a_cut_empty_body_still_promises_a_byte():
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    cut = CutResponse(Response(status_code=302, headers={"Location": "/x"}))
    asyncio.run(cut({"type": "http"}, receive, send))
    start, body = sent
    assert start["status"] == 302 and (b"content-length", b"1") in start["headers"]
    assert body == {"type": "http.response.body", "body": b"", "more_body": True}


# Control


def test_control_routes_are_never_stormed(control, storm):
    storm(share_5xx=1.0)
    for path in ("/_sim/stats", "/_sim/config", "/_sim/events", "/_sim/faults", "/_sim/storm",
                 "/_sim/syncso/generations", "/_sim/aistudios/projects", "/_sim/aimi/uploads"):  # fmt: skip
        assert control.get(path).status_code == 200, path
    view = control.get("/_sim/storm").json()
    assert view["active"] is True
    assert all(counts["requests"] == 0 for counts in view["counters"].values())


def test_delete_ends_the_storm_and_releases_held_answers(sim_server, api, control, storm):
    storm(share_timeout=1.0, timeout_s=30.0)
    answers: list[int] = []
    held = threading.Thread(target=lambda: answers.append(api.get("/v2/models").status_code))
    held.start()
    time.sleep(0.3)
    started = time.monotonic()
    ended = control.delete("/_sim/storm").json()
    held.join(timeout=5)
    assert answers == [200] and time.monotonic() - started < 1
    assert ended["active"] is False and ended["counters"]["syncso"]["timeout"] == 1  # kept after the end
    assert [api.get("/v2/models").status_code for _ in range(5)] == [200] * 5
    assert counters(control)["requests"] == 1


def test_reset_ends_the_storm_and_forgets_it(api, control, storm):
    storm(share_timeout=1.0, timeout_s=30.0)
    answers: list[int] = []
    held = threading.Thread(target=lambda: answers.append(api.get("/v2/models").status_code))
    held.start()
    time.sleep(0.3)
    assert control.post("/_sim/reset").status_code == 200
    held.join(timeout=5)
    assert answers == [200]
    assert control.get("/_sim/storm").json() == {
        "active": False,
        "plan": None,
        "counters": {name: dict.fromkeys(["requests", *KINDS], 0) for name in PROVIDERS},
    }
    assert api.get("/v2/models").status_code == 200


@pytest.mark.parametrize(
    "plan",
    [
        {"share_5xx": 0.6, "share_429": 0.3, "share_timeout": 0.1, "share_drop": 0.1},
        {"share_5xx": 1.5},
        {"share_drop": -0.1},
        {"timeout_s": 0},
        {"providers": ["nope"]},
        {"providers": []},
        {"share_5xx": 0.1, "colour": "grey"},
    ],
)
def test_invalid_plans_are_refused(control, plan):
    response = control.post("/_sim/storm", json=plan)
    assert response.status_code == 400, response.text
    assert control.get("/_sim/storm").json()["active"] is False


def test_a_body_that_is_not_an_object_is_refused(control):
    assert control.post("/_sim/storm", content=b"[1]").status_code == 400


def test_shares_summing_to_one_are_accepted(control, storm):
    plan = storm(share_5xx=0.1, share_429=0.2, share_timeout=0.3, share_drop=0.4)["plan"]
    assert plan["providers"] is None and plan["seed"] is None


# Launch options


def test_cli_storm_options():
    parser = build_parser()
    assert storm_from_args(parser.parse_args([])) is None
    args = parser.parse_args(["--storm-5xx", "0.2", "--storm-seed", "7", "--storm-providers", "syncso,aimi"])
    assert storm_from_args(args) == {"share_5xx": 0.2, "seed": 7, "providers": ["syncso", "aimi"]}


def test_server_starts_with_a_storm_and_stops_promptly_while_holding():
    with SimulatorServer(storm_plan={"share_timeout": 1.0, "timeout_s": 60.0}) as server:
        with httpx.Client(base_url=server.base_url, timeout=SHORT_READ) as client:
            assert observe(client, "GET", "/v2/models") == "timeout"
        started = time.monotonic()
    assert time.monotonic() - started < 3  # uvicorn cancels the held answer after its graceful timeout
