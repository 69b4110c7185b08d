"""Inputs a pipeline handed on from an earlier step to a step's job (``worker/pipeline.py``).

An output in a file store is handed on as its path, which the job may read from this process's file store
only (``Context.output_roots``; its own local inputs stay under the input roots). One in an S3 store is
handed on as ``output:s3://…``; each stage run presigns it anew (``GENQ_OUTPUTS__PRESIGN_EXPIRES_S``), so
a provider fetches it by URL however long the job waited before the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from schemas import JobRecord
from schemas.base import OUTPUT_PREFIX
from schemas.pipeline import replace_at
from schemas.requests import STORED_REQUEST
from storage import StoreError, store_for
from worker.output_store import store_error

if TYPE_CHECKING:
    from worker.context import Context

HANDED = "handed"  # the job data field: {input field: the pipeline step's run whose output it is}


@dataclass(frozen=True)
class Roots:
    """Where a stage may read a job's local inputs: its own under the input roots (GENQ_INPUT_ROOTS),
    and those a pipeline handed on from an earlier step in this process's file store (none for an S3
    store, whose outputs are handed on by URL)."""

    inputs: tuple[Path, ...] = ()
    outputs: tuple[Path, ...] = ()

    def of(self, job: JobRecord, field: str) -> tuple[Path, ...]:
        """The roots input ``field`` of ``job`` may be under."""
        return self.outputs if field in handed_on(job) else self.inputs


def handed_on(job: JobRecord) -> dict[str, str]:
    """The inputs of ``job`` a pipeline handed on, by field: {field: the step run that made it}."""
    handed = job.data.get(HANDED)
    return dict(handed) if isinstance(handed, dict) else {}


def presigned_inputs(job: JobRecord, ctx: Context) -> JobRecord:
    """``job`` with each ``output:s3://…`` input replaced by a presigned URL of it (the job unchanged when
    it has none). A store that cannot presign is a store error: retried, or the job fails."""
    refs = job.request.output_refs()
    if not refs:
        return job
    request = job.request.model_dump(mode="json")
    for field, ref in refs.items():
        store_url = ref.removeprefix(OUTPUT_PREFIX)
        try:
            url = store_for(store_url, ctx.settings.outputs, ctx.settings.artifact_dir).presign(store_url)
        except StoreError as exc:
            raise store_error(exc) from None
        if url is None:
            raise store_error(StoreError(f"{field}: the output store cannot presign {store_url}"))
        replace_at(request, field, url)
    return job.model_copy(update={"request": STORED_REQUEST.validate_python(request)})
