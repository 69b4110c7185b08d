"""The enqueue-side commands of ``genq``: submit, status, watch, cancel, dead, jobs, replay.

A pipeline's status is its graph: one row per run of a step (a *node*), with how it ended (the pipeline's
record keeps it) or else its job's own status, read with every other step job's in one round trip.

Exit statuses are ``Exit``'s (README "Commands"); invalid input is one ``invalid: <where>: <problem>``
line per problem on stderr and status 2, never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from pathlib import Path
from typing import IO, Any

import click
import redis
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from producers.listing import counts_line, listing_json, listing_view, parse_since, row
from producers.producer import InvalidRequest, JobNotFound, Producer, is_job_id
from schemas import (
    KINDS,
    JobError,
    JobRecord,
    JobStatus,
    LipsyncBatchRequest,
    Output,
    ParkedWait,
    StageStatus,
)
from schemas.caps import Caps, json_bytes, setting
from schemas.pipeline import Join, PipelineRequest, Shape, node_key
from storage import StoreError
from worker.graph import clock
from worker.providers.registry import graph_for


class Exit(IntEnum):
    """What a ``genq`` command's exit status means."""

    OK = 0
    ENDED_BADLY = 1  # the job failed or was cancelled, a cancel came after the end, a provider error
    INVALID = 2  # invalid input or usage (click's own usage errors are 2 as well)
    NO_REDIS = 3  # Redis could not be reached
    TIMED_OUT = 4  # ``genq watch`` stopped watching before the job ended


class InvalidInput(click.ClickException):
    """Refused input: one ``invalid: <where>: <problem>`` line per problem on stderr, exit status 2."""

    exit_code = Exit.INVALID

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems

    def show(self, file: IO[Any] | None = None) -> None:
        for problem in self.problems:
            click.echo(f"invalid: {one_line(problem)}", file=file, err=file is None)


def one_line(text: str) -> str:
    """``text`` with its control characters and line breaks escaped, so a problem is one line whatever
    the refused input held (field names and values can be any string)."""
    return "".join(ascii(c)[1:-1] if unicodedata.category(c) in {"Cc", "Zl", "Zp"} else c for c in text)


REDIS_URL_META = "genq.redis_url"  # where --redis-url leaves its value for the group's error line


def _remember_redis_url(ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        redis.ConnectionPool.from_url(value)  # parses only: nothing connects yet
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None  # the message never repeats the URL
    ctx.meta[REDIS_URL_META] = value
    return value


redis_option = click.option(
    "--redis-url",
    envvar="GENQ_REDIS_URL",
    default="redis://127.0.0.1:6379/0",
    show_default=True,
    callback=_remember_redis_url,
    help="The Redis of the job store and broker (env GENQ_REDIS_URL).",
)

NOTHING = "nothing to submit"


class _NotJson(ValueError):
    """A value Python's json module takes but JSON has not (NaN, Infinity, an overflowing number)."""


def _constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON value")


def _finite(literal: str) -> float:
    number = float(literal)
    if not math.isfinite(number):
        raise _NotJson(f"the number {literal[:40]} is out of range")
    return number


def _loads(text: str) -> Any:
    return json.loads(text, parse_constant=_constant, parse_float=_finite)


def _not_json(exc: Exception, line: int | None = None) -> str:
    """The problem line of a text that does not parse; ``line``: the JSON line it was (JSON lines)."""
    if isinstance(exc, json.JSONDecodeError):
        return f"line {line or exc.lineno}: not JSON: {exc.msg} (column {exc.colno})"
    where = "request" if line is None else f"line {line}"
    if isinstance(exc, RecursionError):
        return f"{where}: not JSON: nested too deeply"
    return f"{where}: not JSON: {exc}"  # _NotJson, or an integer too long to convert


def _json_lines(text: str, whole: Exception) -> list[Any]:
    """The values of a JSON-lines text; when even its first line is not JSON on its own, the text was
    meant as one document and ``whole`` (its own error) says what is wrong with it."""
    items: list[Any] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(_loads(line))
        except (ValueError, RecursionError) as exc:
            problem = _not_json(exc, number) if items else _not_json(whole)
            raise InvalidRequest([problem]) from None
    return items


def parse_requests(text: str) -> list[dict[str, Any]]:
    """The job requests of a submitted text: a JSON object, a JSON array of objects, or JSON lines.
    Raises ``InvalidRequest`` (never anything else) when the text is not JSON, holds nothing, or holds
    something other than objects; the requests themselves are checked by ``producers.validate``."""
    try:
        data = _loads(text)
    except json.JSONDecodeError as whole:
        data = _json_lines(text, whole) if text.strip() else []
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest([_not_json(exc)]) from None
    items: list[Any] = data if isinstance(data, list) else [data]
    if not items:
        raise InvalidRequest([NOTHING])
    problems = [problem for index, item in enumerate(items) if (problem := _item_problem(index, item))]
    if problems:
        raise InvalidRequest(problems)
    return items


def _item_problem(index: int, item: Any) -> str | None:
    if not isinstance(item, dict):
        return f"[{index}] request: must be a JSON object, not {_json_type(item)}"
    try:  # a \ud800 escape decodes to a lone surrogate: valid JSON, but no Unicode text holds it
        json.dumps(item, ensure_ascii=False).encode()
    except UnicodeEncodeError as exc:
        return f"[{index}] request: {exc.object[exc.start : exc.end]!a} is not Unicode text"
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}
    return names.get(type(value), type(value).__name__)


