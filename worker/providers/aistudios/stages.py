"""AI Studios avatar stages: create and export → wait (parked; woken by the progress sweep or a webhook)
→ download. Each task is thin: the work is in the plain functions above it.

Create is idempotent in two steps, because AI Studios has no idempotency key: the project is created
*without* exporting and its id recorded; then the export is requested once. The record says where a
redelivered create resumes: a recorded project is not created again, and an export whose request may
have reached AI Studios (``requested``) is sent again only if the project is still a draft.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas import JobRecord, JobStatus, Output
from schemas.avatar import AvatarRequest
from storage import OutputStore, Sink, Stored
from worker.app import app
from worker.context import Context
from worker.follow import Followed, followed_end
from worker.limits import Gate, Pool, RateBudget
from worker.names import output_key
from worker.outcomes import Stop
from worker.output_store import store_output
from worker.providers.aistudios.client import AIStudiosClient, Progress
from worker.providers.aistudios.settings import AIStudiosSettings
from worker.providers.aistudios.spec import RENDERS, REQUESTS, SPEC
from worker.providers.aistudios.webhook import webhook_url
from worker.providers.errors import AuthFailed, JobRejected, NotFound
from worker.providers.http import ByteBudget
from worker.stage import Stage
from worker.store import JobStore
from worker.waits import WaitResult, Waits

PROVIDER = SPEC.name
PROJECT = "project"  # the provider id's name in the job record
EXPORT = "export"  # "requested" before the export call, "accepted" after it
REQUESTED, ACCEPTED = "requested", "accepted"
# Project states after an export reached AI Studios [INF: the states during a render are undocumented].
EXPORTING_STATES = frozenset({"exporting", "exported", "failed"})


@dataclass(frozen=True)
class AIStudios:
    """What an AI Studios stage talks to, and the account's budgets it spends."""

    client: AIStudiosClient
    settings: AIStudiosSettings
    renders: Pool
    rate: RateBudget
    webhook_base: str | None

    @classmethod
    def of(cls, ctx: Context) -> AIStudios:
        return cls(
            ctx.client(SPEC),
            ctx.section(SPEC),
            ctx.budgets.pool(RENDERS),
            ctx.budgets.rate(REQUESTS),
            ctx.settings.webhooks.url_for(PROVIDER),
        )

    def webhook_url(self, job_id: str) -> str | None:
        return webhook_url(self.webhook_base, self.settings.webhook_secret.get_secret_value(), job_id)


def _request(job: JobRecord) -> AvatarRequest:
    assert isinstance(job.request, AvatarRequest)
    return job.request


def start_render(job: JobRecord, store: JobStore, ai: AIStudios, gate: Gate) -> str:
    """Create the job's project once and export it once, holding a render slot from now until the
    render ends. Returns the project id."""
    request = _request(job)
    gate.hold(ai.renders)
    project_id = job.provider_ids.get(PROJECT)
    if not project_id:
        with gate.calling(ai.rate):
            created = ai.client.create_project(
                request.to_project(), export=False, resolution=request.resolution, webhook_url=None,
                workspace_id=ai.settings.workspace_id,
            )  # fmt: skip
        project_id = store.record_provider_id(job.id, PROJECT, created)
    export = job.provider_ids.get(EXPORT)
    if export == ACCEPTED:
        return project_id
    if export == REQUESTED:  # a run died after asking: did the request reach AI Studios?
        with gate.calling(ai.rate):
            progress = ai.client.progress(project_id)
        if _export_started(progress):
            store.set_provider_id(job.id, EXPORT, ACCEPTED)
            return project_id
    with gate.calling(ai.rate):
        store.set_provider_id(job.id, EXPORT, REQUESTED)  # once the turn is ours: the call goes now
        ai.client.export(
            project_id, resolution=request.resolution, webhook_url=ai.webhook_url(job.id),
            workspace_id=ai.settings.workspace_id,
        )  # fmt: skip
    store.set_provider_id(job.id, EXPORT, ACCEPTED)
    return project_id


def _export_started(progress: Progress) -> bool:
    return progress.progress > 0 or progress.download_url is not None or progress.state in EXPORTING_STATES


