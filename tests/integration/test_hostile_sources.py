"""Music jobs whose source video URL is hostile, run by a real worker against the Aimi simulator: a source
answering 429 with a Retry-After of a day fails its own job and leaves Aimi's budget unpaused; a redirect
chain into internal addresses is refused hop by hop and never reaches them; a source that trickles is cut
by the progress deadline; a source declaring 10 TB is refused before a chunk is cut or Aimi hears of it.

The sources are small ASGI apps on loopback. Workers allow loopback (``GENQ_EGRESS__ALLOW`` in
tests/conftest.py); the redirect test allows only the first server's address and port, so that the
internal server beside it on loopback is refused like any internal address."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import pytest
import redis

from genq.redis_server import EmbeddedRedis
from producers import Producer
from schemas import JobRecord, JobStatus
from tests.conftest import AIMI_KEY, Services, Sim
from tests.integration.conftest import AppServer
from worker.limits import RateBudget, RedisLimiter
from worker.providers.aimi.settings import AimiSettings
from worker.providers.aimi.spec import REQUESTS

pytestmark = pytest.mark.integration

StartWorker = Callable[..., subprocess.Popen[bytes]]
Scope = MutableMapping[str, Any]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Route = tuple[int, dict[str, str], bytes, float]
SECRET = "INTERNAL-SECRET-c0ffee"


class Source:
    """An ASGI app. ``routes`` maps a path to (status, headers, body, seconds between bytes: a trickle),
    ``heads`` a path to the headers of a 200 answer to HEAD. Every request is recorded."""

    def __init__(self, routes: dict[str, Route], heads: dict[str, dict[str, str]] | None = None) -> None:
        self.routes, self.heads = routes, heads or {}
        self.requests: list[tuple[str, str]] = []

    async def __call__(self, scope: Scope, receive: Any, send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        self.requests.append((method, path))
        if method == "HEAD" and path in self.heads:
            status, headers, body, per_byte_s = 200, self.heads[path], b"", 0.0
        else:
            status, headers, body, per_byte_s = self.routes.get(path, (404, {}, b"", 0.0))
        raw = [(k.encode(), v.encode()) for k, v in {"content-length": str(len(body)), **headers}.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        if method == "HEAD" or not per_byte_s:
            await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
            return
        gone = asyncio.Event()

        async def hang_up() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        listening = asyncio.create_task(hang_up())
        for byte in body:  # never silent as long as a read timeout, never enough to make progress
            if gone.is_set():
                break
            await send({"type": "http.response.body", "body": bytes([byte]), "more_body": True})
            await asyncio.sleep(per_byte_s)
        listening.cancel()


def music(video: str) -> dict[str, Any]:
    return {"kind": "music", "video": video, "executions": 1}


def port_of(server: AppServer) -> int:
    return int(server.base_url.rsplit(":", 1)[1])


def failed(record: JobRecord) -> tuple[str | None, str | None]:
    assert record.status is JobStatus.FAILED, record
    assert record.error is not None
    return record.error.provider, record.error.code


@pytest.mark.slow
def test_a_sources_429_with_retry_after_of_a_day_fails_its_job_and_leaves_aimis_budget_unpaused(
    workers: StartWorker, own_redis: EmbeddedRedis, services: Services, sim: Sim
) -> None:
    # The size is known (HEAD: 2 MB); every byte range answers 429 with Retry-After: 86400.
    throttled: Route = (
        429,
        {"retry-after": "86400", "content-type": "text/plain"},
        b"come back tomorrow",
        0.0,
    )
    source = Source({"/clip.mp4": throttled}, heads={"/clip.mp4": {"content-length": "2000000"}})
    with AppServer(source) as server:
        workers("w", queues=("aimi",), GENQ_RETRY__MAX_RETRIES="2")
        producer = Producer(own_redis.url)
        record = producer.wait(producer.submit(music(f"{server.base_url}/clip.mp4")), timeout_s=40)
        producer.close()

    assert failed(record) == ("source", "source_throttled")
    assert record.error is not None
    assert (record.error.stage, record.error.status_code) == ("upload_chunk[0]", 429)
    assert record.error.message == f"source GET {server.base_url}/clip.mp4: 429 Too Many Requests"
    assert source.requests.count(("GET", "/clip.mp4")) == 3  # its own retries, then it failed
    settings = AimiSettings(
        base_url=services.sim.base_url, api_key=AIMI_KEY, rate={"limit": 1000, "period_s": 1}
    )
    client = redis.Redis.from_url(own_redis.url)
    assert RedisLimiter(client).state(RateBudget.of(REQUESTS, settings.rate)).paused_until is None
    client.close()


@pytest.mark.slow
def test_a_redirect_chain_into_internal_addresses_is_refused_hop_by_hop_and_never_reaches_them(
    workers: StartWorker, own_redis: EmbeddedRedis, sim: Sim
) -> None:
    internal = Source(
        {"/secret": (200, {}, SECRET.encode(), 0.0)}, heads={"/secret": {"content-length": "22"}}
    )
    outside = Source({})
    with AppServer(internal) as inside, AppServer(outside) as server:
        targets = {
            "loopback": f"http://127.0.0.1:{port_of(inside)}/secret",
            "metadata": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
            "ipv6": f"http://[::1]:{port_of(inside)}/secret",
            "name": f"http://localhost:{port_of(inside)}/secret",  # a name that resolves to loopback
        }
        for name, target in targets.items():
            outside.routes[f"/{name}.mp4"] = (302, {"location": f"/hop/{name}"}, b"", 0.0)
            outside.routes[f"/hop/{name}"] = (307, {"location": target}, b"", 0.0)
        workers("w", queues=("aimi",), GENQ_EGRESS__ALLOW=f"127.0.0.1:{port_of(server)}")
        producer = Producer(own_redis.url)
        ids = {name: producer.submit(music(f"{server.base_url}/{name}.mp4")) for name in targets}
        records = {name: producer.wait(job_id, timeout_s=40) for name, job_id in ids.items()}
        producer.close()

    for name, record in records.items():
        assert failed(record) == ("source", "egress_refused"), name
        assert record.error is not None
        assert SECRET not in record.error.message
        assert ("HEAD", f"/hop/{name}") in outside.requests  # each hop was followed up to the refused one
    assert internal.requests == []
    assert sim.stats("aimi")["uploads"] == 0


@pytest.mark.slow
def test_a_source_that_trickles_is_cut_and_one_of_10_tb_is_refused_before_a_chunk_is_cut(
    workers: StartWorker, own_redis: EmbeddedRedis, sim: Sim
) -> None:
    size = 100_000
    trickle: Route = (206, {"content-range": f"bytes 0-{size - 1}/{size}"}, b"x" * size, 0.2)
    heads = {"/trickle.mp4": {"content-length": str(size)}, "/huge.mp4": {"content-length": str(10**13)}}
    source = Source({"/trickle.mp4": trickle}, heads=heads)
    with AppServer(source) as server:
        workers("w", queues=("aimi",), GENQ_RETRY__MAX_RETRIES="1", GENQ_EGRESS__PROGRESS_WINDOW_S="1",
                GENQ_EGRESS__PROGRESS_BYTES="4096")  # fmt: skip
        producer = Producer(own_redis.url)
        huge = producer.wait(producer.submit(music(f"{server.base_url}/huge.mp4")), timeout_s=30)
        uploads_after_huge = sim.stats("aimi")["uploads"]
        started = time.monotonic()
        slow = producer.wait(producer.submit(music(f"{server.base_url}/trickle.mp4")), timeout_s=40)
        took_s = time.monotonic() - started
        producer.close()

    assert failed(huge) == ("source", "source_too_large")
    assert huge.error is not None and huge.error.stage == "upload_init"
    assert "upload" not in huge.data  # no chunk was cut
    assert uploads_after_huge == 0  # and Aimi never heard of it
    assert failed(slow) == ("source", "source_stalled")
    assert slow.error is not None and slow.error.stage == "upload_chunk[0]"
    assert took_s < 15  # two runs of about a window each, not the 5.5 hours the trickle would take
