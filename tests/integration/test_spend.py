"""Spend budgets with real workers (subprocess workers on a Redis of their own) and the sync.so simulator,
whose estimate of a job is $0.50 here (10 s of media at $0.05 a second)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest
import redis

from genq.redis_server import EmbeddedRedis
from producers import Producer
from schemas import JobRecord, JobStatus
from schemas import layout as L
from tests.conftest import LIPSYNC, Sim, until
from tests.integration.conftest import Workers
from worker.spend import Budget, Spend

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PRICE = {"price_per_s": {"lipsync-2": 0.05}}  # 10 s of media: $0.50 a job


def ended(producer: Producer, ids: Sequence[str], timeout_s: float, sample: object = None) -> list[JobRecord]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        records = [r for r in producer.get_many(list(ids), presign=False) if r is not None]
        if len(records) == len(ids) and all(r.is_terminal for r in records):
            return records
        if callable(sample):
            sample()
        time.sleep(0.05)
    raise AssertionError(f"not every job ended within {timeout_s} s")


def test_500_jobs_of_one_tenant_on_4_workers_against_a_budget_for_100_create_exactly_100(
    workers: Workers, own_redis: EmbeddedRedis, sim: Sim
) -> None:
    sim.configure("syncso", **PRICE)
    spend = Spend(redis.Redis.from_url(own_redis.url))
    budget = Budget("acme", 50.0, "day")
    spend.set_budget(budget)
    for n in range(4):
        workers(f"w{n}", 4, ready=False)
    workers.wait_ready()
    producer = Producer(own_redis.url)
    ids = producer.submit_many([{**LIPSYNC, "tenant": "acme"}] * 500)
    samples: list[float] = []

    def sample() -> None:
        usage = spend.usage(budget)
        samples.append(usage.spent_usd + usage.reserved_usd)

    records = ended(producer, ids, 180, sample)

    assert sim.stats()["generations_created"] == 100
    assert sum(r.status is JobStatus.SUCCEEDED for r in records) == 100
    refused = [r for r in records if r.status is JobStatus.FAILED]
    assert len(refused) == 400
    assert {r.error.code for r in refused if r.error} == {"genq_budget_exceeded"}
    for record in refused:  # with the figures (and the job's estimate, if it was asked for)
        assert record.error is not None and record.error.message.startswith("over budget: tenant acme: $")
        assert record.error.message.endswith(
            (
                " of $50.00 a day; nothing was created",
                " of $50.00 a day; this job needs $0.50; nothing was created",
            )
        )
    assert max(samples) <= 50.0 and len(samples) > 10
    usage = spend.usage(budget)
    assert (usage.spent_usd, usage.reserved_usd, usage.refused) == (50.0, 0.0, 400)
    assert sum(r.cost_usd or 0 for r in records) == 50.0
    assert all(workers.took_part(f"w{n}") > 0 for n in range(4))


@pytest.mark.timeout(180)
def test_a_worker_killed_after_the_reservation_and_before_the_settle_spent_is_what_the_jobs_cost(
    workers: Workers, own_redis: EmbeddedRedis, sim: Sim
) -> None:
    sim.configure("syncso", **PRICE)
    client = redis.Redis.from_url(own_redis.url)
    spend = Spend(client)
    budget = Budget("acme", 100.0, "day")
    spend.set_budget(budget)
    producer = Producer(own_redis.url)
    current = workers("w0")
    ids = []
    # Killed with the create held (reserved, not created), then with the download held (the job's last
    # stage: its settle comes right after).
    for n, route in enumerate(("syncso.create", "syncso.download"), start=1):
        since = time.time()
        sim.fault(route=route, hold_s=3.0, times=1)
        ids.append(producer.submit({**LIPSYNC, "tenant": "acme"}))
        until(lambda: any(e["route"] == route for e in sim.events(since)), 30, f"{route} held")  # noqa: B023
        workers.stop(current, kill=True)
        current = workers(f"w{n}")
        assert producer.wait(ids[-1], timeout_s=60).status is JobStatus.SUCCEEDED
    # Cancelled once its generation was created: followed to its end, and settled by the reconciler.
    sim.configure("syncso", processing_s=2.0)
    ids.append(producer.submit({**LIPSYNC, "tenant": "acme"}))
    until(lambda: "generation" in producer.get(ids[-1]).provider_ids, 30, "the generation created")
    producer.cancel(ids[-1])
    until(lambda: spend.usage(budget).reserved_usd == 0.0, 60, "every reservation settled")

    records = [producer.get(job_id) for job_id in ids]
    assert [r.cost_usd for r in records] == [0.5, 0.5, 0.5]
    assert spend.usage(budget).spent_usd == 1.5
    assert sim.stats()["generations_created"] == 3


def test_a_tenant_out_of_budget_leaves_another_tenants_jobs_alone(
    workers: Workers, own_redis: EmbeddedRedis, sim: Sim
) -> None:
    sim.configure("syncso", **PRICE)
    Spend(redis.Redis.from_url(own_redis.url)).set_budget(Budget("spender", 1.0, "day"))
    workers("w0", 4)
    producer = Producer(own_redis.url)
    requests = [{**LIPSYNC, "tenant": "spender"}] * 50 + [{**LIPSYNC, "tenant": "other"}] * 10
    records = ended(producer, producer.submit_many(requests), 120)
    spender, other = records[:50], records[50:]
    assert sum(r.status is JobStatus.SUCCEEDED for r in spender) == 2
    assert all(r.status is JobStatus.SUCCEEDED for r in other)
    assert all(r.cost_usd is None for r in other)  # no budget: nothing reserved or charged


def test_a_pipelines_cost_is_the_sum_of_its_steps_jobs(
    workers: Workers, own_redis: EmbeddedRedis, sim: Sim
) -> None:
    sim.configure("syncso", **PRICE)
    Spend(redis.Redis.from_url(own_redis.url)).set_budget(Budget("acme", 10.0, "day"))
    workers("w0", 4)
    producer = Producer(own_redis.url)
    items = [{"audio": f"https://x.test/{lang}.wav"} for lang in ("fr", "de", "es")]
    dub = {"request": {k: v for k, v in LIPSYNC.items() if k != "audio"}, "for_each": items}
    record = producer.wait(producer.submit({"kind": "pipeline", "tenant": "acme", "steps": {"dub": dub}}), 60)
    assert record.status is JobStatus.SUCCEEDED, record.error
    assert [producer.get(j).cost_usd for j in sorted(record.provider_ids.values())] == [0.5, 0.5, 0.5]
    assert record.cost_usd == 1.5


def test_over_a_budget_that_waits_a_job_parks_until_the_limit_is_raised(
    workers: Workers, own_redis: EmbeddedRedis, sim: Sim
) -> None:
    sim.configure("syncso", **PRICE)
    spend = Spend(redis.Redis.from_url(own_redis.url))
    spend.set_budget(Budget("acme", 0.5, "day", "wait"))
    workers("w0", 4, GENQ_LIMITS__BUDGET_RECHECK_S="0.5")
    producer = Producer(own_redis.url)
    ids = producer.submit_many([{**LIPSYNC, "tenant": "acme"}] * 2)
    budget = Budget("acme", 0.5, "day", "wait")
    until(lambda: spend.usage(budget).waiting == 1, 30, "one job waiting for budget")
    [second] = [job_id for job_id in ids if not producer.redis.hexists(L.job_key(job_id), L.F_SPEND_HOLD)]
    [first] = [job_id for job_id in ids if job_id != second]
    assert producer.wait(first, timeout_s=30).status is JobStatus.SUCCEEDED

    def throttled() -> bool:  # between its checks (every 0.5 s), not during one
        return producer.get(second).stages["create"].status.value == "throttled"

    until(throttled, 10, "the waiting job throttled between its checks")
    waiting = producer.get(second).stages["create"]
    assert waiting.detail is not None
    assert waiting.detail.startswith("over budget: tenant acme: $0.")  # spent or reserved by the first job
    assert waiting.detail.endswith(" of $0.50 a day; this job needs $0.50")
    assert sim.stats()["generations_created"] == 1
    spend.set_budget(Budget("acme", 1.0, "day", "wait"))  # raised: the job goes on at its next check
    assert producer.wait(second, timeout_s=30).status is JobStatus.SUCCEEDED
    usage = spend.usage(budget)
    assert (usage.spent_usd, usage.reserved_usd, usage.waiting) == (1.0, 0.0, 0)


def test_a_lipsync_job_is_charged_what_sync_so_recorded_and_the_rest_returned(
    workers: Workers, own_redis: EmbeddedRedis, sim: Sim
) -> None:
    sim.configure("syncso", **PRICE)  # estimated at $0.50
    spend = Spend(redis.Redis.from_url(own_redis.url))
    budget = Budget("acme", 10.0, "day")
    spend.set_budget(budget)
    workers("w0", 2)
    producer = Producer(own_redis.url)
    since = time.time()
    sim.fault(route="syncso.download", hold_s=2.0, times=1)
    job_id = producer.submit({**LIPSYNC, "tenant": "acme"})
    until(lambda: any(e["route"] == "syncso.download" for e in sim.events(since)), 30, "the download held")
    assert spend.usage(budget).reserved_usd == 0.5
    sim.configure("syncso", price_per_s={"lipsync-2": 0.03})  # sync.so records $0.30 for it
    assert producer.wait(job_id, timeout_s=30).cost_usd == 0.3
    usage = spend.usage(budget)
    assert (usage.spent_usd, usage.reserved_usd) == (0.3, 0.0)
    assert sim.stats()["requests"]["costs"] == 1
