"""Provider budgets held by several worker processes at once, against the simulator's real enforcement."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from genq.processes import stop
from genq.redis_server import EmbeddedRedis
from producers import Producer
from schemas import JobStatus
from tests.conftest import Sim, holds, lease_expiry_s, until
from tests.integration.conftest import Workers
from worker.limits import Pool, RedisLimiter

pytestmark = [pytest.mark.integration, pytest.mark.slow]

StartWorker = Workers


def lipsync(**fields: object) -> dict[str, object]:
    return {"kind": "lipsync", "model": "lipsync-2", "video": "https://x.test/v.mp4",
            "audio": "https://x.test/a.wav", **fields}  # fmt: skip


def budget_env(*, concurrency: int, creates_per_s: int, lease_ttl_s: float = 180.0) -> dict[str, str]:
    return {
        "GENQ_SYNCSO__CONCURRENCY": str(concurrency),
        "GENQ_SYNCSO__CREATE_RATE__LIMIT": str(creates_per_s),
        "GENQ_SYNCSO__CREATE_RATE__PERIOD_S": "1",
        "GENQ_SYNCSO__CREATE_RATE__GUARD_S": "0.05",
        "GENQ_LIMITS__LEASE_TTL_S": str(lease_ttl_s),
    }


def _wait_all(producer: Producer, ids: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for job_id in ids:
        record = producer.wait(job_id, timeout_s=max(0.1, deadline - time.monotonic()))
        assert record.status is JobStatus.SUCCEEDED, (job_id, record.status, record.error)


@pytest.mark.quiet  # rate windows, lease lapses and pauses are measured in wall time
def test_three_workers_share_one_budget_without_a_single_429(
    workers: StartWorker, own_redis: EmbeddedRedis, sim: Sim
) -> None:
    sim.configure(plan="creator", concurrency=3, create_rate_limit=10, rate_window_s=1.0,
                  pending_s=0.1, processing_s=0.25)  # fmt: skip
    budgets = budget_env(concurrency=3, creates_per_s=10)
    for n in range(3):
        workers(f"share{n}", concurrency=2, ready=False, **budgets)
    workers.wait_ready()
    producer = Producer(own_redis.url)
    ids = producer.submit_many([lipsync() for _ in range(24)])
    _wait_all(producer, ids, timeout_s=90)
    assert [workers.took_part(f"share{n}", "genq.syncso.create") > 0 for n in range(3)] == [True] * 3

    stats = sim.stats()
    assert stats["throttled"] == {"rate_limit_exceeded": 0, "concurrency_limit_reached": 0}
    assert stats["responses"].get("429", 0) == 0
    assert stats["peak_in_flight"] == 3  # the whole pool, and never more
    assert stats["generations_created"] == 24
    creates = sorted(e["t"] for e in sim.events() if e["route"] == "syncso.create")
    assert max(sum(1 for t in creates if s <= t < s + 1.0) for s in creates) <= 10


@pytest.mark.quiet  # rate windows, lease lapses and pauses are measured in wall time
def test_a_killed_workers_lease_lapses_and_its_slot_goes_to_the_next_job_while_the_generation_runs(
    workers: Workers, own_redis: EmbeddedRedis, sim: Sim
) -> None:
    """The worker dies holding the only slot with a create in flight (sync.so made the generation; its
    answer is held). The generation runs 30 s, ten times the lease, so the second job can only get the
    slot through the dead worker's lease lapsing, not through the first job ending."""
    lease_ttl_s = 3.0
    sim.configure(concurrency=3, pending_s=0.5, processing_s=30.0)
    sim.fault(route="syncso.create", hold_s=20.0, times=1)
    budgets = budget_env(concurrency=1, creates_per_s=50, lease_ttl_s=lease_ttl_s)
    pool = Pool("syncso.generations", 1, lease_ttl_s)
    client = redis.Redis.from_url(own_redis.url)
    limiter = RedisLimiter(client)
    producer = Producer(own_redis.url)
    doomed = workers("doomed", **budgets)
    first = producer.submit(lipsync())
    until(lambda: sim.stats()["generations_created"] == 1, 30, "the first generation to exist at sync.so")
    [first_generation] = sim.http.get("/_sim/syncso/generations").json()
    lease_ends_at = lease_expiry_s(client, pool, first) or 0.0
    assert lease_ends_at > time.time()  # the dying worker holds the slot and the create
    second = producer.submit(lipsync())
    until(lambda: limiter.state(pool).waiting == 1, 15, "the second job to wait for the slot")

    stop(doomed, kill=True)
    workers("survivor", **budgets)
    survivor_ready_at = time.time()
    until(lambda: "generation" in producer.get(second).provider_ids, 15, "the second job to get the slot")

    generations = {g["id"]: g for g in sim.http.get("/_sim/syncso/generations").json()}
    second_created_at = generations[producer.get(second).provider_ids["generation"]]["created_at"]
    assert second_created_at >= lease_ends_at  # not before the lease lapsed ...
    assert second_created_at <= max(lease_ends_at, survivor_ready_at) + 2.0  # ... and at the next sweep
    assert generations[first_generation["id"]]["terminal_at"] > second_created_at + 20  # it still runs
    assert holds(client, pool, second)


