"""The canvas of an avatar job: create and export → wait for the render → download."""

from __future__ import annotations

from celery import chain
from celery.canvas import Signature

from schemas import JobRecord
from worker.providers.aistudios import stages


def build(job: JobRecord) -> Signature:
    return chain(stages.create.si(job.id), stages.wait.si(job.id), stages.download.si(job.id))
