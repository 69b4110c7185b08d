"""The batch create stage's plain function over fakes (and, to kill a run at each Redis step, over the
real job store on the scratch Redis): one batch per batch record, whatever run of the stage dies where,
and never another record's batch."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from producers import Producer
from schemas import JOB_REQUEST, JobError, JobRecord, JobStatus, LipsyncBatchRequest, StageState, StageStatus
from schemas import layout as L
from tests.conftest import LIPSYNC
from worker.limits import Gate, MemoryLimiter, Parked, Pool, RateBudget
from worker.outcomes import Later, Stop
from worker.providers.errors import ConcurrencyLimited, JobRejected, NotFound
from worker.providers.syncso.account import SyncSo
from worker.providers.syncso.batch import collect_batch, start_batch
from worker.providers.syncso.resources import Batch, BatchMetrics, BatchRow, BatchValidated
from worker.providers.syncso.settings import SyncSoSettings
from worker.providers.syncso.spec import BATCH_WAITS
from worker.settings import LimitsSettings
from worker.store import JobStore
from worker.waits import WaitResult

NOW = datetime.now(UTC)
JOBS = [f"{i:028x}" for i in range(20)]
LIMITS = LimitsSettings(horizon_s=0.01)


def record(
    job_id: str, kind: str, request: Any, status: JobStatus = JobStatus.QUEUED, **fields: Any
) -> JobRecord:
    return JobRecord(
        id=job_id, kind=kind, status=status, request=request, created_at=NOW, updated_at=NOW, **fields
    )


def member(job_id: str, status: JobStatus = JobStatus.QUEUED) -> JobRecord:
    request = JOB_REQUEST.validate_python(
        {
            "kind": "lipsync",
            "model": "lipsync-2",
            "video": "https://x.test/v.mp4",
            "audio": "https://x.test/a.wav",
        }
    )
    return record(job_id, "lipsync", request, status)


class FakeStore:
    def __init__(self, ids: dict[str, str] | None = None, claimed: set[str] | None = None) -> None:
        self.ids = dict(ids or {})
        self.claimed = set(claimed or ())
        self.jobs = {job_id: member(job_id) for job_id in JOBS}

    def get_many(self, job_ids: list[str]) -> list[JobRecord | None]:
        return [self.jobs.get(job_id) for job_id in job_ids]

    def record_provider_id(self, job_id: str, name: str, value: str) -> str:
        return self.ids.setdefault(name, value)

    def set_provider_id(self, job_id: str, name: str, value: str) -> None:
        self.ids[name] = value

    def clear_provider_id(self, job_id: str, name: str) -> None:
        self.ids.pop(name, None)

    def claim(self, kind: str, provider_id: str, *, job_id: str, name: str) -> str | None:
        if provider_id in self.claimed:
            return None
        self.claimed.add(provider_id)
        return self.record_provider_id(job_id, name, provider_id)

    def transition(self, job_id: str, status: JobStatus) -> None:
        self.jobs[job_id] = self.jobs[job_id].model_copy(update={"status": status})

    def update_stage(self, job_id: str, stage: str, status: StageStatus, **changes: Any) -> None:
        stages = {**self.jobs[job_id].stages, stage: StageState(status=status)}
        self.jobs[job_id] = self.jobs[job_id].model_copy(update={"stages": stages})


class FakeClient:
    def __init__(self, existing: list[Batch] | None = None, refuse: Exception | None = None) -> None:
        self.calls: list[str] = []
        self.existing = list(existing or [])
        self.refuse = refuse

    def create_batch(
        self, jsonl: bytes, *, dry_run: bool, webhook_url: str | None = None
    ) -> Batch | BatchValidated:
        assert len(jsonl.splitlines()) == len(JOBS)
        self.calls.append("dry_run" if dry_run else "create")
        if dry_run:
            return BatchValidated(status="VALIDATED")
        if self.refuse is not None:
            raise self.refuse
        return batch("batch_new")

    def list_batches(self, *, created_after: datetime | None = None) -> list[Batch]:
        self.calls.append("list")
        return self.existing


def batch(batch_id: str, total: int = len(JOBS)) -> Batch:
    return Batch(id=batch_id, status="PENDING", created_at=NOW, metrics=BatchMetrics(total_generations=total))


def run(client: FakeClient, store: FakeStore, *, calls_per_minute: int = 10**7) -> str:
    request = LipsyncBatchRequest(jobs=JOBS, request_ids=JOBS)
    batch_record = record("b1", "lipsync_batch", request, JobStatus.RUNNING, provider_ids=dict(store.ids))
    return start(batch_record, store, client, calls_per_minute=calls_per_minute)


def start(
    batch_record: JobRecord, store: Any, client: FakeClient, *, calls_per_minute: int = 10_000_000
) -> str:
    """One run of the create stage (a worker of its own: its own limiter)."""
    rate = RateBudget("syncso.other", calls_per_minute, 60.0)
    sync = SyncSo(client, SyncSoSettings(), Pool("syncso.generations", 3, 60.0),  # type: ignore[arg-type]
                  Pool("syncso.batches", 1, 60.0), rate, rate, rate, None)  # fmt: skip
    gate = Gate(MemoryLimiter(), LIMITS, batch_record, lambda: ("syncso", "rerun"))
    return start_batch(batch_record, store, sync, gate)


def test_a_new_batch_is_validated_then_created_once_and_claimed() -> None:
    client, store = FakeClient(), FakeStore()
    assert run(client, store) == "batch_new"
    assert client.calls == ["dry_run", "create"]
    assert store.ids["batch"] == "batch_new" and "batch_new" in store.claimed
    assert all(job.status is JobStatus.RUNNING for job in store.jobs.values())
    assert run(client, store) == "batch_new"  # a redelivery finds the id and sends nothing
    assert client.calls == ["dry_run", "create"]


def test_a_run_whose_create_turn_comes_later_does_not_validate_again() -> None:
    client, store = FakeClient(), FakeStore()
    with pytest.raises(Later):  # one call a minute: the create waits a minute for its turn
        run(client, store, calls_per_minute=1)
    assert client.calls == ["dry_run"] and "batch_validated" in store.ids
    assert run(client, store) == "batch_new"
    assert client.calls == ["dry_run", "create"]


def test_a_run_after_one_that_died_mid_create_adopts_the_batch_instead_of_creating_another() -> None:
    requested = (NOW - timedelta(seconds=30)).isoformat()
    existing = [batch("other_size", total=21), batch("ours")]
    client, store = FakeClient(existing), FakeStore({"batch_requested": requested})
    assert run(client, store) == "ours"
    assert client.calls == ["list"]


def test_a_batch_another_record_claimed_is_never_adopted() -> None:
    requested = (NOW - timedelta(seconds=30)).isoformat()
    client = FakeClient([batch("theirs")])
    store = FakeStore({"batch_requested": requested}, claimed={"theirs"})
    assert run(client, store) == "batch_new"
    assert client.calls == ["list", "create"]


class Killed(BaseException):
    """The worker died here (SIGKILL): nothing after this point ran."""


class Crash:
    """Kills a run once, when ``after`` Redis steps (a command, or a pipeline) have landed since sync.so
    answered its batch create."""

    def __init__(self, after: int) -> None:
        self.after, self.armed, self.landed, self.fired = after, False, 0, False

    def step(self, send: Callable[[], Any]) -> Any:
        if self.armed and not self.fired and self.landed == self.after:
            self.fired = True
            raise Killed
        result = send()
        self.landed += self.armed
        return result


class SyncSoAccount(FakeClient):
    """sync.so as it is: every create makes a batch (billed), which lists from then on."""

    def __init__(self, crash: Crash) -> None:
        super().__init__()
        self.crash = crash

    def create_batch(
        self, jsonl: bytes, *, dry_run: bool, webhook_url: str | None = None
    ) -> Batch | BatchValidated:
        answer = super().create_batch(jsonl, dry_run=dry_run, webhook_url=webhook_url)
        if dry_run:
            return answer
        made = batch(f"batch_{len(self.existing) + 1}")
        self.existing.append(made)
        self.crash.armed = True
        return made


def test_a_worker_killed_at_any_redis_step_after_sync_so_answered_the_create_leaves_one_batch(
    scratch_url: str, scratch: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kill points are counted in Redis steps since the create's answer, from 0 (before any) until a run
    outlives them; after each kill, another run of the stage finishes it. The batch's id is claimed and
    recorded in one step, so the next run finds it either recorded, or unclaimed and adopts it."""
    crash = Crash(0)
    send, send_pipeline = scratch.execute_command, redis.client.Pipeline.execute
    monkeypatch.setattr(scratch, "execute_command", lambda *a, **kw: crash.step(lambda: send(*a, **kw)))

    def execute(pipe: redis.client.Pipeline, *a: Any, **kw: Any) -> Any:
        # The class is patched, so only this test's pipelines count: the session worker's threads in this
        # process (the sweeps, the mover) send theirs too, and a kill there would end their loop.
        if pipe.connection_pool is not scratch.connection_pool:
            return send_pipeline(pipe, *a, **kw)
        return crash.step(lambda: send_pipeline(pipe, *a, **kw))

    monkeypatch.setattr(redis.client.Pipeline, "execute", execute)
    store, producer = JobStore(scratch), Producer(scratch_url)
    jobs = [{**LIPSYNC, "video": f"https://x.test/{i}.mp4"} for i in range(len(JOBS))]
    for point in range(10):
        scratch.flushdb()
        crash = Crash(point)
        account = SyncSoAccount(crash)
        batch_id = producer.submit_batch(jobs).batch_id
        with contextlib.suppress(Killed):
            start(store.get(batch_id), store, account)
        if not crash.fired:
            break  # this run outlived every kill point: all were tried
        where = f"killed after {point} Redis steps"
        assert start(store.get(batch_id), store, account) == "batch_1", where
        assert account.calls.count("create") == 1, where
        assert store.get(batch_id).provider_ids["batch"] == "batch_1", where
        assert scratch.smembers(L.CLAIMED_KEY.format(kind=BATCH_WAITS)) == {b"batch_1"}, where
    producer.close()
    assert point == 1, "one Redis step follows the answer: the claim and the record, together"


