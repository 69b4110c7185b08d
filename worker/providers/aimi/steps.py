"""What each Aimi Sync stage does, as plain functions (``stages.py`` wraps them in Celery tasks).

Everything a stage learns is recorded in the job record before the next step relies on it, so a
redelivered stage resumes: the upload's ``taskid`` and chunking (``provider_ids["task"]``,
``data["upload"]``), each acknowledged chunk (``provider_ids["chunk[i]"]``), the analyses and the plan
(``data``), each execution id (``provider_ids["exec[n]"]``) and each output (``data["output[n]"]``).
"""

from __future__ import annotations

import math
import mimetypes
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas import JobRecord, JobStatus, Output, is_local_path
from schemas.music import MusicRequest
from storage import OutputStore, Sink, Stored
from worker.context import Context
from worker.follow import Followed, recorded_end
from worker.handoff import Roots
from worker.inputs import open_local
from worker.limits import Gate, Pool, RateBudget
from worker.names import output_key as store_key
from worker.outcomes import Stop
from worker.output_store import store_output
from worker.providers.aimi.client import AimiClient
from worker.providers.aimi.settings import AimiSettings
from worker.providers.aimi.source import SourceReader
from worker.providers.aimi.spec import EXECUTIONS, REQUESTS, SPEC
from worker.providers.errors import BadRequest, JobRejected, SourceRefused
from worker.providers.http import ByteBudget
from worker.store import JobStore
from worker.waits import Waits

PROVIDER = SPEC.name
TASK = "task"  # the Aimi taskid, one through the whole flow
READ_BYTES = 1024 * 1024  # a chunk is streamed from its source in pieces of this size


def chunk_key(index: int) -> str:
    return f"chunk[{index}]"


def exec_key(n: int) -> str:
    return f"exec[{n}]"


def output_key(n: int) -> str:
    return f"output[{n}]"


@dataclass(frozen=True)
class Aimi:
    """What an Aimi stage talks to, and the account's budgets it spends; ``sources`` reads source videos
    through the egress policy, outside every Aimi budget."""

    client: AimiClient
    settings: AimiSettings
    executions: Pool
    rate: RateBudget
    roots: Roots  # where local videos may be read (GENQ_INPUT_ROOTS, or handed on by a pipeline)
    sources: SourceReader  # what reads a video's URL (the egress policy)

    @classmethod
    def of(cls, ctx: Context) -> Aimi:
        return cls(
            ctx.client(SPEC),
            ctx.section(SPEC),
            ctx.budgets.pool(EXECUTIONS),
            ctx.budgets.rate(REQUESTS),
            ctx.roots,
            SourceReader(ctx.egress),
        )


def _request(job: JobRecord) -> MusicRequest:
    assert isinstance(job.request, MusicRequest)
    return job.request


def _refused(message: str) -> BadRequest:
    return BadRequest(message, provider=PROVIDER)


def _source_size(job: JobRecord, aimi: Aimi) -> int:
    source = _request(job).video
    if is_local_path(source):
        with open_local(source, aimi.roots.of(job, "video"), field="video") as file:
            return os.fstat(file.fileno()).st_size
    return aimi.sources.content_length(source)


def _read_range(job: JobRecord, start: int, end: int, aimi: Aimi) -> Iterator[bytes]:
    """Bytes ``start..end`` (inclusive) of the video, in pieces: a seek into a local file (opened once,
    under the input roots: ``open_local``), or an HTTP Range request to its URL. No worker ever holds
    more than a piece of it."""
    source = _request(job).video
    if not is_local_path(source):
        yield from aimi.sources.fetch_range(source, start, end)
        return
    try:
        with open_local(source, aimi.roots.of(job, "video"), field="video") as file:
            file.seek(start)
            left = end - start + 1
            while left > 0:
                piece = file.read(min(READ_BYTES, left))
                if not piece:
                    raise _refused(f"video: {source} is shorter than when its upload began")
                left -= len(piece)
                yield piece
    except OSError as exc:
        raise _refused(f"video: cannot read {source}: {exc.strerror}") from None