@pytest.mark.quiet  # rate windows, lease lapses and pauses are measured in wall time
@pytest.mark.parametrize("error_code", ["rate_limit_exceeded", "concurrency_limit_reached"])
def test_a_429_pauses_that_budget_for_every_worker(
    workers: StartWorker, own_redis: EmbeddedRedis, sim: Sim, error_code: str
) -> None:
    """The body's errorCode names the budget (the create rate, or the account's concurrency); either
    way no worker starts another generation before Retry-After."""
    sim.configure(pending_s=0.1, processing_s=0.2)
    body = {"statusCode": 429, "errorCode": error_code, "message": "slow down", "error": "Too Many Requests"}
    sim.fault(route="syncso.create", status=429, times=1, body=body, headers={"Retry-After": "1"})
    budgets = budget_env(concurrency=6, creates_per_s=50)
    for n in range(2):
        workers(f"pause{n}", ready=False, **budgets)
    workers.wait_ready()
    producer = Producer(own_redis.url)
    ids = producer.submit_many([lipsync() for _ in range(8)])
    _wait_all(producer, ids, timeout_s=60)
    assert [workers.took_part(f"pause{n}") > 0 for n in range(2)] == [True] * 2

    creates = [e for e in sim.events() if e["route"] == "syncso.create"]
    refused = [e["t"] for e in creates if e["status"] == 429]
    assert len(refused) == 1
    after = [e["t"] for e in creates if e["t"] > refused[0]]
    assert len(after) == 8  # every job created, the refused one again
    # Nobody, on either worker, starts a create before Retry-After. A create another worker had already
    # sent when the 429 came back can still arrive a few ms after it: that is the grace allowed here.
    in_flight_grace_s = 0.1
    assert [t for t in after if refused[0] + in_flight_grace_s < t < refused[0] + 1.0] == []
    assert sim.stats()["generations_created"] == 8


def test_a_small_tenant_is_not_starved_by_a_large_one(
    workers: StartWorker, own_redis: EmbeddedRedis, sim: Sim, tmp_path: Path
) -> None:
    sim.configure(pending_s=0.2, processing_s=0.8)
    producer = Producer(own_redis.url)
    big = producer.submit_many([lipsync(tenant="big") for _ in range(200)])
    small = producer.submit_many([lipsync(tenant="small") for _ in range(5)])
    workers("fair", concurrency=4, **budget_env(concurrency=2, creates_per_s=50))
    _wait_all(producer, small, timeout_s=90)

    job_of = {}
    for job_id in big + small:
        generation = producer.get(job_id).provider_ids.get("generation")
        if generation:
            job_of[generation] = job_id
    # The worker goes on creating the big tenant's generations: one created after the records were read
    # is not in job_of (None), and comes after every small job's create.
    created = [job_of.get(e["generation_id"]) for e in sim.events()
               if e["route"] == "syncso.create" and e["status"] == 201]  # fmt: skip
    last_small = max(i for i, job_id in enumerate(created) if job_id in small)
    assert None not in created[: last_small + 1]
    big_before = sum(1 for job_id in created[:last_small] if job_id in big)
    assert big_before < 20, created[: last_small + 1]  # the bound
    assert big_before <= 12  # and in fact: round-robin from the moment the small jobs arrived
