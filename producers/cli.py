"""The enqueue-side commands of ``genq``: submit, status, watch, cancel."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from typing import Any

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table

from producers.producer import InvalidRequest, JobNotFound, Producer
from schemas import JobRecord, JobStatus, ParkedWait

redis_option = click.option(
    "--redis-url",
    envvar="GENQ_REDIS_URL",
    default="redis://127.0.0.1:6379/0",
    show_default=True,
    help="The Redis of the job store and broker (env GENQ_REDIS_URL).",
)


def load_requests(text: str) -> list[Any]:
    """A JSON object, a JSON array of objects, or JSON lines."""
    text = text.strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise click.ClickException(f"not JSON: {exc}") from None
    return data if isinstance(data, list) else [data]


def _request_ids(requests: list[Any]) -> list[str] | None:
    """With --batch, a job may carry the batch file's ``request_id`` (every job or none)."""
    given = [isinstance(r, dict) and "request_id" in r for r in requests]
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
def submit(file: Any, idempotency_key: str | None, batch: bool, redis_url: str) -> None:
    """Submit the job(s) in FILE (a JSON object, an array, or JSON lines; - reads stdin); print their ids."""
    requests = load_requests(file.read())
    if idempotency_key and (batch or len(requests) != 1):
        raise click.UsageError("--idempotency-key takes exactly one job")
    producer = Producer(redis_url)
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
        for problem in exc.problems:
            click.echo(f"invalid: {problem}", err=True)
        sys.exit(2)
    for job_id in ids:
        click.echo(job_id)


def _get(producer: Producer, job_id: str) -> JobRecord:
    try:
        return producer.get(job_id)
    except JobNotFound:
        raise click.ClickException(f"no job {job_id}") from None


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
@click.option("--timeout-s", type=float, default=None, help="Give up watching after this long.")
@redis_option
def watch(job_id: str, timeout_s: float | None, redis_url: str) -> None:
    """Follow a job's stages live until it ends; exit 0 only if it succeeded."""
    producer = Producer(redis_url)
    record = _get(producer, job_id)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with Live(render(record, producer.parked(record)), refresh_per_second=4) as live:
        while not record.is_terminal and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.25)
            record = _get(producer, job_id)
            live.update(render(record, producer.parked(record)))
    sys.exit(0 if record.status is JobStatus.SUCCEEDED else 1)


@click.command()
@click.argument("job_id")
@redis_option
def cancel(job_id: str, redis_url: str) -> None:
    """Cancel a job. Stages check before they act; sync.so has no cancel call, so a generation already
    started runs on at the provider: genq follows it to its end (it holds a concurrency slot until
    then) and downloads nothing."""
    try:
        record = Producer(redis_url).cancel(job_id)
    except JobNotFound:
        raise click.ClickException(f"no job {job_id}") from None
    click.echo(f"{job_id} {record.status.value}")
    sys.exit(0 if record.status is JobStatus.CANCELLED else 1)


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
        raise click.ClickException(f"no job {job_id}") from None
    except InvalidRequest as exc:
        raise click.ClickException(exc.problems[0]) from None
    click.echo(f"{job_id} {record.status.value}")
