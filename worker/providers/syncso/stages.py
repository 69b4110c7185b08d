"""sync.so lipsync stages: [upload] → [estimate] → create → wait (parked; woken by the status sweep or
a webhook) → download, in the order of the lipsync graph (``graph.py``). ``upload`` runs when inputs go
through the media library, ``estimate`` when the job has a cost cap. Each task is thin: the work is in
the plain functions above it."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from schemas import JobError, JobRecord, JobStatus, LipsyncRequest, Output
from schemas import layout as L
from schemas.lipsync_wire import generation_body
from storage import OutputStore, Sink, Stored
from worker.app import app
from worker.context import Context
from worker.follow import Followed, followed_end
from worker.handoff import Roots
from worker.inputs import open_local
from worker.limits import Gate
from worker.names import output_key
from worker.outcomes import Done, Stop
from worker.output_store import store_output
from worker.providers.errors import AuthFailed, BadRequest, JobRejected, NotFound, ProviderError
from worker.providers.http import ByteBudget
from worker.providers.syncso.account import SyncSo
from worker.providers.syncso.batch import collect_batch, fail_members, follow_batch, start_batch
from worker.providers.syncso.client import Generation
from worker.providers.syncso.inputs import ASSETS, direct_fields, upload_inputs
from worker.providers.syncso.spec import SPEC
from worker.providers.syncso.watch import ended
from worker.stage import Stage
from worker.store import JobStore
from worker.waits import WaitResult, Waits

PROVIDER = SPEC.name
GENERATION = "generation"  # the provider id's name in the job record
ESTIMATE = "estimate"  # the job data field: {"usd", "frames"}


def idempotency_key(job: JobRecord) -> str:
    """The Idempotency-Key of the job's generation: the same on every redelivery of create, and a new one
    after each ``genq replay --fresh`` (which dropped a generation that failed), so a new generation."""
    fresh = int(job.data.get(L.FRESH_REPLAYS, 0))
    return f"genq-{job.id}" if fresh == 0 else f"genq-{job.id}-fresh{fresh}"


@contextmanager
def create_body(
    job: JobRecord, *, max_upload_bytes: int, roots: Roots
) -> Iterator[tuple[dict[str, Any], dict[str, io.BufferedReader]]]:
    """The create-generation body, and the local files sent with it (multipart), opened once under the
    input roots (``open_local``) and closed when the block ends. Inputs uploaded to the media library by
    the ``upload`` stage are referenced by their asset ids."""
    assert isinstance(job.request, LipsyncRequest)
    assets = job.data.get(ASSETS, {})
    body, files = generation_body(job.request, assets=assets, direct=direct_fields(job.request, assets))
    with ExitStack() as stack:
        opened = {
            kind: stack.enter_context(_checked_upload(kind, path, max_upload_bytes, roots.of(job, kind)))
            for kind, path in files.items()
        }
        yield body, opened


def _checked_upload(kind: str, path: str, max_bytes: int, roots: Sequence[Path]) -> io.BufferedReader:
    file = open_local(path, roots, field=kind)
    size = os.fstat(file.fileno()).st_size
    if size > max_bytes:
        file.close()
        raise BadRequest(
            f"the {kind} file is {size} bytes; direct upload takes at most {max_bytes}: give a URL instead",
            provider=PROVIDER,
        )
    return file


def estimated_usd(job: JobRecord, store: JobStore, sync: SyncSo, gate: Gate) -> float:
    """sync.so's estimate of the job's generation (``POST /v2/analyze/cost``), recorded (``data:estimate``)
    and reused on a rerun. ``BadRequest`` when sync.so cannot estimate it."""
    assert isinstance(job.request, LipsyncRequest)
    recorded = job.data.get(ESTIMATE)
    if recorded is None:
        body, _ = generation_body(job.request, assets=job.data.get(ASSETS, {}))
        with gate.calling(sync.other_rate):
            estimates = sync.client.estimate_cost(body)
        usd = round(sum(e.estimated_generation_cost for e in estimates), 6)
        frames = sum(e.estimated_frame_count or 0 for e in estimates)
        recorded = {"usd": usd, "frames": frames}
        store.set_data(job.id, ESTIMATE, recorded)
    return float(recorded["usd"])


def job_cost(job: JobRecord, ctx: Context, gate: Gate) -> float | None:
    """What the job will cost (``ProviderSpec.cost``): sync.so's estimate, or None when it cannot make
    one (an input sent with the create call itself is not reachable before it)."""
    assert isinstance(job.request, LipsyncRequest)
    if direct_fields(job.request, job.data.get(ASSETS, {})):
        return None
    try:
        return estimated_usd(job, ctx.store, SyncSo.of(ctx), gate)
    except BadRequest:
        return None


def recorded_cost(job: JobRecord, ctx: Context, sync: SyncSo, gate: Gate) -> float | None:
    """What sync.so recorded the job's generation cost (``GET /v2/generate/{id}/costs``), for a job that
    holds a reservation against its tenant's budget; None when the figure is not complete or cannot be
    read (the reservation, sync.so's estimate, is charged then)."""
    generation_id = job.provider_ids.get(GENERATION)
    if job.reserved_usd is None or not generation_id:
        return None
    try:
        with gate.calling(sync.other_rate):
            return sync.client.generation_cost(generation_id).usd
    except ProviderError:
        return None


def check_cost(job: JobRecord, store: JobStore, sync: SyncSo, gate: Gate) -> float:
    """sync.so's estimate of the job's generation; past the job's ``max_cost_usd`` the job fails here,
    before anything is created."""
    assert isinstance(job.request, LipsyncRequest) and job.request.max_cost_usd is not None
    cap = job.request.max_cost_usd
    try:
        usd = estimated_usd(job, store, sync, gate)
    except BadRequest as exc:
        raise JobRejected(
            f"sync.so could not estimate the cost ({exc.message}); the job has max_cost_usd, so nothing "
            "was created",
            provider=PROVIDER,
            code="genq_cost_unknown",
            status_code=exc.status_code,
        ) from None
    if usd > cap:
        raise JobRejected(
            f"estimated cost ${usd:.4f} is over max_cost_usd ${cap:.4f}; nothing was created",
            provider=PROVIDER,
            code="genq_cost_exceeded",
        )
    return usd


def start_generation(job: JobRecord, store: JobStore, sync: SyncSo, gate: Gate) -> str:
    """Create the job's generation once, holding a slot of the account's concurrency from now until the
    generation ends. A redelivered create finds the recorded id and does nothing; one that died between
    the provider's answer and the record resends the same Idempotency-Key and gets the same generation."""
    recorded = job.provider_ids.get(GENERATION)
    if recorded:
        return recorded
    assert isinstance(job.request, LipsyncRequest)
    gate.hold(sync.generations)
    limit = sync.settings.max_upload_bytes
    with create_body(job, max_upload_bytes=limit, roots=sync.roots) as (body, files):
        if sync.webhook_url:
            body["webhookUrl"] = sync.webhook_url
        with gate.calling(sync.create_rate, sync.generations):
            key = idempotency_key(job)
            generation = sync.client.create_generation(body, idempotency_key=key, files=files or None)
    return store.record_provider_id(job.id, GENERATION, generation.id)


def follow_generation(job: JobRecord, sync: SyncSo, waits: Waits, gate: Gate) -> Generation:
    """The generation once it has ended. Until then the stage parks (``Wait``): the account's status
    sweep or a webhook records the end and wakes it, and this run reads that end instead of asking the
    provider. The job's slot is kept while the generation runs and given back when it ends. A cancelled
    job's generation is followed to its end (sync.so cannot cancel it, and it still counts against the
    account), then the job stops."""
    generation_id = job.provider_ids[GENERATION]
    created = job.stages["create"].finished_at if "create" in job.stages else None
    settings = sync.settings
    what = f"generation {generation_id}"
    followed = Followed(
        PROVIDER,
        sync.account,
        generation_id,
        what,
        sync.generations,
        settings.check_interval_s,
        settings.max_wait_s,
        "GENQ_SYNCSO__MAX_WAIT_S",
        created or job.created_at,
    )

    def ask() -> WaitResult | str:
        with gate.calling(sync.other_rate):
            asked = sync.client.get_generation(generation_id)
        return ended(asked) if asked.is_terminal else f"generation {asked.status}"

    generation = Generation.model_validate(followed_end(followed, waits, gate, ask).body)
    if job.status is JobStatus.CANCELLED:
        raise Stop(f"job cancelled; its generation ended {generation.status}")
    if generation.is_success:
        return generation
    raise JobRejected(
        generation.error or f"generation ended {generation.status}",
        provider=PROVIDER,
        code=generation.error_code or generation.status,
        failed_provider_ids=(GENERATION,),
    )


def fetch_output(
    job: JobRecord,
    sync: SyncSo,
    waits: Waits,
    gate: Gate,
    outputs: OutputStore,
    *,
    budget: ByteBudget | None = None,
) -> Output:
    """Stream the finished video into the output store as ``<job id>/<name>`` (within the job's output
    ``budget``); a run again after a crash finds it there and fetches nothing (``store_output``).
    The output URL comes from the end the sweep or webhook recorded; only if that is gone, or its
    signed URL was refused (it expires), is the generation asked for again."""
    generation_id = job.provider_ids[GENERATION]
    assert isinstance(job.request, LipsyncRequest)
    suffix = "." + (job.request.options.output_format or "mp4")
    key = output_key(job.id, job.request.output_file_name or generation_id, suffix)
    max_bytes = sync.settings.max_output_bytes
    result = waits.result(PROVIDER, generation_id)
    generation = Generation.model_validate(result.body) if result and result.state == "ended" else None

    def fetch(into: Sink[Stored]) -> Stored:
        nonlocal generation
        if generation is not None and generation.output_url:
            try:
                return sync.client.download_output(
                    generation.output_url, into, max_bytes=max_bytes, budget=budget
                )
            except (AuthFailed, NotFound):
                pass
        with gate.calling(sync.other_rate):
            generation = sync.client.get_generation(generation_id)
        if not generation.output_url:
            raise JobRejected("generation completed without an outputUrl", provider=PROVIDER)
        return sync.client.download_output(generation.output_url, into, max_bytes=max_bytes, budget=budget)

    stored = store_output(outputs, key, fetch, budget=budget)
    return stored.output(duration_s=generation.output_duration if generation is not None else None)


@app.task(bind=True, base=Stage, name="genq.syncso.upload", stage="upload", transfer=True)
def upload(self: Stage, job_id: str) -> str:
    ctx = self.ctx
    return self.perform(job_id, lambda job, gate: upload_inputs(job, ctx.store, SyncSo.of(ctx), gate))


@app.task(bind=True, base=Stage, name="genq.syncso.estimate", stage="estimate")
def estimate(self: Stage, job_id: str) -> str:
    ctx = self.ctx
    return self.perform(job_id, lambda job, gate: check_cost(job, ctx.store, SyncSo.of(ctx), gate))


@app.task(bind=True, base=Stage, name="genq.syncso.create", stage="create")
def create(self: Stage, job_id: str) -> str:
    ctx = self.ctx
    return self.perform(job_id, lambda job, gate: start_generation(job, ctx.store, SyncSo.of(ctx), gate))


@app.task(bind=True, base=Stage, name="genq.syncso.wait", stage="wait", follows_cancelled=True)
def wait(self: Stage, job_id: str) -> str:
    ctx = self.ctx
    return self.perform(job_id, lambda job, gate: follow_generation(job, SyncSo.of(ctx), ctx.waits, gate))


@app.task(bind=True, base=Stage, name="genq.syncso.download", stage="download", transfer=True)
def download(self: Stage, job_id: str) -> str:
    ctx = self.ctx

    def finish(job: JobRecord, gate: Gate) -> Done:
        budget, sync = self.output_budget(job.id), SyncSo.of(ctx)
        output = fetch_output(job, sync, ctx.waits, gate, ctx.outputs, budget=budget)
        return Done(outputs=[output], cost_usd=recorded_cost(job, ctx, sync, gate))

    return self.perform(job_id, finish)


class BatchStage(Stage):
    """A stage of a batch record: when the batch fails, its open jobs fail with it."""

    abstract = True

    def on_failed(self, job_id: str, error: JobError) -> None:
        store = self.ctx.store
        fail_members(store.get(job_id), store, error)


@app.task(bind=True, base=BatchStage, name="genq.syncso.batch_create", stage="create")
def batch_create(self: Stage, batch_id: str) -> str:
    ctx = self.ctx
    return self.perform(batch_id, lambda batch, gate: start_batch(batch, ctx.store, SyncSo.of(ctx), gate))


# Follows a cancelled batch to its end too: it holds a slot of the account's batches until then.
@app.task(bind=True, base=BatchStage, name="genq.syncso.batch_wait", stage="wait", follows_cancelled=True)
def batch_wait(self: Stage, batch_id: str) -> str:
    ctx = self.ctx
    return self.perform(batch_id, lambda batch, gate: follow_batch(batch, SyncSo.of(ctx), ctx.waits, gate))


@app.task(bind=True, base=BatchStage, name="genq.syncso.batch_collect", stage="collect")
def batch_collect(self: Stage, batch_id: str) -> str:
    ctx = self.ctx

    def finish(batch: JobRecord, gate: Gate) -> Done:
        due = collect_batch(batch, ctx.store, SyncSo.of(ctx), ctx.waits, gate)
        # Each job's download starts in the step that ends the batch.
        return Done(outputs=[], also=tuple((download.name, job_id) for job_id in due))

    return self.perform(batch_id, finish)
