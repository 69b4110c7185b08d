"""The enqueue-side commands of ``genq``: submit, status, watch, cancel, dead, replay.

Exit statuses are ``Exit``'s (README "Commands"); invalid input is one ``invalid: <where>: <problem>``
line per problem on stderr and status 2, never a traceback.
"""

from __future__ import annotations

import json
import math
import sys
import time
import unicodedata
from datetime import datetime
from enum import IntEnum
from typing import IO, Any

import click
import redis
from rich.console import Console
from rich.live import Live
from rich.table import Table

from producers.producer import InvalidRequest, JobNotFound, Producer
from schemas import JobRecord, JobStatus, ParkedWait
from schemas.caps import Caps, json_bytes, setting


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


def no_such_job(job_id: str) -> InvalidInput:
    return InvalidInput([f"{job_id}: no such job (records are kept 7 days after the job ends)"])


def _get(producer: Producer, job_id: str) -> JobRecord:
    try:
        return producer.get(job_id)
    except JobNotFound:
        raise no_such_job(job_id) from None


def _clock(moment: datetime) -> str:
    return moment.astimezone().strftime("%H:%M:%S")


def parked_detail(wait: ParkedWait) -> str:
    """What a parked stage waits for, since when, and when it is checked next."""
    check = f"next check {_clock(wait.next_check)}" if wait.next_check else "being checked"
    return f"parked: waiting for {wait.provider} {wait.provider_id} since {_clock(wait.since)}, {check}"


def render(record: JobRecord, parked: list[ParkedWait] | None = None) -> Table:
    """The job as a table: one row per stage, then its provider ids, outputs and error."""
    table = Table(title=f"job {record.id} ({record.kind}): {record.status.value}", title_justify="left")
    for column in ("stage", "status", "attempts", "detail"):
        table.add_column(column)
    waits = {wait.stage: wait for wait in parked or []}
    for name, stage in record.stages.items():
        detail = parked_detail(waits[name]) if name in waits else stage.detail or ""
        table.add_row(name, stage.status.value, str(stage.attempts), detail)
    for name, value in record.provider_ids.items():
        table.add_row(f"{name} id", value, "", "")
    for output in record.outputs:
        table.add_row("output", output.path, "", f"{output.bytes} bytes sha256 {output.sha256[:16]}…")
    if record.error:
        e = record.error
        where = " ".join(str(x) for x in (e.provider, e.status_code, e.code) if x is not None)
        table.add_row("error", f"[{where}]", "", e.message)
    return table


@click.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
@redis_option
def status(job_id: str, as_json: bool, redis_url: str) -> None:
    """Show a job's status, stages, provider ids, outputs and error."""
    producer = Producer(redis_url)
    record = _get(producer, job_id)
    parked = producer.parked(record)
    if as_json:
        data = record.model_dump(mode="json") | {"parked": [w.model_dump(mode="json") for w in parked]}
        click.echo(json.dumps(data, indent=2))
    else:
        Console().print(render(record, parked))


@click.command()
@click.argument("job_id")
@click.option("--timeout-s", type=float, default=None, help="Give up watching after this long (exit 4).")
@redis_option
def watch(job_id: str, timeout_s: float | None, redis_url: str) -> None:
    """Follow a job's stages live until it ends. Exit 0 if it succeeded, 1 if it failed or was
    cancelled, 4 if --timeout-s passed first (the job goes on)."""
    producer = Producer(redis_url)
    record = _get(producer, job_id)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with Live(render(record, producer.parked(record)), refresh_per_second=4) as live:
        while not record.is_terminal and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.25)
            record = _get(producer, job_id)
            live.update(render(record, producer.parked(record)))
    if not record.is_terminal:
        click.echo(f"genq: {job_id} is still {record.status.value} after {timeout_s:g} s", err=True)
        sys.exit(Exit.TIMED_OUT)
    sys.exit(Exit.OK if record.status is JobStatus.SUCCEEDED else Exit.ENDED_BADLY)


@click.command()
@click.argument("job_id")
@redis_option
def cancel(job_id: str, redis_url: str) -> None:
    """Cancel a job that has not ended: prints "<id> cancelled" (exit 0, also if it was cancelled before),
    or the status of a job that had already succeeded or failed (exit 1). Stages check before they act,
    so nothing more is created or downloaded for it. A provider job already started (a sync.so
    generation, an AI Studios render, an Aimi execution) cannot be called back: genq follows it to its
    end at the provider, holding its concurrency slot until then, and downloads nothing."""
    try:
        record = Producer(redis_url).cancel(job_id)
    except JobNotFound:
        raise no_such_job(job_id) from None
    click.echo(f"{job_id} {record.status.value}")
    sys.exit(Exit.OK if record.status is JobStatus.CANCELLED else Exit.ENDED_BADLY)


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
@click.argument("job_id")
@redis_option
def replay(job_id: str, redis_url: str) -> None:
    """Run a failed job again from its first stage; provider ids it already has are kept."""
    try:
        record = Producer(redis_url).replay(job_id)
    except JobNotFound:
        raise no_such_job(job_id) from None
    except InvalidRequest as exc:
        raise click.ClickException(exc.problems[0]) from None
    click.echo(f"{job_id} {record.status.value}")
