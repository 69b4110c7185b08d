"""Provider-neutral tasks: ``genq.start`` turns a submitted job into its provider's canvas."""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import Task
from celery.canvas import Signature
from celery.exceptions import Ignore

from schemas import JobRecord
from worker.app import app
from worker.context import get_context
from worker.providers.registry import for_kind
from worker.providers.spec import load
from worker.store import JobMissing

log = logging.getLogger(__name__)


def flow(kind: str) -> Callable[[JobRecord], Signature]:
    """The canvas builder of a job kind, from its provider's spec."""
    build: Callable[[JobRecord], Signature] = load(for_kind(kind).flow)
    return build


@app.task(bind=True, name="genq.start")
def start(self: Task, job_id: str) -> None:  # type: ignore[type-arg]
    """Publish the job's canvas, unless the job was cancelled first. (Not ``replace``: that would give
    the canvas this task's id, and Flower would show one row for the start and the last stage.)"""
    try:
        job = get_context().store.get(job_id)
    except JobMissing:
        log.warning("job %s has no record; its start message is dropped", job_id)
        raise Ignore() from None
    if job.is_terminal:
        raise Ignore()
    flow(job.kind)(job).apply_async()
