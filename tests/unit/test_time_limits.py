"""Stage time limits: each stage's, from its kind (an API call or a file transfer) or its own setting, and
what the worker's main process records when Celery kills a run past its hard limit (the run itself
cannot: its process is gone)."""

from __future__ import annotations

from collections.abc import Iterator
from threading import get_ident

import pytest
import redis
from celery.exceptions import TimeLimitExceeded

from producers import Producer
from schemas import JobStatus, StageStatus
from tests.conftest import LIPSYNC, holds
from worker import stage as stage_module
from worker.app import TASK_MODULES, app
from worker.context import Context
from worker.limits import Waiter
from worker.settings import Settings, TimeLimitSettings, get_settings
from worker.stage import Stage

MUSIC = {"kind": "music", "video": "https://x.test/v.mp4", "executions": 2}


def stage(name: str) -> Stage:
    for module in TASK_MODULES:
        __import__(module)
    task = app.tasks[name]
    assert isinstance(task, Stage)
    return task


@pytest.mark.parametrize(
    ("task", "soft_s"),
    [
        ("genq.syncso.create", 300.0),
        ("genq.syncso.wait", 300.0),
        ("genq.syncso.upload", 3600.0),
        ("genq.syncso.download", 3600.0),
        ("genq.aistudios.create", 300.0),
        ("genq.aistudios.download", 3600.0),
        ("genq.aimi.upload_chunk", 3600.0),
        ("genq.aimi.generate_plan", 300.0),
        ("genq.aimi.download", 3600.0),
    ],
)
def test_every_stage_has_the_time_limit_of_its_kind(task: str, soft_s: float) -> None:
    limits = TimeLimitSettings()
    assert limits.soft_s(task, stage(task).transfer) == soft_s


def test_every_stage_task_has_a_soft_and_a_hard_time_limit() -> None:
    settings = get_settings()
    for module in TASK_MODULES:
        __import__(module)
    # A copy of the names: looking a task up may finalize the app, which adds tasks to the registry.
    names = [n for n in list(app.tasks) if n.startswith("genq.") and n != "genq.start"]
    stages = [stage(n) for n in names]
    assert len(stages) >= 20
    for task in stages:
        assert task.soft_time_limit == settings.time_limits.soft_s(task.name, task.transfer)
        assert task.time_limit == task.soft_time_limit + settings.time_limits.grace_s


def test_a_task_of_its_own_overrides_its_kind() -> None:
    limits = TimeLimitSettings(api_s=60, tasks={"genq.syncso.create": 90})
    assert limits.soft_s("genq.syncso.create", False) == 90
    assert limits.soft_s("genq.syncso.estimate", False) == 60


@pytest.fixture
def scratch_ctx(scratch_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Context]:
    """Stages called from this test's thread use a context on the scratch database (nothing consumes its
    queues); the session's in-process worker, whose runs are other threads, keeps its own."""
    ctx, own, test_thread = (
        Context(Settings().with_redis_url(scratch_url)),
        stage_module.get_context,
        get_ident(),
    )
    monkeypatch.setattr(stage_module, "get_context", lambda: ctx if get_ident() == test_thread else own())
    yield ctx
    ctx.redis.close()


@pytest.mark.parametrize(("request_", "task", "args"), [
    (LIPSYNC, "genq.syncso.create", ()),
    (MUSIC, "genq.aimi.execute", (1,)),  # a branch: it holds a slot of its own, `<job id>:1`
])  # fmt: skip
def test_a_run_killed_at_its_hard_limit_fails_the_job_and_frees_its_slot(
    scratch_ctx: Context, scratch: redis.Redis, request_: dict[str, object], task: str, args: tuple[int, ...]
) -> None:
    producer = Producer(client=scratch)
    job_id = producer.submit(request_)
    run = stage(task)
    pool = scratch_ctx.budgets.pools_of(run.provider)[0]
    slot = job_id if not args else f"{job_id}:{args[0]}"
    assert scratch_ctx.limiter.acquire(pool, Waiter(slot, "", 0.0, run.provider, "m"))

    # As Celery's prefork pool calls it, in the worker's main process, after it killed the run's process.
    run.on_failure(TimeLimitExceeded(330.0), "task-id", [job_id, *args], {}, None)

    record = producer.get(job_id)
    key = run.stage if not args else f"{run.stage}[{args[0]}]"
    assert record.status is JobStatus.FAILED
    assert record.error is not None
    assert (record.error.code, record.error.stage) == ("genq_stage_timeout", key)
    assert "hard time limit of 330 s; its process was killed" in record.error.message
    assert record.stages[key].status is StageStatus.FAILED
    assert job_id in [r.id for r in producer.dead_letters()]
    assert not holds(scratch, pool, slot)


def test_other_failures_are_left_to_the_run(scratch_ctx: Context, scratch: redis.Redis) -> None:
    producer = Producer(client=scratch)
    job_id = producer.submit(LIPSYNC)
    stage("genq.syncso.create").on_failure(RuntimeError("x"), "task-id", [job_id], {}, None)
    assert producer.get(job_id).status is JobStatus.QUEUED