def load_requests(text: str) -> list[dict[str, Any]]:
    """``parse_requests`` for a command: what it refuses ends the command with status 2."""
    try:
        return parse_requests(text)
    except InvalidRequest as exc:
        raise InvalidInput(exc.problems) from None


def read_text(file: IO[Any], max_bytes: int | None = None) -> str:
    """The whole of FILE; bytes that are not UTF-8, or more than ``max_bytes`` of them (what one submit
    may hold, ``GENQ_CAPS__MAX_SUBMIT_BYTES``; the rest is not read), end the command with status 2."""
    try:
        text: str = file.read() if max_bytes is None else file.read(max_bytes + 1)
    except UnicodeDecodeError as exc:
        name = getattr(file, "name", "input")
        raise InvalidInput([f"{name}: not UTF-8 text (byte {exc.start}: {exc.reason})"]) from None
    # A character is at least a byte: more characters than the cap are more bytes too.
    if max_bytes is not None and (len(text) > max_bytes or json_bytes(text) > max_bytes):
        raise InvalidInput([f"submit: more than {max_bytes} bytes; at most {max_bytes} in one call "
                            f"({setting('max_submit_bytes')})"])  # fmt: skip
    return text


def _request_ids(requests: list[dict[str, Any]]) -> list[str] | None:
    """With --batch, a job may carry the batch file's ``request_id`` (every job or none)."""
    given = ["request_id" in r for r in requests]
    if not any(given):
        return None
    if not all(given):
        raise click.UsageError("give request_id on every job of the batch or on none")
    return [str(r.pop("request_id")) for r in requests]


