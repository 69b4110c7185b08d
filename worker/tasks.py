"""Provider-neutral tasks: ``genq.start`` turns a submitted job into its provider's canvas."""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis
from celery import Task
from celery.canvas import Signature
from celery.exceptions import Ignore, Reject

from schemas import JobError, JobRecord, JobStatus
from worker.app import app
from worker.context import get_context
from worker.parking import captured_message
from worker.providers.registry import for_kind
from worker.providers.spec import load
from worker.store import JobMissing

log = logging.getLogger(__name__)


def flow(kind: str) -> Callable[[JobRecord], Signature]:
    """The canvas builder of a job kind, from its provider's spec."""
    build: Callable[[JobRecord], Signature] = load(for_kind(kind).flow)
    return build


@app.task(bind=True, name="genq.start")
def start(self: Task, job_id: str) -> str:  # type: ignore[type-arg]
    """Start the job's canvas once: its first message is pushed in the same Redis step that moves the
    job from ``queued`` to ``running`` (compare-and-set), so a redelivered start publishes nothing.
    (Not ``replace``: that would give the canvas this task's id, and Flower would show one row for the
    start and the last stage.)"""
    ctx = get_context()
    try:
        try:
            job = ctx.store.get(job_id)
        except JobMissing:
            log.warning("job %s has no record; its start message is dropped", job_id)
            raise Ignore() from None
        if job.status is not JobStatus.QUEUED:
            return f"skipped: the job is {job.status.value}"
        try:
            queue, message = captured_message(flow(job.kind)(job))
        except Exception as exc:  # a bug building the canvas: the job fails, dead-lettered
            log.exception("job %s: its canvas could not be built", job_id)
            error = JobError(stage="start", message=f"{type(exc).__name__}: {exc}", provider="genq",
                             code="genq_internal_error")  # fmt: skip
            ctx.store.fail(job_id, error, dead_letter=True)
            return "failed: the canvas could not be built"
        started = ctx.store.start_once(job_id, queue, message)
    except redis.RedisError as exc:
        log.warning(
            "start of job %s: Redis unavailable (%s); the message goes back to the broker", job_id, exc
        )
        raise Reject(f"Redis unavailable: {exc}", requeue=True) from exc
    return "started" if started is True else f"skipped: the job is {started}"
