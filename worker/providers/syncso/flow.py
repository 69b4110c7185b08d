"""The canvas of a sync.so record: a lipsync job's [upload] → [estimate] → create → wait → download, or a
batch's create → wait → collect (which then queues each job's own download)."""

from __future__ import annotations

from celery import chain
from celery.canvas import Signature

from schemas import JobRecord, LipsyncRequest
from worker.providers.syncso import stages
from worker.providers.syncso.inputs import library_fields
from worker.providers.syncso.spec import SPEC
from worker.settings import get_settings


def build(job: JobRecord) -> Signature:
    if job.kind == "lipsync_batch":
        return chain(
            stages.batch_create.si(job.id), stages.batch_wait.si(job.id), stages.batch_collect.si(job.id)
        )
    assert isinstance(job.request, LipsyncRequest)
    steps = []
    if library_fields(job.request, SPEC.section(get_settings()).max_upload_bytes):
        steps.append(stages.upload.si(job.id))
    if job.request.max_cost_usd is not None:
        steps.append(stages.estimate.si(job.id))
    steps += [stages.create.si(job.id), stages.wait.si(job.id), stages.download.si(job.id)]
    return chain(*steps)
