"""sync.so lipsync stages. Each task is thin: the work is in the plain functions above it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas import JobRecord, JobStatus, LipsyncRequest, Output, is_local_path
from worker.app import app
from worker.context import Context
from worker.limits import Gate, Pool, RateBudget
from worker.outcomes import Later, Stop
from worker.providers.errors import BadRequest, JobRejected
from worker.providers.syncso.client import Generation, SyncSoClient
from worker.retry import poll_delay_s
from worker.settings import SyncSoSettings
from worker.stage import Stage
from worker.store import JobStore

PROVIDER = "syncso"
GENERATION = "generation"  # the provider id's name in the job record


def idempotency_key(job_id: str) -> str:
    """The Idempotency-Key for a job's one generation: the same on every redelivery of create."""
    return f"genq-{job_id}"


def create_body(request: LipsyncRequest, *, max_upload_bytes: int) -> tuple[dict[str, Any], dict[str, Path]]:
    """The create-generation body, and the local files to upload with it (multipart)."""
    items: list[dict[str, Any]] = []
    files: dict[str, Path] = {}
    for kind, source in (("video", request.video), ("audio", request.audio)):
        if source is None:
            continue
        if is_local_path(source):
            files[kind] = _checked_upload(kind, Path(source), max_upload_bytes)
        else:
            items.append({"type": kind, "url": source})
    if request.tts is not None:
        provider: dict[str, Any] = {
            "name": "elevenlabs",
            "voiceId": request.tts.voice_id,
            "script": request.tts.script,
        }
        if request.tts.stability is not None:
            provider["stability"] = request.tts.stability
        if request.tts.similarity_boost is not None:
            provider["similarityBoost"] = request.tts.similarity_boost
        items.append({"type": "text", "provider": provider})
    body: dict[str, Any] = {"model": request.model.value, "input": items}
    options = request.options.model_dump(mode="json", exclude_none=True)
    if options:
        body["options"] = options
    if request.output_file_name:
        body["outputFileName"] = request.output_file_name
    return body, files


def _checked_upload(kind: str, path: Path, max_bytes: int) -> Path:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise BadRequest(f"cannot read the {kind} file {path}: {exc.strerror}", provider=PROVIDER) from None
    if size > max_bytes:
        raise BadRequest(
            f"the {kind} file is {size} bytes; direct upload takes at most {max_bytes}: give a URL instead",
            provider=PROVIDER,
        )
    return path


@dataclass(frozen=True)
class SyncSo:
    """What a sync.so stage talks to, and the account's budgets it spends."""

    client: SyncSoClient
    settings: SyncSoSettings
    generations: Pool  # generations in PENDING or PROCESSING
    create_rate: RateBudget  # POST /v2/generate
    other_rate: RateBudget  # every other endpoint

    @classmethod
    def of(cls, ctx: Context) -> SyncSo:
        b = ctx.budgets
        return cls(ctx.syncso, ctx.settings.syncso, b.syncso_generations, b.syncso_create, b.syncso_other)


def start_generation(job: JobRecord, store: JobStore, sync: SyncSo, gate: Gate) -> str:
    """Create the job's generation once, holding a slot of the account's concurrency from now until the
    generation ends. A redelivered create finds the recorded id and does nothing; one that died between
    the provider's answer and the record resends the same Idempotency-Key and gets the same generation."""
    recorded = job.provider_ids.get(GENERATION)
    if recorded:
        return recorded
    assert isinstance(job.request, LipsyncRequest)
    gate.hold(sync.generations)
    body, files = create_body(job.request, max_upload_bytes=sync.settings.max_upload_bytes)
    with gate.calling(sync.create_rate, sync.generations):
        key = idempotency_key(job.id)
        generation = sync.client.create_generation(body, idempotency_key=key, files=files or None)
    return store.record_provider_id(job.id, GENERATION, generation.id)


def check_generation(job: JobRecord, sync: SyncSo, gate: Gate, poll: int) -> Generation:
    """One status check. Returns the finished generation; raises ``Later`` while it runs and
    ``JobRejected`` when it failed or was rejected, or when the deadline passed. The job's slot is kept
    while the generation runs and given back when it ends. A cancelled job's generation is followed to
    its end (sync.so cannot cancel it, and it still counts against the account), then the job stops."""
    settings = sync.settings
    with gate.calling(sync.other_rate):
        generation = sync.client.get_generation(job.provider_ids[GENERATION])
    if generation.is_terminal:
        gate.let_go(sync.generations)
        if job.status is JobStatus.CANCELLED:
            raise Stop(f"job cancelled; its generation ended {generation.status}")
        if generation.is_success:
            return generation
        raise JobRejected(
            generation.error or f"generation ended {generation.status}",
            provider=PROVIDER,
            code=generation.error_code or generation.status,
        )
    created = job.stages["create"].finished_at if "create" in job.stages else None
    waited_s = time.time() - (created or job.created_at).timestamp()
    if waited_s > settings.max_wait_s:
        raise JobRejected(
            f"generation still {generation.status} after {waited_s:.0f} s (limit {settings.max_wait_s:g} s)",
            provider=PROVIDER,
            code="genq_wait_timeout",
        )
    countdown = poll_delay_s(
        poll, initial_s=settings.poll_initial_s, factor=settings.poll_factor, max_s=settings.poll_max_s
    )
    gate.keep(sync.generations, for_s=countdown)
    raise Later(countdown, f"generation {generation.status}", args=(job.id, poll + 1))


def fetch_output(job: JobRecord, sync: SyncSo, gate: Gate, artifact_dir: Path) -> Output:
    """Download the finished video into ``artifact_dir/<job id>/``; a redelivery downloads it again."""
    with gate.calling(sync.other_rate):
        generation = sync.client.get_generation(job.provider_ids[GENERATION])
    if not generation.output_url:
        raise JobRejected("generation completed without an outputUrl", provider=PROVIDER)
    assert isinstance(job.request, LipsyncRequest)
    name = (job.request.output_file_name or job.provider_ids[GENERATION]) + ".mp4"
    dest = artifact_dir / job.id / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    download = sync.client.download_output(
        generation.output_url, dest, max_bytes=sync.settings.max_output_bytes
    )
    return Output(
        path=str(download.path.resolve()),
        bytes=download.bytes,
        sha256=download.sha256,
        duration_s=generation.output_duration,
    )


@app.task(bind=True, base=Stage, name="genq.syncso.create", stage="create")
def create(self: Stage, job_id: str) -> None:
    ctx = self.ctx
    with self.running(job_id) as (job, gate):
        start_generation(job, ctx.store, SyncSo.of(ctx), gate)


@app.task(bind=True, base=Stage, name="genq.syncso.wait", stage="wait", follows_cancelled=True)
def wait(self: Stage, job_id: str, poll: int = 0) -> None:
    ctx = self.ctx
    with self.running(job_id) as (job, gate):
        check_generation(job, SyncSo.of(ctx), gate, poll)


@app.task(bind=True, base=Stage, name="genq.syncso.download", stage="download")
def download(self: Stage, job_id: str) -> None:
    ctx = self.ctx
    with self.running(job_id) as (job, gate):
        output = fetch_output(job, SyncSo.of(ctx), gate, ctx.settings.artifact_dir)
        ctx.store.succeed(job_id, [output])
