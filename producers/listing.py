"""What ``genq jobs`` shows of each job it lists: one row each (id, kind, status, tenant, created, how long,
a short detail), the counts per status above them, and the ``--since`` it was asked for."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from producers.jobs import JobListing
from schemas import JobRecord, JobStatus, StageStatus

_AGO = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# A stage in one of these is where a job that has not ended is at.
_AT = frozenset({StageStatus.RUNNING, StageStatus.WAITING, StageStatus.THROTTLED, StageStatus.RETRYING})


def parse_since(text: str) -> datetime | timedelta:
    """``10m``, ``2h``, ``1d`` (s, m, h, d, w: how long ago) or an ISO time (without an offset: local time).
    Raises ``ValueError`` with the problem."""
    ago = _AGO.fullmatch(text.strip())
    if ago:
        return timedelta(seconds=float(ago[1]) * _UNIT_S[ago[2]])
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither a time ago (30s, 10m, 2h, 1d, 1w) nor an ISO time") from None
    return moment if moment.tzinfo else moment.astimezone()


@dataclass(frozen=True)
class Row:
    """One listed job. ``seconds``: how long it took (an ended job) or how long it has been waiting or
    running so far; ``detail``: the error code of a failed job, the stage(s) a running one is at."""

    id: str
    kind: str
    status: str
    tenant: str | None
    pipeline: str | None
    created_at: str
    finished_at: str | None
    seconds: float
    detail: str
    error: dict[str, Any] | None


def row(record: JobRecord, now: datetime) -> Row:
    end = record.finished_at if record.is_terminal and record.finished_at else now
    return Row(
        id=record.id,
        kind=record.kind,
        status=record.status.value,
        tenant=record.tenant,
        pipeline=record.pipeline,
        created_at=record.created_at.isoformat(),
        finished_at=record.finished_at.isoformat() if record.finished_at else None,
        seconds=round(max(0.0, (end - record.created_at).total_seconds()), 3),
        detail=detail(record),
        error=record.error.model_dump(mode="json") if record.error else None,
    )


def detail(record: JobRecord) -> str:
    """``aistudios RENDER_FAILED at wait`` for a failed job (its error code, else the HTTP status, else the
    message's start), ``wait (waiting)`` for a running one, how many outputs a succeeded one has."""
    if record.status is JobStatus.FAILED and record.error is not None:
        e = record.error
        code = e.code or (str(e.status_code) if e.status_code is not None else _short(e.message))
        return " ".join(x for x in (e.provider, code, "at", e.stage) if x)
    if record.status is JobStatus.RUNNING:
        return ", ".join(f"{name} ({s.status.value})" for name, s in record.stages.items() if s.status in _AT)
    if record.status is JobStatus.SUCCEEDED:
        return f"{len(record.outputs)} output{'s' if len(record.outputs) != 1 else ''}"
    return ""


def _short(text: str, width: int = 60) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def span(seconds: float) -> str:
    """``4.2s``, ``5m12s``, ``3h05m``, ``2d04h``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def counts_line(listing: JobListing, since: str | None, filtered: bool) -> str:
    """``jobs created in the last 2h: 3 queued, 1 running, 20 succeeded, 2 failed, 0 cancelled``; with a
    kind or tenant filter, a note that the counts are not narrowed by it."""
    counts = ", ".join(f"{listing.counts[s]} {s.value}" for s in JobStatus)
    if since is None:
        scope = "all jobs"
    else:
        scope = f"jobs created {'in the last' if _AGO.fullmatch(since.strip()) else 'since'} {since.strip()}"
    return f"{scope}: {counts}" + (" (counts of every kind and tenant)" if filtered else "")


def listing_view(rows: list[Row], heading: str) -> Group:
    """The counts line, then one row per job (no borders: one job a line, for grep and awk)."""
    table = Table(box=None, pad_edge=False)
    for column in ("job", "kind", "status", "tenant", "created", "time", "detail"):
        table.add_column(column, no_wrap=column != "detail", overflow="fold")
    for r in rows:
        created = datetime.fromisoformat(r.created_at).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        took = f"{'took' if r.finished_at else 'for'} {span(r.seconds)}"
        table.add_row(r.id, r.kind, r.status, r.tenant or "-", created, took, Text(r.detail))
    return Group(Text(heading), table if rows else Text("no job matches"))


def listing_json(listing: JobListing, rows: list[Row], since: datetime | None) -> dict[str, Any]:
    return {
        "since": since.astimezone(UTC).isoformat() if since else None,
        "counts": {s.value: n for s, n in listing.counts.items()},
        "jobs": [asdict(r) for r in rows],
    }
