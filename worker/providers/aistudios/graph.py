"""The step graph of an avatar job: create and export → wait for the render → download."""

from __future__ import annotations

from schemas import JobRecord
from worker.graph import Graph, Step, clock, id_facts
from worker.providers.aistudios.spec import RENDERS


def _avatar_facts(job: JobRecord) -> list[tuple[str, str]]:
    """Its project, and how far its export got: asked for (its answer not seen), or accepted (when the
    create stage ended, which it does once the export is accepted)."""
    from worker.providers.aistudios.stages import ACCEPTED, EXPORT, PROJECT, REQUESTED  # noqa: PLC0415

    ids = job.provider_ids
    facts = [(PROJECT, ids[PROJECT])] if PROJECT in ids else []
    export, create = ids.get(EXPORT), job.stages.get("create")
    if export == ACCEPTED:
        at = f" at {clock(create.finished_at)}" if create is not None and create.finished_at else ""
        facts.append((EXPORT, f"accepted{at}"))
    elif export == REQUESTED:
        facts.append((EXPORT, "requested; not yet known to have reached AI Studios (the next run asks)"))
    elif export is not None:
        facts.append((EXPORT, export))
    return facts + id_facts(job, said={PROJECT, EXPORT})


AVATAR = Graph(
    "avatar",
    (
        Step("create", "genq.aistudios.create", spends=True),
        Step("wait", "genq.aistudios.wait", releases=(RENDERS,)),
        Step("download", "genq.aistudios.download"),
    ),
    facts=_avatar_facts,
)

GRAPHS = (AVATAR,)