def test_a_429_on_create_clears_requested_so_the_next_run_does_not_search() -> None:
    client, store = (
        FakeClient(refuse=ConcurrencyLimited("Batch concurrency limit reached", provider="syncso")),
        FakeStore(),
    )
    with pytest.raises(Parked):  # the pool is paused: the stage waits in the limiter for a slot
        run(client, store)
    assert "batch_requested" not in store.ids and "batch" not in store.ids


def test_no_batch_is_made_when_every_job_was_cancelled_first() -> None:
    client, store = FakeClient(), FakeStore()
    store.jobs = {job_id: member(job_id, JobStatus.CANCELLED) for job_id in JOBS}
    with pytest.raises(Stop):
        run(client, store)
    assert client.calls == []


class CollectStore(FakeStore):
    def __init__(self) -> None:
        super().__init__({"batch": "batch_1"})
        self.failed: dict[str, JobError] = {}
        self.generations: dict[str, str] = {}

    def record_provider_id(self, job_id: str, name: str, value: str) -> str:
        if job_id == "b1":
            return super().record_provider_id(job_id, name, value)
        return self.generations.setdefault(job_id, value)

    def fail_at(self, job_id: str, stage: str, error: JobError, *, dead_letter: bool = False) -> None:
        self.failed[job_id] = error