def follow_render(job: JobRecord, ai: AIStudios, waits: Waits, gate: Gate) -> WaitResult:
    """The render's end once the progress sweep or a webhook saw it. Until then the stage parks
    (``Wait``) and the job keeps its render slot; a failed or stalled render fails the job with the
    provider's message. A cancelled job's render is followed to its end (AI Studios documents no way to
    stop one), then the job stops."""
    settings = ai.settings
    project_id = job.provider_ids[PROJECT]
    exported = job.stages["create"].finished_at if "create" in job.stages else None
    followed = Followed(
        PROVIDER,
        settings.account,
        project_id,
        f"render of project {project_id}",
        ai.renders,
        settings.check_interval_s,
        settings.max_wait_s,
        "GENQ_AISTUDIOS__MAX_WAIT_S",
        exported or job.created_at,
    )

    def ask() -> WaitResult | str:
        with gate.calling(ai.rate):
            progress = ai.client.progress(project_id)
        if not progress.done:
            return f"render at {progress.progress:g}%"
        return WaitResult(state="ended", body=progress.model_dump(mode="json", by_alias=True))

    result = followed_end(followed, waits, gate, ask)
    if job.status is JobStatus.CANCELLED:
        raise Stop("job cancelled; its render ended")
    if result.body.get("failed"):  # a fresh replay makes a new project and renders it
        raise JobRejected(
            str(result.body.get("message") or "the render failed"),
            provider=PROVIDER,
            code=str(result.body.get("code") or "render_failed"),
            failed_provider_ids=(PROJECT, EXPORT),
        )
    return result


def fetch_video(
    job: JobRecord,
    ai: AIStudios,
    waits: Waits,
    gate: Gate,
    outputs: OutputStore,
    *,
    budget: ByteBudget | None = None,
) -> Output:
    """Stream the rendered video into the output store as ``<job id>/<name>`` (within the job's output
    ``budget``); a run again after a crash finds it there and fetches nothing (``store_output``). The
    URL comes from the end the sweep recorded; if that is gone or refused, progress is asked again."""
    request = _request(job)
    project_id = job.provider_ids[PROJECT]
    key = output_key(job.id, request.output_file_name or project_id, ".mp4")
    max_bytes = ai.settings.max_output_bytes
    result = waits.result(PROVIDER, project_id)
    url = result.body.get("downloadUrl") if result and result.state == "ended" else None

    def fetch(into: Sink[Stored]) -> Stored:
        if isinstance(url, str) and url:
            try:
                return ai.client.download(url, into, max_bytes=max_bytes, budget=budget)
            except (AuthFailed, NotFound):
                pass
        with gate.calling(ai.rate):
            progress = ai.client.progress(project_id)
        if not progress.download_url:
            raise JobRejected("the render ended without a downloadUrl", provider=PROVIDER)
        return ai.client.download(progress.download_url, into, max_bytes=max_bytes, budget=budget)

    return store_output(outputs, key, fetch, budget=budget).output()


def job_cost(job: JobRecord, ctx: Context, gate: Gate) -> float | None:
    """What the job will cost (``ProviderSpec.cost``): AI Studios gives no estimate before an export, so
    the account's price of one (``GENQ_AISTUDIOS__PRICE_USD``), or None when it is not set."""
    return ctx.section(SPEC).price_usd


@app.task(bind=True, base=Stage, name="genq.aistudios.create", stage="create")
def create(self: Stage, job_id: str) -> str:
    ctx = self.ctx
    return self.perform(job_id, lambda job, gate: start_render(job, ctx.store, AIStudios.of(ctx), gate))


@app.task(bind=True, base=Stage, name="genq.aistudios.wait", stage="wait", follows_cancelled=True)
def wait(self: Stage, job_id: str) -> str:
    ctx = self.ctx
    return self.perform(job_id, lambda job, gate: follow_render(job, AIStudios.of(ctx), ctx.waits, gate))


@app.task(bind=True, base=Stage, name="genq.aistudios.download", stage="download", transfer=True)
def download(self: Stage, job_id: str) -> str:
    ctx = self.ctx

    def finish(job: JobRecord, gate: Gate) -> list[Output]:
        budget = self.output_budget(job.id)
        return [fetch_video(job, AIStudios.of(ctx), ctx.waits, gate, ctx.outputs, budget=budget)]

    return self.perform(job_id, finish)