def start_upload(job: JobRecord, store: JobStore, aimi: Aimi, gate: Gate) -> int:
    """Start the video's upload once (its ``taskid`` recorded before anything else) and return how
    many chunks it takes (each at most the account's chunk limit)."""
    request = _request(job)
    upload: dict[str, Any] | None = job.data.get("upload")
    if upload is None:
        size = _source_size(job, aimi)
        if size <= 0:
            raise _refused(f"video: {request.video} is empty")
        if size > aimi.settings.max_source_bytes:  # before a chunk is cut, or Aimi is told of it
            raise SourceRefused(f"video: {size} bytes, over GENQ_AIMI__MAX_SOURCE_BYTES "
                                f"({aimi.settings.max_source_bytes})", code="source_too_large")  # fmt: skip
        name = Path(request.video.split("?", 1)[0]).name or "video.mp4"
        file_type = mimetypes.guess_type(name)[0] or "video/mp4"
        taskid = job.provider_ids.get(TASK)
        chunk_bytes = aimi.settings.max_chunk_bytes
        if not taskid:
            with gate.calling(aimi.rate):
                ticket = aimi.client.init_upload(name, size, file_type)
            taskid = store.record_provider_id(job.id, TASK, ticket.taskid)
            chunk_bytes = min(chunk_bytes, ticket.max_chunk_bytes or chunk_bytes)
        upload = {"size": size, "chunk_bytes": chunk_bytes, "chunks": math.ceil(size / chunk_bytes)}
        store.set_data(job.id, "upload", upload)
    return int(upload["chunks"])


def send_chunk(job: JobRecord, store: JobStore, aimi: Aimi, gate: Gate, index: int) -> None:
    """Send chunk ``index`` unless Aimi acknowledged it before; record the acknowledgement."""
    if job.provider_ids.get(chunk_key(index)):
        return
    upload = job.data["upload"]
    start = index * int(upload["chunk_bytes"])
    end = min(int(upload["size"]), start + int(upload["chunk_bytes"])) - 1
    with gate.calling(aimi.rate):
        content = _read_range(job, start, end, aimi)
        aimi.client.upload_chunk(job.provider_ids[TASK], index, content, end - start + 1)
    store.set_provider_id(job.id, chunk_key(index), "acknowledged")


def complete_upload(job: JobRecord, store: JobStore, aimi: Aimi, gate: Gate) -> None:
    """Join the chunks at Aimi (told how many there are), once."""
    if "uploaded" in job.data:
        return
    upload = job.data["upload"]
    missing = [i for i in range(int(upload["chunks"])) if not job.provider_ids.get(chunk_key(i))]
    if missing:  # the join ran before every chunk was acknowledged: a bug, not the provider's
        raise JobRejected(
            f"chunks {missing} were not acknowledged", provider=PROVIDER, code="genq_upload_incomplete"
        )
    with gate.calling(aimi.rate):
        done = aimi.client.complete_upload(job.provider_ids[TASK], int(upload["chunks"]))
    store.set_data(job.id, "uploaded", {"size": done.size, "sha256": done.sha256})


def analyze(job: JobRecord, store: JobStore, aimi: Aimi, gate: Gate, what: str) -> None:
    """Video (or audio) analysis, once: the result is kept for plan generation."""
    name = f"{what}_analysis"
    if name in job.data:
        return
    taskid = job.provider_ids[TASK]
    with gate.calling(aimi.rate):
        result = aimi.client.analyze_video(taskid) if what == "video" else aimi.client.analyze_audio(taskid)
    store.set_data(job.id, name, result)


