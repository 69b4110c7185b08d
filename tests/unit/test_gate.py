"""The gate between a stage and its budgets, over the in-memory limiter."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from schemas import JOB_REQUEST, JobRecord, JobStatus, StageStatus
from worker.context import budgets_from
from worker.limits import Gate, MemoryLimiter, Parked, Pool, RateBudget, Unlimited
from worker.limits.report import prometheus_text, snapshot
from worker.outcomes import Later
from worker.providers.errors import ConcurrencyLimited, RateLimited, SourceUnavailable
from worker.settings import LimitsSettings, Settings

POOL = Pool("syncso.generations", 1, 60.0)
CREATE = RateBudget("syncso.create", 60, 60.0)
LIMITS = LimitsSettings(pause_s=5.0, horizon_s=30.0)


def job(job_id: str, tenant: str | None = None) -> JobRecord:
    request = JOB_REQUEST.validate_python(
        {"kind": "lipsync", "model": "lipsync-2", "video": "https://x/v.mp4", "audio": "https://x/a.wav"}
    )
    now = datetime.now(UTC)
    return JobRecord(id=job_id, kind="lipsync", status=JobStatus.RUNNING, request=request, tenant=tenant,
                     created_at=now, updated_at=now)  # fmt: skip


def gate(limiter: MemoryLimiter | Unlimited, job_id: str) -> Gate:
    return Gate(limiter, LIMITS, job(job_id), lambda: ("syncso", f"rerun {job_id}"))


def test_a_full_pool_parks_the_stage_with_its_rerun_message() -> None:
    limiter = MemoryLimiter()
    gate(limiter, "a").hold(POOL)
    with pytest.raises(Parked, match=r"waiting for a syncso\.generations slot"):
        gate(limiter, "b").hold(POOL)
    gate(limiter, "a").let_go(POOL)
    assert limiter.queues["syncso"] == ["rerun b"]


def test_a_turn_later_than_now_is_a_throttled_countdown() -> None:
    limiter = MemoryLimiter()
    gate(limiter, "a").turn(CREATE)
    with pytest.raises(Later) as later:
        gate(limiter, "b").turn(CREATE)
    assert later.value.status is StageStatus.THROTTLED
    assert later.value.countdown_s == pytest.approx(1.0, abs=0.05)


def test_rate_429_pauses_the_rate_for_everyone() -> None:
    limiter = MemoryLimiter()
    with pytest.raises(Later) as later, gate(limiter, "a").calling(CREATE):
        raise RateLimited("slow down", provider="syncso", retry_after_s=3.0)
    assert later.value.countdown_s == pytest.approx(3.0, abs=0.1)
    assert limiter.state(CREATE).paused_until is not None
    with pytest.raises(Later):  # another job's turn comes after the pause too
        gate(limiter, "b").turn(CREATE)


def test_a_retry_after_of_a_day_pauses_a_budget_for_max_retry_after_s_only() -> None:
    limiter, now = MemoryLimiter(), time.time()
    with pytest.raises(Later) as later, gate(limiter, "a").calling(CREATE):
        raise RateLimited("slow down", provider="syncso", retry_after_s=86400.0)
    assert later.value.countdown_s <= LIMITS.max_retry_after_s + 1
    paused_until = limiter.state(CREATE).paused_until
    assert paused_until is not None and paused_until <= now + LIMITS.max_retry_after_s + 1
    limiter = MemoryLimiter()
    with pytest.raises(Parked), gate(limiter, "a").calling(CREATE, POOL):
        raise ConcurrencyLimited("too many", provider="syncso", retry_after_s=86400.0)
    paused_until = limiter.state(POOL).paused_until
    assert paused_until is not None and paused_until <= now + LIMITS.max_retry_after_s + 1


def test_a_sources_429_inside_a_provider_call_passes_through_and_pauses_nothing() -> None:
    limiter = MemoryLimiter()
    with pytest.raises(SourceUnavailable), gate(limiter, "a").calling(CREATE):
        raise SourceUnavailable("source GET https://x/v.mp4: 429 Too Many Requests", status_code=429)
    assert limiter.state(CREATE).paused_until is None


def test_concurrency_429_pauses_the_pool_and_parks_the_holder() -> None:
    limiter = MemoryLimiter()
    g = gate(limiter, "a")
    g.hold(POOL)
    with pytest.raises(Parked), g.calling(CREATE, POOL):  # woken with a slot when the pause ends
        raise ConcurrencyLimited("too many", provider="syncso")
    state = limiter.state(POOL)
    assert (state.in_use, state.waiting) == (0, 1)
    assert state.paused_until is not None  # for the default pause: no Retry-After was sent


def test_without_limits_a_429_still_waits_but_nothing_else_does() -> None:
    g = gate(Unlimited(), "a")
    g.hold(POOL)
    g.turn(CREATE)
    with pytest.raises(Later) as later, g.calling(CREATE, POOL):
        raise ConcurrencyLimited("too many", provider="syncso", retry_after_s=2.0)
    assert later.value.countdown_s == 2.0


def test_budgets_as_prometheus_gauges() -> None:
    limiter, budgets = MemoryLimiter(), budgets_from(Settings())
    gate(limiter, "a").hold(budgets.pool("syncso.generations"))
    text = prometheus_text(snapshot(limiter, budgets))
    assert "# TYPE genq_budget_in_use gauge" in text
    size = budgets.pool("syncso.generations").size
    assert f'genq_budget_limit{{budget="syncso.generations",kind="pool"}} {size}' in text
    assert 'genq_budget_in_use{budget="syncso.generations",kind="pool"} 1' in text
    limit = budgets.rate("syncso.create").limit
    assert f'genq_budget_limit{{budget="syncso.create",kind="rate"}} {limit}' in text
