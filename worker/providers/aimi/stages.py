"""Aimi Sync music stages. Each task is thin: the work is in the plain functions of ``steps``; the order
they run in is the music graph (``graph.py``).

A job's parallel parts are branches of one stage (``upload_chunk[2]``, ``execute[1]``): each has its own
state in the job record and, for executions, its own slot of the account's pool (holder
``<job id>:<n>``). Joins read what the branches recorded in the job record, not task results.
"""

from __future__ import annotations

from schemas import JobRecord, MusicRequest
from worker.app import app
from worker.context import Context
from worker.limits import Gate
from worker.providers.aimi import steps
from worker.providers.aimi.spec import SPEC
from worker.providers.aimi.steps import Aimi
from worker.stage import Stage


def job_cost(job: JobRecord, ctx: Context, gate: Gate) -> float | None:
    """What the job will cost (``ProviderSpec.cost``): Aimi gives no estimate, so the account's price of
    an execution (``GENQ_AIMI__PRICE_USD``) times the job's executions, or None when it is not set."""
    price = ctx.section(SPEC).price_usd
    assert isinstance(job.request, MusicRequest)
    return None if price is None else price * job.request.executions


@app.task(bind=True, base=Stage, name="genq.aimi.upload_init", stage="upload_init")
def upload_init(self: Stage, job_id: str) -> str:
    ctx = self.ctx
    return self.perform(job_id, lambda job, gate: steps.start_upload(job, ctx.store, Aimi.of(ctx), gate))


@app.task(bind=True, base=Stage, name="genq.aimi.upload_chunk", stage="upload_chunk", transfer=True)
def upload_chunk(self: Stage, job_id: str, index: int) -> str:
    ctx = self.ctx
    return self.perform(job_id, lambda job, gate: steps.send_chunk(job, ctx.store, Aimi.of(ctx), gate, index))


@app.task(bind=True, base=Stage, name="genq.aimi.upload_complete", stage="upload_complete")
def upload_complete(self: Stage, job_id: str) -> str:
    ctx = self.ctx
    return self.perform(job_id, lambda job, gate: steps.complete_upload(job, ctx.store, Aimi.of(ctx), gate))


@app.task(bind=True, base=Stage, name="genq.aimi.analyze_video", stage="analyze_video")
def analyze_video(self: Stage, job_id: str) -> str:
    ctx = self.ctx
    return self.perform(job_id, lambda job, gate: steps.analyze(job, ctx.store, Aimi.of(ctx), gate, "video"))


@app.task(bind=True, base=Stage, name="genq.aimi.analyze_audio", stage="analyze_audio")
def analyze_audio(self: Stage, job_id: str) -> str:
    ctx = self.ctx
    return self.perform(job_id, lambda job, gate: steps.analyze(job, ctx.store, Aimi.of(ctx), gate, "audio"))


@app.task(bind=True, base=Stage, name="genq.aimi.generate_plan", stage="generate_plan")
def generate_plan(self: Stage, job_id: str) -> str:
    ctx = self.ctx
    return self.perform(job_id, lambda job, gate: steps.make_plan(job, ctx.store, Aimi.of(ctx), gate))


@app.task(bind=True, base=Stage, name="genq.aimi.execute", stage="execute")
def execute(self: Stage, job_id: str, n: int) -> str:
    ctx = self.ctx
    return self.perform(
        job_id, lambda job, gate: steps.start_execution(job, ctx.store, Aimi.of(ctx), gate, n)
    )


@app.task(bind=True, base=Stage, name="genq.aimi.wait", stage="wait", follows_cancelled=True)
def wait(self: Stage, job_id: str, n: int) -> str:
    ctx = self.ctx
    return self.perform(
        job_id, lambda job, gate: steps.follow_execution(job, Aimi.of(ctx), ctx.waits, gate, n)
    )


@app.task(bind=True, base=Stage, name="genq.aimi.download", stage="download", transfer=True)
def download(self: Stage, job_id: str, n: int) -> str:
    ctx = self.ctx
    budget = self.output_budget(job_id)
    return self.perform(
        job_id,
        lambda job, gate: steps.fetch_output(
            job, ctx.store, Aimi.of(ctx), ctx.waits, ctx.outputs, n=n, budget=budget
        ),
    )


@app.task(bind=True, base=Stage, name="genq.aimi.collect", stage="collect")
def collect(self: Stage, job_id: str) -> str:
    return self.perform(job_id, lambda job, gate: steps.collect(job))
