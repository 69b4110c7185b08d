"""Every job ends, whatever a stage raises: each kind of fault is injected into each stage of every job
kind (the in-process worker runs the stages; the fault replaces one run's work), and every job is
found terminal. Infrastructure faults (Redis, the disk, the provider) are retried and the job succeeds;
a bug fails the job and dead-letters it."""

from __future__ import annotations

import errno
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from producers import Producer
from schemas import JobRecord, JobStatus
from schemas import layout as L
from tests.conftest import AVATAR, Sim
from worker.providers.errors import ProviderUnavailable
from worker.stage import Stage
from worker.store import JobStore

pytestmark = pytest.mark.integration

FAULTS: dict[str, Callable[[], Exception]] = {
    "provider 503": lambda: ProviderUnavailable("injected 503", provider="syncso", status_code=503),
    "Redis gone": lambda: redis.ConnectionError("Error 111 connecting to redis: Connection refused."),
    "disk full": lambda: OSError(errno.ENOSPC, "No space left on device"),
    "a bug": lambda: KeyError("injected bug"),
}
RETRIED = {"provider 503", "Redis gone", "disk full"}
URLS = {"video": "https://media.example.com/a.mp4", "audio": "https://media.example.com/a.wav"}
LIPSYNC = {"kind": "lipsync", "model": "lipsync-2", **URLS}


class Injector:
    """Replaces the work of the first run of ``(task, job)`` with raising a fault."""

    def __init__(self) -> None:
        self.planned: dict[tuple[str, str], Exception] = {}
        self.fired: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def plan(self, task: str, job_id: str, fault: Exception) -> None:
        self.planned[(task, job_id)] = fault

    def perform(self, original: Callable[..., str]) -> Callable[..., str]:
        def perform(stage: Stage, job_id: str, action: Any) -> str:
            with self.lock:
                fault = self.planned.pop((stage.name, job_id), None)
                if fault is not None:
                    self.fired.append((stage.name, job_id))
            if fault is None:
                return original(stage, job_id, action)

            def faulty(job: JobRecord, gate: Any) -> None:
                raise fault

            return original(stage, job_id, faulty)

        return perform


@pytest.fixture(autouse=True)
def _own_dead_letters(redis_client: redis.Redis) -> Iterator[None]:
    """The jobs failed here leave the session's dead-letter set as they found it, for other tests."""
    before = set(redis_client.zrange(L.DEAD_LETTERS, 0, -1))
    yield
    added = set(redis_client.zrange(L.DEAD_LETTERS, 0, -1)) - before
    if added:
        redis_client.zrem(L.DEAD_LETTERS, *added)


@pytest.fixture
def injector(monkeypatch: pytest.MonkeyPatch) -> Iterator[Injector]:
    injector = Injector()
    monkeypatch.setattr(Stage, "perform", injector.perform(Stage.perform))
    yield injector


def music_request(tmp_path: Path) -> dict[str, Any]:
    video = tmp_path / "clip.mp4"
    if not video.exists():
        video.write_bytes(os.urandom(256 * 1024))
    return {"kind": "music", "video": str(video), "executions": 2}


def big_video(tmp_path: Path) -> str:
    video = tmp_path / "big.mp4"
    if not video.exists():
        video.write_bytes(os.urandom(200 * 1024))  # over the tests' direct-upload limit
    return str(video)