@click.command()
@click.argument("file", type=click.File("r"))
@click.option("--idempotency-key", help="Submitting again with the same key returns the first job's id.")
@click.option(
    "--batch",
    is_flag=True,
    help="Send the jobs (20 to 500 lipsync jobs) to sync.so as one batch; each may carry a request_id.",
)
@redis_option
def submit(file: IO[Any], idempotency_key: str | None, batch: bool, redis_url: str) -> None:
    """Submit the job(s) in FILE (a JSON object, an array, or JSON lines; - reads stdin); print their ids.
    Exit 2, with one "invalid: <where>: <problem>" line per problem, if anything is invalid: then
    nothing is stored or enqueued."""
    caps = Caps.from_env()
    requests = load_requests(read_text(file, caps.max_submit_bytes))
    if idempotency_key is not None and (batch or len(requests) != 1):
        raise click.UsageError("--idempotency-key takes exactly one job")
    producer = Producer(redis_url, caps=caps)
    try:
        if batch:
            submitted = producer.submit_batch(requests, request_ids=_request_ids(requests))
            click.echo(f"batch {submitted.batch_id}: {len(submitted.job_ids)} jobs", err=True)
            ids = submitted.job_ids
        elif len(requests) == 1:
            ids = [producer.submit(requests[0], idempotency_key=idempotency_key)]
        else:
            ids = producer.submit_many(requests)
    except InvalidRequest as exc:
        raise InvalidInput(exc.problems) from None
    for job_id in ids:
        click.echo(job_id)
    for provider, settings in producer.unserved(requests).items():  # workers may start later: exit 0
        click.echo(f"genq: warning: no worker has registered an account for {provider} in Redis yet: its "
                   f"jobs wait in queue {provider} until workers with {' and '.join(settings)} set take them",
                   err=True)  # fmt: skip


def no_such_job(job_id: str) -> InvalidInput:
    return InvalidInput([f"{job_id}: no such job (none was submitted with this id, or its record expired: "
                         "records are kept 7 days after the job ends)"])  # fmt: skip


def _well_formed(_ctx: click.Context, _param: click.Parameter, job_id: str) -> str:
    """A JOB_ID argument: an id genq never makes is refused before Redis is asked."""
    if not is_job_id(job_id):
        raise InvalidInput([f"{job_id}: not a job id (28 lowercase hex characters, as genq submit prints)"])
    return job_id


job_id_argument = click.argument("job_id", callback=_well_formed)


def _get(producer: Producer, job_id: str, *, presign: bool = True) -> JobRecord:
    try:
        return producer.get(job_id, presign=presign)
    except JobNotFound:
        raise no_such_job(job_id) from None


def parked_detail(wait: ParkedWait) -> str:
    """What a parked stage waits for, since when, and when it is checked next."""
    check = f"next check {clock(wait.next_check)}" if wait.next_check else "being checked"
    return f"parked: waiting for {wait.provider} {wait.provider_id} since {clock(wait.since)}, {check}"


def where(output: Output) -> str:
    """Where an output is, as a person would fetch it: its ``s3://`` URL, else its path."""
    return output.store_url if output.store_url and not output.store_url.startswith("file:") else output.path


def error_text(error: JobError, *, status_code: bool = False) -> str:
    """``<provider> <code>: <message>`` (the provider and code where the error names them), with the
    provider's HTTP status before the code if asked: ``syncso 402 batch_plan_required: …``. A pipeline's
    rows leave the status out, as the pipeline's own error does when it names a step's."""
    parts = (error.provider, error.status_code if status_code else None, error.code)
    said = " ".join(str(x) for x in parts if x is not None)
    return f"{said}: {error.message}" if said else error.message


def error_said(error: JobError) -> str:
    """The error as a job's view shows it: ``error_text`` with the HTTP status, the stage it failed at
    and the provider's id of the refused request."""
    request = f"; the provider's request id {error.request_id}" if error.request_id else ""
    return f"{error_text(error, status_code=True)} (at {error.stage}{request})"


def output_said(output: Output) -> str:
    """Where the output is, whole, then its size and SHA-256."""
    return f"{where(output)} ({output.bytes} bytes, sha256 {output.sha256})"


def stage_order(record: JobRecord) -> list[str]:
    """The record's stages in the order the job runs them (its kind's step graph, ``Graph.ordered``)."""
    return graph_for(record.kind).ordered(record.stages)


