"""The canvas of an avatar job: create and export → wait for the render → download."""

from __future__ import annotations

from celery import chain
from celery.canvas import Signature

from worker.providers.aistudios import stages


def build(job_id: str) -> Signature:
    return chain(stages.create.si(job_id), stages.wait.si(job_id), stages.download.si(job_id))
