"""The step graph of a music job. Its width comes from the request (executions) and from the video's
size, which ``upload_init`` records (the number of chunks):

    upload_init → upload_chunk[c] (every chunk at once) → upload_complete
    → analyze_video → [analyze_audio] → generate_plan
    → execute[n] → wait[n] → download[n] (each execution on its own) → collect

``upload_complete`` runs once every chunk is acknowledged and ``collect`` once every execution's
output is downloaded: the joins are counted in the job record, which lives as long as the job.
"""

from __future__ import annotations

from schemas import JobRecord
from schemas.music import MusicRequest
from worker.graph import Fan, Graph, Step, id_facts
from worker.providers.aimi.spec import EXECUTIONS as EXECUTION_SLOTS


def _request(job: JobRecord) -> MusicRequest:
    assert isinstance(job.request, MusicRequest)
    return job.request


CHUNKS = Fan("chunk", lambda job: int(job.data["upload"]["chunks"]))
EXECUTIONS = Fan("execution", lambda job: _request(job).executions)


def _music_facts(job: JobRecord) -> list[tuple[str, str]]:
    """Its Aimi task, how many chunks of the video Aimi acknowledged, and each execution's id."""
    from worker.providers.aimi.steps import TASK, chunk_key, exec_key  # noqa: PLC0415 (imports the worker)

    ids, executions = job.provider_ids, range(_request(job).executions)
    chunks = range(int(job.data.get("upload", {}).get("chunks", 0)))
    facts = [(TASK, ids[TASK])] if TASK in ids else []
    acknowledged = sum(1 for i in chunks if chunk_key(i) in ids)
    facts += [("upload", f"{acknowledged} of {len(chunks)} chunks acknowledged")] if acknowledged else []
    facts += [(f"execution[{n}]", ids[exec_key(n)]) for n in executions if exec_key(n) in ids]
    return facts + id_facts(job, said={TASK, *map(chunk_key, chunks), *map(exec_key, executions)})


MUSIC = Graph(
    "music",
    (
        Step("upload_init", "genq.aimi.upload_init"),
        Step("upload_chunk", "genq.aimi.upload_chunk", fan=CHUNKS),
        Step("upload_complete", "genq.aimi.upload_complete"),
        Step("analyze_video", "genq.aimi.analyze_video"),
        Step("analyze_audio", "genq.aimi.analyze_audio", when=lambda job: _request(job).keep_original_audio),
        Step("generate_plan", "genq.aimi.generate_plan"),
        Step("execute", "genq.aimi.execute", fan=EXECUTIONS, spends=True),
        Step("wait", "genq.aimi.wait", fan=EXECUTIONS, releases=(EXECUTION_SLOTS,)),
        Step("download", "genq.aimi.download", fan=EXECUTIONS),
        Step("collect", "genq.aimi.collect"),
    ),
    facts=_music_facts,
)

GRAPHS = (MUSIC,)