def stages_and_requests(tmp_path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(task, a request whose job runs it) for every stage task of every job kind."""
    lipsync_all = {**LIPSYNC, "video": big_video(tmp_path), "max_cost_usd": 5.0}
    music = music_request(tmp_path)
    return [
        *[(f"genq.syncso.{s}", lipsync_all) for s in ("upload", "estimate", "create", "wait", "download")],
        *[(f"genq.aistudios.{s}", AVATAR) for s in ("create", "wait", "download")],
        *[
            (f"genq.aimi.{s}", music)
            for s in (
                "upload_init",
                "upload_chunk",
                "upload_complete",
                "analyze_video",
                "generate_plan",
                "execute",
                "wait",
                "download",
                "collect",
            )
        ],
    ]


@pytest.mark.slow
def test_each_fault_in_each_stage_ends_every_job(
    producer: Producer, sim: Sim, injector: Injector, tmp_path: Path, redis_client: redis.Redis
) -> None:
    planned: dict[str, tuple[str, str]] = {}
    for task, request in stages_and_requests(tmp_path):
        for name, fault in FAULTS.items():
            with injector.lock:  # the job's runs wait for its plan
                job_id = producer.submit(request)
                injector.plan(task, job_id, fault())
            planned[job_id] = (task, name)
    records = {job_id: producer.wait(job_id, timeout_s=120) for job_id in planned}

    assert not injector.planned, f"faults that never fired: {sorted(injector.planned)}"
    assert sorted(injector.fired) == sorted((task, job_id) for job_id, (task, _) in planned.items())
    dead = {member.decode() for member in redis_client.zrange(L.DEAD_LETTERS, 0, -1)}
    outcomes = {}
    for job_id, record in records.items():
        task, fault = planned[job_id]
        error = record.error
        outcomes[(task, fault)] = (record.status, error.code if error else None, job_id in dead)
    expected = {
        key: (JobStatus.SUCCEEDED, None, False) if key[1] in RETRIED
        else (JobStatus.FAILED, "genq_internal_error", True)
        for key in outcomes
    }  # fmt: skip
    assert outcomes == expected


@pytest.mark.slow
def test_a_fault_in_each_batch_stage_ends_every_job_of_the_batch(
    producer: Producer, sim: Sim, injector: Injector
) -> None:
    planned = []
    for stage in ("batch_create", "batch_wait", "batch_collect"):
        for name in ("Redis gone", "a bug"):
            jobs = [{**LIPSYNC, "video": f"https://media.example.com/{stage}-{i}.mp4"} for i in range(20)]
            with injector.lock:  # the batch's runs wait for its plan
                submitted = producer.submit_batch(jobs)
                injector.plan(f"genq.syncso.{stage}", submitted.batch_id, FAULTS[name]())
            planned.append((stage, name, submitted))
    for _, _, submitted in planned:
        for job_id in submitted.job_ids:
            producer.wait(job_id, timeout_s=120)
    # Each fault struck the batch it was planned for, once: the outcomes below are the faults' doing.
    assert not injector.planned, f"faults that never fired: {sorted(injector.planned)}"
    assert sorted(injector.fired) == sorted((f"genq.syncso.{s}", b.batch_id) for s, _, b in planned)
    for stage, name, submitted in planned:
        statuses = {producer.get(job_id).status for job_id in submitted.job_ids}
        batch = producer.get(submitted.batch_id)
        if name in RETRIED:
            assert (stage, name, batch.status, statuses) == (
                stage,
                name,
                JobStatus.SUCCEEDED,
                {JobStatus.SUCCEEDED},
            )
        else:
            assert batch.error is not None and batch.error.code == "genq_internal_error"
            assert (stage, name, batch.status, statuses) == (
                stage,
                name,
                JobStatus.FAILED,
                {JobStatus.FAILED},
            )


def test_a_bug_in_a_jobs_graph_fails_it_at_start(
    producer: Producer, sim: Sim, monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis
) -> None:
    import worker.tasks  # noqa: PLC0415 (the in-process worker's module)

    def broken(kind: str) -> Callable[..., Any]:
        raise RuntimeError("injected bug in the graph")

    monkeypatch.setattr(worker.tasks, "graph_for", broken)
    job_id = producer.submit(LIPSYNC)
    record = producer.wait(job_id, timeout_s=30)
    assert record.status is JobStatus.FAILED
    assert record.error is not None
    assert (record.error.stage, record.error.code) == ("start", "genq_internal_error")
    assert redis_client.zscore(L.DEAD_LETTERS, job_id) is not None


# Where a Redis error can strike one step of a run: before the begin or the advance is applied, or after
# (the script ran, its reply was lost on the way back).
ADVANCE_POINTS = ("begin, not applied", "begin, reply lost", "advance, not applied", "advance, reply lost")


class FlakyStore:
    """Raises a Redis error at one point of the first run of ``(state key, job)``."""

    def __init__(self) -> None:
        self.planned: dict[tuple[str, str], str] = {}
        self.fired: list[tuple[str, str, str]] = []
        self.calls: Counter[tuple[str, str]] = Counter()  # (state key, job): begins
        self.lock = threading.Lock()

    def wrap(self, step: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def flaky(store: JobStore, job_id: str, state_key: str, *args: Any, **kwargs: Any) -> Any:
            with self.lock:
                if step == "begin":
                    self.calls[(state_key, job_id)] += 1
                point = self.planned.get((state_key, job_id), "")
                strike = point.startswith(step)
                if strike:
                    del self.planned[(state_key, job_id)]
                    self.fired.append((state_key, job_id, point))
            if strike and point.endswith("not applied"):
                raise redis.ConnectionError("injected: Connection reset by peer")
            result = original(store, job_id, state_key, *args, **kwargs)
            if strike:
                raise redis.TimeoutError("injected: Timeout reading from socket")
            return result

        return flaky


@pytest.mark.slow
def test_a_redis_error_at_each_point_of_a_runs_begin_and_advance_runs_the_stage_again_and_the_job_ends(
    producer: Producer, sim: Sim, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    flaky = FlakyStore()
    monkeypatch.setattr(JobStore, "begin", flaky.wrap("begin", JobStore.begin))
    monkeypatch.setattr(JobStore, "advance", flaky.wrap("advance", JobStore.advance))
    music = music_request(tmp_path)
    # Lipsync's chain of stages, and music's joins: the last chunk and the last download.
    cases = [(LIPSYNC, key) for key in ("create", "wait", "download")]
    cases += [(music, key) for key in ("upload_chunk[0]", "download[1]")]
    planned = {}
    for request, key in cases:
        for point in ADVANCE_POINTS:
            with flaky.lock:  # the job's runs wait for its plan (a worker once began it first)
                job_id = producer.submit(request)
                flaky.planned[(key, job_id)] = point
            planned[job_id] = (key, point)
    records = {job_id: producer.wait(job_id, timeout_s=120) for job_id in planned}

    assert not flaky.planned, f"errors that never struck: {sorted(flaky.planned)}"
    assert sorted(flaky.fired) == sorted((key, job_id, point) for job_id, (key, point) in planned.items())
    outcomes = {planned[job_id]: (r.status, r.error) for job_id, r in records.items()}
    assert outcomes == {case: (JobStatus.SUCCEEDED, None) for case in planned.values()}
    # Each stage struck ran again: its message went back to the broker and was delivered anew.
    begins = {planned[job_id]: flaky.calls[(key, job_id)] for job_id, (key, _) in planned.items()}
    assert all(n >= 2 for n in begins.values()), begins
    # One provider job each: a run after a lost reply resumes from what its first run recorded.
    assert sim.stats()["generations_created"] == 3 * len(ADVANCE_POINTS)
    assert sim.stats("aimi")["executions_started"] == 2 * 2 * len(ADVANCE_POINTS)