def facts(record: JobRecord) -> list[tuple[str, str]]:
    """What the record says of the provider's side (its provider ids, as its kind's graph words them),
    its outputs and its error: (label, sentence) rows."""
    said = graph_for(record.kind).facts(record)
    if record.pipeline is not None:
        said.insert(0, ("pipeline", f"a step of pipeline {record.pipeline}"))
    if record.cost_usd is not None:
        of = "its steps' jobs together" if record.kind == "pipeline" else f"tenant {record.tenant}'s budget"
        said.append(("cost", f"${record.cost_usd:.2f} ({of})"))
    said += [("output", output_said(output)) for output in record.outputs]
    return said + ([("error", error_said(record.error))] if record.error is not None else [])


def render(record: JobRecord, parked: list[ParkedWait] | None = None) -> Group:
    """The job: its title, then one row per stage in the order the job runs them (status, attempts,
    detail), then a row for each of its ``facts``. Every cell is plain text, never console markup (a
    provider's ``[syncso 402 …]`` is shown as it is); the detail column folds rather than cuts."""
    title = Text(f"job {record.id} ({record.kind}): {record.status.value}", style="italic")
    table = Table()
    table.add_column("stage", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("attempts", no_wrap=True, justify="right")
    table.add_column("detail", overflow="fold")
    waits = {wait.stage: wait for wait in parked or []}
    for name in stage_order(record):
        stage = record.stages[name]
        detail = parked_detail(waits[name]) if name in waits else stage.detail or ""
        table.add_row(Text(name), Text(stage.status.value), Text(str(stage.attempts)), Text(detail))
    rows = facts(record)
    if rows and record.stages:
        table.add_section()
    for label, said in rows:
        table.add_row(Text(label), "", "", Text(said))
    return Group(title, table)


# --- pipelines -------------------------------------------------------------------------------------

# A step job's status as its node's state: queued is waiting for a worker; an ended job is its status.
_JOB_STATE = {JobStatus.QUEUED: "waiting", JobStatus.RUNNING: "running"}
TIMES = "\N{MULTIPLICATION SIGN}"  # between a fanned step and its count of runs
# A node's own run with no job yet is running (it is deciding or making its job) in these states.
_NODE_BUSY = frozenset(
    {StageStatus.RUNNING, StageStatus.RETRYING, StageStatus.THROTTLED, StageStatus.WAITING}
)


@dataclass(frozen=True)
class NodeView:
    """One run of a pipeline's step (``dub[1]``) as ``genq status`` shows it."""

    node: str
    state: str  # pending, running, waiting, succeeded, failed, cancelled or skipped
    job: str | None
    detail: str


def step_jobs(producer: Producer, record: JobRecord) -> dict[str, JobRecord | None]:
    """The records of a pipeline's step jobs by node, in one round trip (None: a record is gone)."""
    nodes = list(record.provider_ids)
    jobs = producer.get_many([record.provider_ids[n] for n in nodes], presign=False)
    return dict(zip(nodes, jobs, strict=True))


def graph_line(request: PipelineRequest, shape: Shape) -> str:
    """The steps in order and how they depend (README "Pipelines"): a step that follows just the one
    before it comes after an arrow, any other after the steps it follows (``avatar, dub → notify``); a
    fanned step shows its count of runs and its fan (``for_each``, ``per branch of dub``), a step's join
    is shown, and so are the pipeline's join and failure policy where they are not the defaults."""
    line, previous = "", None
    for step in shape.order:
        deps = shape.deps[step]
        if previous is not None and deps == [previous]:
            line += f" → {_step_said(request, shape, step)}"
        else:
            lead = f"{', '.join(deps)} → " if deps else ""
            line += ("; " if line else "") + lead + _step_said(request, shape, step)
        previous = step
    policy = [_join_said(request.join)] if request.join != "all" else []
    policy += [f"on_failure {request.on_failure}"] if request.on_failure != "fail_fast" else []
    return line + "".join(f" · {said}" for said in policy)


def _step_said(request: PipelineRequest, shape: Shape, step: str) -> str:
    origin = shape.fan[step]
    notes = [] if origin is None else ["for_each" if origin == step else f"per branch of {origin}"]
    join = request.steps[step].join
    notes += [_join_said(join)] if join is not None else []
    times = f" {TIMES}{shape.width[origin]}" if origin is not None else ""
    return step + times + (f" ({', '.join(notes)})" if notes else "")


def _join_said(join: Join) -> str:
    return "join all" if join == "all" else f"join at_least {join.at_least}"


def node_views(record: JobRecord, jobs: Mapping[str, JobRecord | None]) -> list[NodeView]:
    """Every node of the pipeline in graph order: how it ended (its recorded outcome), else its step job's
    own status, else pending."""
    assert isinstance(record.request, PipelineRequest)
    shape = record.request.shape()
    return [
        _node_view(record, shape, step, branch, jobs.get(node_key(step, branch)))
        for step in shape.order
        for branch in shape.branches(step)
    ]


def _node_view(
    record: JobRecord, shape: Shape, step: str, branch: int | None, job: JobRecord | None
) -> NodeView:
    key = node_key(step, branch)
    outcome = record.step_outcome(key)
    job_id = record.provider_ids.get(key) or (outcome.job if outcome is not None else None)
    if outcome is not None:
        detail = _ended(outcome.status, outcome.outputs, outcome.error, outcome.reason)
        return NodeView(key, outcome.status, job_id, detail)
    if job is not None:
        state = _JOB_STATE.get(job.status, job.status.value)
        detail = _ended(state, job.outputs, job.error) if job.is_terminal else _current(job)
        return NodeView(key, state, job_id, detail)
    if job_id is not None:
        return NodeView(key, "pending", job_id, "its job's record is gone")
    if record.is_terminal:
        return NodeView(key, "pending", None, f"not run: the pipeline {record.status.value}")
    own = record.stages.get(key)
    if own is not None and own.status in _NODE_BUSY:
        return NodeView(key, "running", None, own.detail or "")
    waits = [n.key for n in shape.needs(step, branch) if record.step_outcome(n.key) is None]
    return NodeView(key, "pending", None, f"waits for {', '.join(waits)}" if waits else "")


def _ended(state: str, outputs: list[Output], error: JobError | None, reason: str | None = None) -> str:
    """The detail of an ended node: its outputs, whole, one a line; its error; why it was skipped."""
    if state == "succeeded":
        return "\n".join(where(o) for o in outputs)
    return error_text(error) if error is not None else reason or ""


def _current(job: JobRecord) -> str:
    """The stage(s) a step job that has not ended is at (``wait: waiting for syncso generation …``)."""
    active = [
        f"{name}: {state.detail or state.status.value}"
        for name in stage_order(job)
        if (state := job.stages[name]).status not in (StageStatus.DONE, StageStatus.PENDING)
    ]
    return "; ".join(active) or job.status.value


def render_pipeline(record: JobRecord, jobs: Mapping[str, JobRecord | None]) -> Group:
    """The pipeline: its title, the graph's line, one row per node (state, job id, detail), then its own
    outputs and error."""
    assert isinstance(record.request, PipelineRequest)
    title = Text(f"job {record.id} (pipeline): {record.status.value}", style="italic")
    graph = Text(graph_line(record.request, record.request.shape()))
    table = Table()
    table.add_column("node", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("job", no_wrap=True, min_width=len(record.id))
    table.add_column("detail", overflow="fold")
    for view in node_views(record, jobs):  # plain text, as the job view's cells
        table.add_row(Text(view.node), Text(view.state), Text(view.job or ""), Text(view.detail))
    if record.outputs or record.error:
        table.add_section()
    for output in record.outputs:
        table.add_row("output", "", "", Text(where(output)))
    if record.error is not None:
        table.add_row("error", "", "", Text(error_text(record.error)))
    return Group(title, graph, table)


UNBOUNDED = 1_000_000  # columns: a width no view needs


def show(console: Console, renderable: RenderableType) -> None:
    """Print ``renderable``; to a file or a pipe, as wide as it needs, so no path or id is cut or folded."""
    if not console.is_terminal:
        unbounded = console.options.update_width(UNBOUNDED)
        width = max(console.width, console.measure(renderable, options=unbounded).maximum)
        console = Console(file=console.file, width=width)
    console.print(renderable)


def _view(producer: Producer, record: JobRecord) -> RenderableType:
    if isinstance(record.request, PipelineRequest):
        return render_pipeline(record, step_jobs(producer, record))
    return render(record, producer.parked(record))


@click.command()
@job_id_argument
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
@redis_option
def status(job_id: str, as_json: bool, redis_url: str) -> None:
    """Show a job's status, stages, provider ids, outputs and error; a pipeline's, each run of a step
    with its state, job and detail."""
    producer = Producer(redis_url)
    record = _get(producer, job_id)
    if not as_json:
        members = member_counts(producer, record)
        if members is not None:
            click.echo(members)
        show(Console(), _view(producer, record))
        return
    parked = producer.parked(record)
    data = record.model_dump(mode="json") | {"parked": [w.model_dump(mode="json") for w in parked]}
    if isinstance(record.request, PipelineRequest):
        views = node_views(record, step_jobs(producer, record))
        data["steps"] = {v.node: {"state": v.state, "job": v.job} for v in views}
    click.echo(json.dumps(data, indent=2))


@click.command()
@job_id_argument
@click.option("--timeout-s", type=float, default=None, help="Give up watching after this long (exit 4).")
@redis_option
def watch(job_id: str, timeout_s: float | None, redis_url: str) -> None:
    """Follow a job's stages (a pipeline's steps) live until it ends. Exit 0 if it succeeded, 1 if it
    failed or was cancelled, 4 if --timeout-s passed first (the job goes on)."""
    producer = Producer(redis_url)
    record = _get(producer, job_id)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    console = Console()
    if console.is_terminal:
        with Live(_view(producer, record), console=console, refresh_per_second=4) as live:
            while not record.is_terminal and (deadline is None or time.monotonic() < deadline):
                time.sleep(0.25)
                record = _get(producer, job_id)
                live.update(_view(producer, record))
    else:  # a file or a pipe is shown the last view only, whole
        while not record.is_terminal and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.25)
            record = _get(producer, job_id)
        show(console, _view(producer, record))
    if not record.is_terminal:
        click.echo(f"genq: {job_id} is still {record.status.value} after {timeout_s:g} s", err=True)
        sys.exit(Exit.TIMED_OUT)
    sys.exit(Exit.OK if record.status is JobStatus.SUCCEEDED else Exit.ENDED_BADLY)


@click.command()
@job_id_argument
@redis_option
def cancel(job_id: str, redis_url: str) -> None:
    """Cancel a job that has not ended: prints "<id> cancelled" (exit 0, also if it was cancelled before),
    or the status of a job that had already succeeded or failed (exit 1). Stages check before they act,
    so nothing more is created or downloaded for it. A provider job already started (a sync.so
    generation, an AI Studios render, an Aimi execution) cannot be called back: genq follows it to its
    end at the provider, holding its concurrency slot until then, and downloads nothing. A pipeline's
    step jobs that had not ended are cancelled with it (how many: on stderr)."""
    producer = Producer(redis_url)
    try:
        before = producer.get(job_id, presign=False)
        open_steps = _open_steps(producer, before)
        record = producer.cancel(job_id)
    except JobNotFound:
        raise no_such_job(job_id) from None
    click.echo(f"{job_id} {record.status.value}")
    if open_steps:
        now = step_jobs(producer, record)
        count = sum(1 for node in open_steps if (job := now.get(node)) and job.status is JobStatus.CANCELLED)
        click.echo(
            f"genq: cancelled {count} step job{'s' if count != 1 else ''} of pipeline {job_id}", err=True
        )
    sys.exit(Exit.OK if record.status is JobStatus.CANCELLED else Exit.ENDED_BADLY)


def _open_steps(producer: Producer, record: JobRecord) -> list[str]:
    """The nodes of a pipeline that has not ended whose step jobs have not ended either."""
    if not isinstance(record.request, PipelineRequest) or record.is_terminal:
        return []
    return [
        node for node, job in step_jobs(producer, record).items() if job is not None and not job.is_terminal
    ]


@click.command()
@click.option("--limit", default=100, show_default=True, help="How many, newest first.")
@redis_option
def dead(limit: int, redis_url: str) -> None:
    """List the jobs whose retries ran out (the dead-letter set), with their last error."""
    records = Producer(redis_url).dead_letters(limit)
    table = Table(title=f"dead letters: {len(records)}", title_justify="left")
    table.add_column("job", no_wrap=True)
    table.add_column("kind")
    table.add_column("failed at")
    table.add_column("error", overflow="fold")
    for r in records:
        error = f"[{r.error.stage}] {r.error.message}" if r.error else ""
        table.add_row(
            r.id, r.kind, r.finished_at.isoformat(timespec="seconds") if r.finished_at else "", error
        )
    Console().print(table)


@click.command()
@click.option("--status", type=click.Choice([s.value for s in JobStatus]), help="Only jobs of this status.")
@click.option("--kind", type=click.Choice(list(KINDS)), help="Only jobs of this kind.")
@click.option("--tenant", help="Only jobs of this tenant.")
@click.option("--since", help="Only jobs created since: a time ago (30s, 10m, 2h, 1d, 1w) or an ISO time.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="How many.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts and rows as JSON.")
@redis_option
def jobs(
    *,
    status: str | None,
    kind: str | None,
    tenant: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
    redis_url: str,
) -> None:
    """List jobs newest first, from the jobs index, with how many jobs each status has among those created
    since --since (of every kind and tenant). Each row: id, kind, status, tenant, created, how long it took
    (or has taken so far), and the error code of a failed job or the stage a running one is at."""
    try:
        ago = parse_since(since) if since is not None else None
    except ValueError as exc:
        raise InvalidInput([f"--since: {exc}"]) from None
    now = datetime.now(UTC)
    start = now - ago if isinstance(ago, timedelta) else ago
    found = Producer(redis_url).jobs(status=status, kind=kind, tenant=tenant, since=start, limit=limit)
    rows = [row(record, now) for record in found.jobs]
    if as_json:
        click.echo(json.dumps(listing_json(found, rows, start), indent=2))
        return
    heading = counts_line(found, since, filtered=kind is not None or tenant is not None)
    show(Console(), listing_view(rows, heading))


def member_counts(producer: Producer, record: JobRecord) -> str | None:
    """A batch's jobs or a pipeline's step jobs counted by status, read in one round trip
    (``20 jobs: 20 succeeded, 0 failed, 0 running``); None for a job that has no members."""
    if isinstance(record.request, LipsyncBatchRequest):
        ids, noun = list(record.request.jobs), "jobs"
    elif isinstance(record.request, PipelineRequest):
        ids, noun = list(record.provider_ids.values()), "step jobs"
    else:
        return None
    members = producer.get_many(ids, presign=False)
    counts = Counter(member.status for member in members if member is not None)
    shown = [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.RUNNING]
    shown += [s for s in (JobStatus.QUEUED, JobStatus.CANCELLED) if counts[s]]
    said = [f"{counts[s]} {s.value}" for s in shown] + (
        [f"{members.count(None)} gone"] if None in members else []
    )
    return f"{len(ids)} {noun}: {', '.join(said)}"


@click.command()
@job_id_argument
@click.option("--fresh", is_flag=True, help="Make a new provider job in place of the one that failed at the "
              "provider (it costs again); everything else the job has is kept.")  # fmt: skip
@redis_option
def replay(job_id: str, fresh: bool, redis_url: str) -> None:
    """Run a failed job again from its first stage; provider ids it already has are kept, unless --fresh
    drops the provider job that failed at the provider."""
    producer = Producer(redis_url)
    try:
        before = producer.get(job_id, presign=False)
        producer.replay(job_id, fresh=fresh)
    except JobNotFound:
        raise no_such_job(job_id) from None
    except InvalidRequest as exc:
        raise click.ClickException(exc.problems[0]) from None
    # What the replay did; a worker may have started the job already by the time it is read again.
    click.echo(f"{job_id} {JobStatus.QUEUED.value}")
    if fresh and before.error is not None and before.error.failed_provider_ids:
        click.echo(fresh_note(before, before.error), err=True)


def fresh_note(before: JobRecord, error: JobError) -> str:
    """What ``genq replay --fresh`` replaced, and what the new provider job costs where genq knows."""
    name = error.failed_provider_ids[0]
    failed = f"{name} {before.provider_ids.get(name, '(none recorded)')}"
    estimate = before.data.get("estimate")  # a lipsync job with max_cost_usd: sync.so's estimate
    if isinstance(estimate, dict) and "usd" in estimate:
        frames = f", {float(estimate['frames']):g} frames" if estimate.get("frames") else ""
        cost = f": {error.provider} estimated ${float(estimate['usd']):.4f}{frames}"
    else:
        cost = " (genq has no estimate of its cost)"
    return (f"genq: {before.id}: a new provider job replaces {failed}, which failed at {error.provider}, and "
            f"is paid for again{cost}")  # fmt: skip


@click.command()
@job_id_argument
@click.option("-o", "--output-dir", "output_dir", type=click.Path(file_okay=False, path_type=Path),
              default=".", show_default=True, help="Where the files go (created if need be).")  # fmt: skip
@redis_option
def get(job_id: str, output_dir: Path, redis_url: str) -> None:
    """Download a job's outputs into a directory, from wherever its output store is (an S3 bucket, with
    this host's GENQ_OUTPUTS__ settings; a file store on this host). Each file's size and SHA-256 are
    checked against the job record before it takes its name; a name already taken by an earlier output
    (a pipeline's outputs come from several jobs) is prefixed with the id of the job that made it. Prints
    one path per output; exit 1 if the job has no outputs or one cannot be read or does not match."""
    producer = Producer(redis_url)
    record = _get(producer, job_id, presign=False)
    if not record.outputs:
        click.echo(f"genq: job {job_id} has no outputs (it is {record.status.value})", err=True)
        sys.exit(Exit.ENDED_BADLY)
    output_dir.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    for n, output in enumerate(record.outputs):
        name = Path(output.path).name
        name = name if name not in ("", ".", "..") else f"output_{n}"
        if name in taken:
            name = f"{Path(output.path).parent.name}-{name}"
        taken.add(name)
        dest = output_dir / name
        try:
            _fetch(producer, output, dest)
        except (StoreError, OSError, ValueError) as exc:
            message = exc.message if isinstance(exc, StoreError) else str(exc)
            click.echo(f"genq: {output.store_url or output.path}: {message}", err=True)
            sys.exit(Exit.ENDED_BADLY)
        click.echo(str(dest))


def _fetch(producer: Producer, output: Output, dest: Path) -> None:
    """Write ``output`` to ``dest`` whole, or not at all: through ``<dest>.part``, checked, renamed."""
    part = dest.with_name(dest.name + ".part")
    digest, count = hashlib.sha256(), 0
    try:
        with part.open("wb") as fh:
            for chunk in producer.read_output(output):
                digest.update(chunk)
                count += len(chunk)
                fh.write(chunk)
        if (count, digest.hexdigest()) != (output.bytes, output.sha256):
            raise ValueError(f"read {count} bytes, sha256 {digest.hexdigest()}; the record says "
                             f"{output.bytes} bytes, sha256 {output.sha256}")  # fmt: skip
        part.replace(dest)
    finally:
        part.unlink(missing_ok=True)