class FakeWaits:
    def __init__(self) -> None:
        self.resolved: dict[str, WaitResult] = {}

    def result(self, provider: str, provider_id: str) -> WaitResult | None:
        return None

    def resolve(self, provider: str, provider_id: str, result: WaitResult) -> int:
        self.resolved[provider_id] = result
        return 1


class ResultsClient(FakeClient):
    def __init__(self, ended: Batch, rows: list[BatchRow] | None) -> None:
        super().__init__()
        self.ended = ended
        self.rows = rows

    def get_batch(self, batch_id: str) -> Batch:
        return self.ended

    def batch_results(self, batch: Batch) -> list[BatchRow]:
        if self.rows is None:
            raise NotFound("Batch results are not available", provider="syncso", status_code=404)
        return self.rows


def collect(client: ResultsClient, store: CollectStore, waits: FakeWaits) -> list[str]:
    request = LipsyncBatchRequest(jobs=JOBS, request_ids=JOBS)
    batch_record = record("b1", "lipsync_batch", request, JobStatus.RUNNING, provider_ids=dict(store.ids))
    rate = RateBudget("syncso.other", 10_000_000, 60.0)
    sync = SyncSo(client, SyncSoSettings(), Pool("syncso.generations", 3, 60.0),  # type: ignore[arg-type]
                  Pool("syncso.batches", 1, 60.0), rate, rate, rate, None)  # fmt: skip
    gate = Gate(MemoryLimiter(), LIMITS, batch_record, lambda: ("syncso", "rerun"))
    return collect_batch(batch_record, store, sync, waits, gate)  # type: ignore[arg-type]


def test_collect_ends_every_job_by_its_row_and_one_without_a_row_fails() -> None:
    rows = [BatchRow(request_id=job_id, generation_id=f"g{i}", status="COMPLETED", output_url=f"https://o/{i}")
            for i, job_id in enumerate(JOBS[:-2])]  # fmt: skip
    rows.append(
        BatchRow(
            request_id=JOBS[-2],
            generation_id="gx",
            status="FAILED",
            error="boom",
            error_code="generation_timeout",
        )
    )
    store, waits = CollectStore(), FakeWaits()
    due = collect(
        ResultsClient(batch("batch_1").model_copy(update={"status": "COMPLETED"}), rows), store, waits
    )

    assert due == JOBS[:-2]
    assert waits.resolved["g0"].body["outputUrl"] == "https://o/0"
    assert store.generations[JOBS[-2]] == "gx"
    assert (store.failed[JOBS[-2]].code, store.failed[JOBS[-2]].message) == ("generation_timeout", "boom")
    assert store.failed[JOBS[-1]].code == "genq_batch_row_missing"


def test_a_batch_that_failed_without_results_fails_the_batch_with_its_figures() -> None:
    ended = Batch(id="batch_1", status="FAILED", metrics=BatchMetrics(total_generations=20, failed_count=20))
    with pytest.raises(JobRejected) as caught:
        collect(ResultsClient(ended, None), CollectStore(), FakeWaits())
    assert caught.value.code == "genq_batch_failed"
    assert caught.value.message == "batch batch_1 FAILED without a results file (20 of 20 generations failed)"
