"""Provider-neutral tasks: ``genq.start`` starts a submitted job on its step graph."""

from __future__ import annotations

import logging

import redis
from celery import Task
from celery.exceptions import Ignore, Reject

from schemas import JobError, JobRecord, JobStatus
from schemas import layout as L
from worker.app import app
from worker.context import Context, get_context
from worker.graph import run_message
from worker.providers.registry import graph_for
from worker.store import JobMissing

log = logging.getLogger(__name__)


def spent_tenant(ctx: Context, job: JobRecord) -> str | None:
    """Why a job whose tenant's spend budget has nothing left (and refuses what is over it) fails at its
    start, before any stage runs (an upload, an estimate); None otherwise. A job whose graph spends
    nothing (a pipeline: its steps' jobs do) is not held to it here."""
    if job.tenant is None or graph_for(job.kind).spending_step() is None:
        return None
    budget = ctx.spend.budget(job.tenant)
    if budget is None or budget.over != "refuse":
        return None
    left = ctx.spend.nothing_left(budget)
    return None if left is None else f"over budget: {left}; nothing was created"


@app.task(bind=True, name=L.START_TASK)
def start(self: Task, job_id: str) -> str:  # type: ignore[type-arg]
    """Start the job once: the first messages of its graph are pushed in the same Redis step that moves
    the job from ``queued`` to ``running`` (compare-and-set), so a redelivered start pushes nothing. Each
    is a task of its own whose parent and root are this one, so Flower shows the job's runs under it."""
    ctx = get_context()
    try:
        try:
            job = ctx.store.get(job_id)
        except JobMissing:
            log.warning("job %s has no record; its start message is dropped", job_id)
            raise Ignore() from None
        if job.status is not JobStatus.QUEUED:
            return f"skipped: the job is {job.status.value}"
        refused = spent_tenant(ctx, job)
        if refused is not None:
            ctx.store.fail(job_id, JobError(stage="start", message=refused, provider="genq",
                                            code="genq_budget_exceeded"))  # fmt: skip
            return f"failed: {refused}"
        try:
            runs = graph_for(job.kind).first(job)
        except Exception as exc:  # a bug in the graph: the job fails, dead-lettered
            log.exception("job %s: its first steps could not be found", job_id)
            error = JobError(stage="start", message=f"{type(exc).__name__}: {exc}", provider="genq",
                             code="genq_internal_error")  # fmt: skip
            ctx.store.fail(job_id, error, dead_letter=True)
            return "failed: its first steps could not be found"
        if not runs:
            return "skipped: no step is due"
        root = str(self.request.root_id or self.request.id)
        made = [
            run_message(r.step.task, job_id, r.args, root_id=root, parent_id=self.request.id) for r in runs
        ]
        started = ctx.store.start_once(job_id, made[0][0], [message for _, message in made], root=root)
    except redis.RedisError as exc:
        log.warning(
            "start of job %s: Redis unavailable (%s); the message goes back to the broker", job_id, exc
        )
        raise Reject(f"Redis unavailable: {exc}", requeue=True) from exc
    return "started" if started is True else f"skipped: the job is {started}"
