"""The step graphs of sync.so records. A lipsync job: [upload] → [estimate] → create → wait → download
(``upload`` when inputs go through the media library, ``estimate`` when the job has a cost cap). A job of
a batch waits in its batch (the batch record's stages carry it) and then runs its own download. A batch
record: create → wait → collect, whose end pushes the download of each of its jobs that completed."""

from __future__ import annotations

from schemas import JobRecord, LipsyncRequest
from worker.graph import Graph, Step, clock, id_facts
from worker.providers.syncso.spec import BATCHES, GENERATIONS

BATCH = "batch"  # a batch job's data field naming its batch, and its stage while it waits in the batch


def _in_batch(job: JobRecord) -> bool:
    return BATCH in job.data


def _alone(job: JobRecord) -> bool:
    return not _in_batch(job)


def _uploads(job: JobRecord) -> bool:
    from worker.providers.syncso.inputs import library_fields  # noqa: PLC0415 (imports the settings)
    from worker.providers.syncso.spec import SPEC  # noqa: PLC0415
    from worker.settings import get_settings  # noqa: PLC0415

    assert isinstance(job.request, LipsyncRequest)
    return _alone(job) and bool(library_fields(job.request, SPEC.section(get_settings()).max_upload_bytes))


def _estimates(job: JobRecord) -> bool:
    assert isinstance(job.request, LipsyncRequest)
    return _alone(job) and job.request.max_cost_usd is not None


def _lipsync_facts(job: JobRecord) -> list[tuple[str, str]]:
    """Its generation, the batch it ran in, its inputs in the media library and its cost estimate."""
    from worker.providers.syncso.inputs import ASSETS  # noqa: PLC0415 (imports the worker's modules)
    from worker.providers.syncso.stages import ESTIMATE  # noqa: PLC0415

    assert isinstance(job.request, LipsyncRequest)
    facts = id_facts(job)
    if BATCH in job.data:
        batch = job.data[BATCH]
        facts.append((BATCH, f"{batch['id']} (its request_id: {batch['request_id']})"))
    facts += [(f"{field} asset", str(asset)) for field, asset in job.data.get(ASSETS, {}).items()]
    estimate, cap = job.data.get(ESTIMATE), job.request.max_cost_usd
    if estimate is not None:
        said = f"${float(estimate['usd']):.4f} for {estimate['frames']} frames"
        facts.append(("estimate", said + (f", max_cost_usd ${cap:.4f}" if cap is not None else "")))
    return facts


def _batch_facts(job: JobRecord) -> list[tuple[str, str]]:
    """The batch's id, and when its file was validated and its create sent (``12:03:04``)."""
    from worker.providers.syncso.batch import REQUESTED, VALIDATED  # noqa: PLC0415

    ids = job.provider_ids
    times = [f"file validated at {clock(ids[VALIDATED])}"] if VALIDATED in ids else []
    times += [f"create requested at {clock(ids[REQUESTED])}"] if REQUESTED in ids else []
    said = ", ".join(times)
    if BATCH in ids:  # the batch's id
        said = ids[BATCH] + (f" ({said})" if said else "")
    return ([(BATCH, said)] if said else []) + id_facts(job, said={BATCH, VALIDATED, REQUESTED})


LIPSYNC = Graph(
    "lipsync",
    (
        Step(BATCH, "genq.syncso.batch_collect", when=_in_batch, external=True),
        Step("upload", "genq.syncso.upload", when=_uploads),
        Step("estimate", "genq.syncso.estimate", when=_estimates),
        Step("create", "genq.syncso.create", when=_alone, spends=True),
        Step("wait", "genq.syncso.wait", when=_alone, releases=(GENERATIONS,)),
        Step("download", "genq.syncso.download"),
    ),
    facts=_lipsync_facts,
)

LIPSYNC_BATCH = Graph(
    "lipsync_batch",
    (
        Step("create", "genq.syncso.batch_create"),
        Step("wait", "genq.syncso.batch_wait", releases=(BATCHES,)),
        Step("collect", "genq.syncso.batch_collect"),
    ),
    facts=_batch_facts,
)

GRAPHS = (LIPSYNC, LIPSYNC_BATCH)
