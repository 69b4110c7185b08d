"""The canvas of a lipsync job: create → wait → download."""

from __future__ import annotations

from celery import chain
from celery.canvas import Signature

from worker.providers.syncso import stages


def build(job_id: str) -> Signature:
    return chain(stages.create.si(job_id), stages.wait.si(job_id), stages.download.si(job_id))
