"""The wait stages' one way to a provider job's end (``followed_end``), over fakes: a recorded end is
read, not asked for; an id the sweep did not find is asked for once, and parks again while it runs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas import JOB_REQUEST, JobRecord, JobStatus, StageStatus
from worker.follow import Followed, followed_end
from worker.limits import Gate, MemoryLimiter, Pool
from worker.outcomes import Later, Wait
from worker.providers.errors import JobRejected
from worker.settings import LimitsSettings
from worker.waits import WaitResult

POOL = Pool("syncso.generations", 3, 60.0)
ENDED = WaitResult(state="ended", body={"status": "COMPLETED"}, source="sweep")


class FakeWaits:
    def __init__(self, recorded: WaitResult | None) -> None:
        self.recorded = recorded

    def result(self, provider: str, provider_id: str) -> WaitResult | None:
        assert (provider, provider_id) == ("syncso", "gen-1")
        return self.recorded

    def forget(self, provider: str, provider_id: str) -> None:
        assert (provider, provider_id) == ("syncso", "gen-1")
        self.recorded = None


class Provider:
    """Answers ``ask`` with ``answers`` in turn, counting the calls."""

    def __init__(self, *answers: WaitResult | str) -> None:
        self.answers = list(answers)
        self.asked = 0

    def ask(self) -> WaitResult | str:
        self.asked += 1
        return self.answers.pop(0)


def follow(waits: FakeWaits, provider: Provider, limiter: MemoryLimiter) -> WaitResult:
    """``followed_end`` for a job that holds a slot of POOL in ``limiter``."""
    now = datetime.now(UTC)
    request = JOB_REQUEST.validate_python(
        {"kind": "lipsync", "model": "lipsync-2", "video": "https://x/v.mp4", "audio": "https://x/a.wav"}
    )
    job = JobRecord(id="j1", kind="lipsync", status=JobStatus.RUNNING, request=request, created_at=now,
                    updated_at=now)  # fmt: skip
    gate = Gate(limiter, LimitsSettings(), job, lambda: ("syncso", "rerun"))
    gate.hold(POOL)
    followed = Followed("syncso", "default", "gen-1", "generation gen-1", POOL, 5.0, 600.0,
                        "GENQ_SYNCSO__MAX_WAIT_S", now)  # fmt: skip
    return followed_end(followed, waits, gate, provider.ask)  # type: ignore[arg-type]


def in_use(limiter: MemoryLimiter) -> float:
    return limiter.state(POOL).in_use


def test_a_recorded_end_is_read_without_asking_the_provider_and_the_slot_is_given_back() -> None:
    provider, limiter = Provider(), MemoryLimiter()
    assert follow(FakeWaits(ENDED), provider, limiter) == ENDED
    assert provider.asked == 0
    assert in_use(limiter) == 0


def test_no_recorded_end_parks_the_stage_keeping_the_slot_without_asking() -> None:
    provider, limiter = Provider(), MemoryLimiter()
    with pytest.raises(Wait):
        follow(FakeWaits(None), provider, limiter)
    assert provider.asked == 0
    assert in_use(limiter) == 1


def test_a_recorded_timeout_fails_the_job_and_gives_the_slot_back_without_asking() -> None:
    provider, limiter = Provider(), MemoryLimiter()
    with pytest.raises(JobRejected) as caught:
        follow(FakeWaits(WaitResult(state="timeout", source="sweep")), provider, limiter)
    assert caught.value.code == "genq_wait_timeout"
    assert provider.asked == 0
    assert in_use(limiter) == 0


def test_a_missing_id_that_ended_is_asked_for_once_and_its_answer_is_the_end() -> None:
    provider, limiter = Provider(ENDED), MemoryLimiter()
    assert follow(FakeWaits(WaitResult(state="missing", source="sweep")), provider, limiter) == ENDED
    assert provider.asked == 1
    assert in_use(limiter) == 0


def test_a_missing_id_still_running_drops_the_missing_and_runs_again_at_once_to_park() -> None:
    waits, limiter = FakeWaits(WaitResult(state="missing", source="sweep")), MemoryLimiter()
    provider = Provider("generation PROCESSING")
    with pytest.raises(Later) as later:
        follow(waits, provider, limiter)
    assert (later.value.countdown_s, later.value.status, later.value.detail) == (
        0.0, StageStatus.WAITING, "generation PROCESSING"
    )  # fmt: skip
    assert waits.recorded is None  # dropped, so the next run parks instead of asking again
    assert provider.asked == 1
    assert in_use(limiter) == 1  # kept while the generation runs
    with pytest.raises(Wait):  # the run again parks, asking nothing
        follow(waits, provider, limiter)
    assert provider.asked == 1
