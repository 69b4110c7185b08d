"""sync.so lipsync stages: create → wait (parked; woken by the status sweep or a webhook) → download.
Each task is thin: the work is in the plain functions above it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas import JobRecord, JobStatus, LipsyncRequest, Output, StageStatus, is_local_path
from worker.app import app
from worker.context import Context
from worker.follow import Followed, recorded_end
from worker.limits import Gate, Pool, RateBudget
from worker.outcomes import Later, Stop
from worker.providers.errors import AuthFailed, BadRequest, JobRejected, NotFound
from worker.providers.syncso.client import Generation, SyncSoClient
from worker.providers.syncso.settings import SyncSoSettings
from worker.providers.syncso.spec import CREATE, GENERATIONS, OTHER, SPEC
from worker.stage import Stage
from worker.store import JobStore
from worker.waits import Waits

PROVIDER = SPEC.name
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
    webhook_url: str | None  # where sync.so delivers the end of a generation, if anywhere

    @property
    def account(self) -> str:
        return self.settings.account

    @classmethod
    def of(cls, ctx: Context) -> SyncSo:
        b = ctx.budgets
        return cls(
            ctx.client(SPEC),
            ctx.section(SPEC),
            b.pool(GENERATIONS),
            b.rate(CREATE),
            b.rate(OTHER),
            ctx.settings.webhooks.url_for(PROVIDER),
        )


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
    if sync.webhook_url:
        body["webhookUrl"] = sync.webhook_url
    with gate.calling(sync.create_rate, sync.generations):
        key = idempotency_key(job.id)
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
    result = recorded_end(followed, waits, gate)
    if result.state == "missing":  # the sweep did not find it: ask for it alone (a 404 fails the job)
        with gate.calling(sync.other_rate):
            generation = sync.client.get_generation(generation_id)
        if not generation.is_terminal:
            waits.forget(PROVIDER, generation_id)
            raise Later(0.0, f"generation {generation.status}", status=StageStatus.WAITING)
    else:
        generation = Generation.model_validate(result.body)
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


def fetch_output(job: JobRecord, sync: SyncSo, waits: Waits, gate: Gate, artifact_dir: Path) -> Output:
    """Download the finished video into ``artifact_dir/<job id>/``; a redelivery downloads it again.
    The output URL comes from the end the sweep or webhook recorded; only if that is gone, or its
    signed URL was refused (it expires), is the generation asked for again."""
    generation_id = job.provider_ids[GENERATION]
    assert isinstance(job.request, LipsyncRequest)
    name = (job.request.output_file_name or generation_id) + ".mp4"
    dest = artifact_dir / job.id / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    max_bytes = sync.settings.max_output_bytes
    result = waits.result(PROVIDER, generation_id)
    generation = Generation.model_validate(result.body) if result and result.state == "ended" else None
    download = None
    if generation is not None and generation.output_url:
        try:
            download = sync.client.download_output(generation.output_url, dest, max_bytes=max_bytes)
        except (AuthFailed, NotFound):
            download = None
    if download is None:
        with gate.calling(sync.other_rate):
            generation = sync.client.get_generation(generation_id)
        if not generation.output_url:
            raise JobRejected("generation completed without an outputUrl", provider=PROVIDER)
        download = sync.client.download_output(generation.output_url, dest, max_bytes=max_bytes)
    assert generation is not None
    return Output(
        path=str(download.path.resolve()),
        bytes=download.bytes,
        sha256=download.sha256,
        duration_s=generation.output_duration,
    )


@app.task(bind=True, base=Stage, name="genq.syncso.create", stage="create")
def create(self: Stage, job_id: str) -> str:
    ctx = self.ctx
    return self.perform(job_id, lambda job, gate: start_generation(job, ctx.store, SyncSo.of(ctx), gate))


@app.task(bind=True, base=Stage, name="genq.syncso.wait", stage="wait", follows_cancelled=True)
def wait(self: Stage, job_id: str) -> str:
    ctx = self.ctx
    return self.perform(job_id, lambda job, gate: follow_generation(job, SyncSo.of(ctx), ctx.waits, gate))


@app.task(bind=True, base=Stage, name="genq.syncso.download", stage="download")
def download(self: Stage, job_id: str) -> str:
    ctx = self.ctx

    def finish(job: JobRecord, gate: Gate) -> None:
        output = fetch_output(job, SyncSo.of(ctx), ctx.waits, gate, ctx.settings.artifact_dir)
        ctx.store.succeed(job_id, [output])

    return self.perform(job_id, finish)
