"""Spend budgets in Redis (the session Redis's scratch database): a reservation is checked and added in one
step, so jobs reserving at once never pass the limit together; a job reserves once and settles once; a
job that ended is charged by one rule."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import redis

from producers import InvalidRequest, Producer
from schemas import JobError, JobRecord, JobStatus
from schemas import layout as L
from tests.conftest import LIPSYNC
from worker.spend import Budget, Spend, charge_of, next_period_in_s, period_of


def jobs(scratch_url: str, count: int) -> list[str]:
    return Producer(scratch_url).submit_many([{**LIPSYNC, "tenant": "acme"}] * count)


def test_jobs_reserving_at_once_never_pass_the_limit(scratch_url: str, scratch: redis.Redis) -> None:
    spend = Spend(scratch)
    budget = Budget("acme", 10.0, "day")
    spend.set_budget(budget)
    ids = jobs(scratch_url, 60)
    outcomes: list[str] = []
    barrier = threading.Barrier(12)

    def reserve(mine: list[str]) -> None:
        client = Spend(redis.Redis.from_url(scratch_url))
        barrier.wait()
        outcomes.extend(client.reserve(job_id, budget, 0.5).outcome for job_id in mine)

    threads = [threading.Thread(target=reserve, args=(ids[n::12],)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (outcomes.count("ok"), outcomes.count("over")) == (20, 40)
    usage = spend.usage(budget)
    assert (usage.spent_usd, usage.reserved_usd, usage.refused) == (0.0, 10.0, 40)
    assert scratch.hget(L.METRICS_REFUSALS_KEY, "acme") == b"40"


def test_a_job_reserves_once_and_settles_once_returning_the_rest(
    scratch_url: str, scratch: redis.Redis
) -> None:
    spend = Spend(scratch)
    budget = Budget("acme", 10.0, "month")
    spend.set_budget(budget)
    [job_id] = jobs(scratch_url, 1)
    assert spend.reserve(job_id, budget, 2.5).outcome == "ok"
    assert spend.reserve(job_id, budget, 2.5).outcome == "again"  # a resent or re-run stage adds nothing
    assert spend.usage(budget).reserved_usd == 2.5
    assert spend.settle(job_id, "acme", 1.75) == "settled"
    assert spend.settle(job_id, "acme", 1.75) == "none"  # never charged twice
    usage = spend.usage(budget)
    assert (usage.spent_usd, usage.reserved_usd) == (1.75, 0.0)
    assert Producer(scratch_url).get(job_id).cost_usd == 1.75
    assert spend.reserve(job_id, budget, 2.5).outcome == "again"  # settled: it never reserves again


def test_a_budget_is_kept_per_period_and_lists_with_its_usage(scratch: redis.Redis) -> None:
    spend = Spend(scratch)
    spend.set_budget(Budget("b-tenant", 5.0, "month", "wait", 0.25))
    spend.set_budget(Budget("a-tenant", 1.0))
    assert [b.tenant for b in spend.budgets()] == ["a-tenant", "b-tenant"]
    assert spend.budget("b-tenant") == Budget("b-tenant", 5.0, "month", "wait", 0.25)
    assert spend.delete_budget("a-tenant") and spend.budget("a-tenant") is None


def test_periods_are_utc_days_and_months() -> None:
    moment = datetime(2026, 12, 31, 23, 59, 30, tzinfo=UTC)
    assert (period_of("day", moment), period_of("month", moment)) == ("2026-12-31", "2026-12")
    assert next_period_in_s("day", moment) == 30.0
    assert next_period_in_s("month", moment) == 30.0


@pytest.mark.parametrize(
    ("status", "provider", "costly_done", "charged"),
    [
        (JobStatus.SUCCEEDED, None, True, None),  # all of the hold
        (JobStatus.CANCELLED, None, True, None),  # its provider job ran to its end
        (JobStatus.CANCELLED, None, False, 0.0),  # nothing was created
        (JobStatus.FAILED, "syncso", True, 0.0),  # the provider failed it: not billed
        (JobStatus.FAILED, "store", True, None),  # the provider made it; genq could not store it
        (JobStatus.FAILED, "genq", False, 0.0),
    ],
)
def test_what_an_ended_job_is_charged(status: JobStatus, provider: str | None, costly_done: bool,
                                      charged: float | None) -> None:  # fmt: skip
    now = datetime.now(UTC)
    error = JobError(stage="x", message="m", provider=provider) if provider else None
    job = JobRecord(id="j", kind="lipsync", status=status, request=LIPSYNC, error=error, created_at=now,
                    updated_at=now)  # fmt: skip
    assert charge_of(job, costly_done) == charged


def test_a_batch_of_a_tenant_with_a_budget_is_refused_at_submit(
    scratch_url: str, scratch: redis.Redis
) -> None:
    Spend(scratch).set_budget(Budget("acme", 10.0))
    before = scratch.dbsize()
    with pytest.raises(InvalidRequest) as refused:
        Producer(scratch_url).submit_batch([{**LIPSYNC, "tenant": "acme"}] * 20)
    assert refused.value.problems == [
        "batch: tenant acme has a spend budget, which a batch's jobs are not held to (sync.so estimates no "
        "batch): submit them one by one"
    ]
    assert scratch.dbsize() == before