def make_plan(job: JobRecord, store: JobStore, aimi: Aimi, gate: Gate) -> None:
    """Generate the plan once, apply the request's edit, check it, and keep both plans."""
    request = _request(job)
    if "plan" in job.data:
        return
    generated = job.data.get("generated_plan")
    if generated is None:
        with gate.calling(aimi.rate):
            generated = aimi.client.generate_plan(
                job.provider_ids[TASK], job.data["video_analysis"], request.generate_options(),
                audio_analysis=job.data.get("audio_analysis"),
            )  # fmt: skip
        store.set_data(job.id, "generated_plan", generated)
    try:
        plan = request.plan_to_execute(generated)
    except ValueError as exc:  # PatchError included: the edit does not fit the plan Aimi generated
        raise JobRejected(
            f"the plan edit cannot be applied: {exc}", provider=PROVIDER, code="genq_plan_invalid"
        ) from None
    store.set_data(job.id, "plan", plan)


def start_execution(job: JobRecord, store: JobStore, aimi: Aimi, gate: Gate, n: int) -> None:
    """Start execution ``n`` of the plan once, holding one slot of the account's executions from now
    until it ends."""
    if job.provider_ids.get(exec_key(n)):
        return
    gate.hold(aimi.executions)
    with gate.calling(aimi.rate, aimi.executions):
        execid = aimi.client.execute(job.provider_ids[TASK], job.data["plan"])
    store.record_provider_id(job.id, exec_key(n), execid)


def follow_execution(job: JobRecord, aimi: Aimi, waits: Waits, gate: Gate, n: int) -> None:
    """Park until the status sweep sees execution ``n`` end (checked no more often than Aimi allows);
    its slot is kept until then. An execution in ``error`` fails the job with Aimi's message and the
    report's URL."""
    execid = job.provider_ids[exec_key(n)]
    started = job.stages.get(f"execute[{n}]")
    since = (started.finished_at if started else None) or job.created_at
    settings = aimi.settings
    what = f"execution {execid}"
    followed = Followed(
        PROVIDER, settings.account, execid, what, aimi.executions, settings.check_interval_s,
        settings.max_wait_s, "GENQ_AIMI__MAX_WAIT_S", since,
    )  # fmt: skip
    result = recorded_end(followed, waits, gate)
    gate.let_go(aimi.executions)
    if job.status is JobStatus.CANCELLED:
        raise Stop(f"job cancelled; execution {n} ended")
    status = result.body.get("status")
    if result.state != "ended" or status != "finished":
        report = result.body.get("url") or result.body.get("videourl")
        message = str(result.body.get("message") or f"execution ended {status}")
        raise JobRejected(f"{message} (report: {report})" if report else message, provider=PROVIDER,
                          code=str(status or result.state), failed_provider_ids=(exec_key(n),))  # fmt: skip


def fetch_output(
    job: JobRecord,
    store: JobStore,
    aimi: Aimi,
    waits: Waits,
    outputs: OutputStore,
    *,
    n: int,
    budget: ByteBudget | None = None,
) -> None:
    """Stream execution ``n``'s result (a muxed video, or a zip with stems) into the output store and
    record it; a run again after a crash finds it there and fetches nothing (``store_output``). Every
    execution's download spends the one output ``budget`` of the job."""
    request = _request(job)
    execid = job.provider_ids[exec_key(n)]
    result = waits.result(PROVIDER, execid)
    url = result.body.get("url") if result else None
    if not isinstance(url, str) or not url:
        raise JobRejected(f"execution {execid} finished without a download URL", provider=PROVIDER)
    key = store_key(job.id, f"{request.output_file_name or 'music'}_{n}", request.output_suffix)
    max_bytes = aimi.settings.max_output_bytes

    def fetch(into: Sink[Stored]) -> Stored:
        return aimi.client.download(url, into, max_bytes=max_bytes, budget=budget)

    output = store_output(outputs, key, fetch, budget=budget).output()
    store.set_data(job.id, output_key(n), output.model_dump(mode="json"))


def collect(job: JobRecord) -> list[Output]:
    """Every execution has its output: the job succeeds with them, in execution order."""
    count = _request(job).executions
    missing = [n for n in range(count) if output_key(n) not in job.data]
    if missing:
        raise JobRejected(
            f"executions {missing} have no output", provider=PROVIDER, code="genq_outputs_missing"
        )
    return [Output.model_validate(job.data[output_key(n)]) for n in range(count)]
