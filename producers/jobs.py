"""Finding jobs: the jobs index (``schemas.layout.JOBS_KEY``, one sorted set per status by creation time)
read newest first, with filters, and counted per status.

A listing walks the chosen status's set (or all five, merged by creation time) newest first. Without a kind
or tenant filter it reads the records it shows and no others. With one, it reads the kind and tenant of
``PAGE`` entries a round trip until ``limit`` match or the sets end, then the matching records: a filter
that matches rarely reads every entry of the window (narrow it with a status and ``since``). Counts are
ZCOUNTs of each set since ``since``: kind and tenant do not narrow them (they would need every record).
Each listing first trims the ended sets of entries older than ``JOB_TTL_S`` (the index's scripts trim as
jobs end, too), and drops an entry whose record is gone.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import cast

import redis

from schemas import TERMINAL_STATUSES, JobRecord, JobStatus
from schemas import layout as L

PAGE = 1000  # index entries (and kind/tenant lookups) per round trip while a filter walks


@dataclass(frozen=True)
class JobListing:
    """What ``Producer.jobs`` found: the records newest first, and how many jobs each status has among
    those created since the listing's ``since`` (of every kind and tenant)."""

    jobs: list[JobRecord]
    counts: dict[JobStatus, int]


@dataclass(frozen=True)
class _Entry:
    created_ms: float
    job_id: str
    status: JobStatus  # the set it was found in


def find(
    client: redis.Redis,
    *,
    status: JobStatus | None,
    kind: str | None,
    tenant: str | None,
    since_ms: int | None,
    limit: int,
) -> JobListing:
    """The newest ``limit`` jobs of ``status`` (None: any), ``kind`` and ``tenant`` created at or after
    ``since_ms``, with the counts per status."""
    counts = _trim_and_count(client, since_ms)
    statuses = [s for s in ([status] if status is not None else JobStatus) if counts[s]]
    filtered = kind is not None or tenant is not None
    entries = _newest(client, statuses, since_ms, PAGE if filtered else limit)
    jobs: list[JobRecord] = []
    seen: set[str] = set()  # a job that moves while the sets are walked may be met twice
    while len(jobs) < limit and (taken := _take(entries, PAGE if filtered else limit - len(jobs))):
        batch = [e for e in taken if e.job_id not in seen]
        seen.update(e.job_id for e in batch)
        if filtered:
            batch = _matching(client, batch, kind, tenant)
        jobs += _records(client, batch[: limit - len(jobs)], status)
    return JobListing(jobs, counts)


def _trim_and_count(client: redis.Redis, since_ms: int | None) -> dict[JobStatus, int]:
    """Trim the ended sets of entries whose records have expired, then count every set, in one round trip."""
    horizon = int(time.time() * 1000) - L.JOB_TTL_S * 1000
    with client.pipeline(transaction=False) as pipe:
        for status in TERMINAL_STATUSES:
            pipe.zremrangebyscore(L.jobs_key(status), "-inf", f"({horizon}")
        for status in JobStatus:
            pipe.zcount(L.jobs_key(status), "-inf" if since_ms is None else since_ms, "+inf")
        replies = pipe.execute()[len(TERMINAL_STATUSES) :]
    return {status: int(count) for status, count in zip(JobStatus, replies, strict=True)}


def _newest(
    client: redis.Redis, statuses: Sequence[JobStatus], since_ms: int | None, page: int
) -> Iterator[_Entry]:
    """The entries of the statuses' sets, newest first (merged by creation time), read a page at a time."""
    return heapq.merge(
        *(_entries(client, status, since_ms, page) for status in statuses),
        key=lambda entry: -entry.created_ms,
    )


def _entries(client: redis.Redis, status: JobStatus, since_ms: int | None, page: int) -> Iterator[_Entry]:
    key, low = L.jobs_key(status), "-inf" if since_ms is None else since_ms
    offset = 0
    while True:
        got = cast(
            list[tuple[bytes, float]],
            client.zrevrangebyscore(key, "+inf", low, start=offset, num=page, withscores=True),
        )
        for member, score in got:
            yield _Entry(score, L.text(member), status)
        if len(got) < page:
            return
        offset += page


def _take(entries: Iterator[_Entry], count: int) -> list[_Entry]:
    return [entry for _, entry in zip(range(count), entries, strict=False)]


def _matching(client: redis.Redis, batch: list[_Entry], kind: str | None, tenant: str | None) -> list[_Entry]:
    """The entries whose jobs are of ``kind`` and ``tenant``, reading only those two fields of each; an
    entry whose record is gone leaves the index."""
    with client.pipeline(transaction=False) as pipe:
        for entry in batch:
            pipe.hmget(L.job_key(entry.job_id), [L.F_KIND, L.F_TENANT])
        fields = pipe.execute()
    _forget(client, [e for e, (k, _) in zip(batch, fields, strict=True) if k is None])
    return [
        entry
        for entry, (k, t) in zip(batch, fields, strict=True)
        if k is not None
        and (kind is None or L.text(k) == kind)
        and (tenant is None or (t is not None and L.text(t) == tenant))
    ]


def _records(client: redis.Redis, batch: list[_Entry], status: JobStatus | None) -> list[JobRecord]:
    """The records of ``batch`` in one round trip, in order; one whose status moved away from ``status``
    since its entry was read is left out, and an entry whose record is gone leaves the index."""
    with client.pipeline(transaction=False) as pipe:
        for entry in batch:
            pipe.hgetall(L.job_key(entry.job_id))
        raws = pipe.execute()
    _forget(client, [e for e, raw in zip(batch, raws, strict=True) if not raw])
    records = [L.record_from_fields(e.job_id, raw) for e, raw in zip(batch, raws, strict=True) if raw]
    return [r for r in records if status is None or r.status is status]


def _forget(client: redis.Redis, gone: list[_Entry]) -> None:
    if gone:
        with client.pipeline(transaction=False) as pipe:
            for entry in gone:
                pipe.zrem(L.jobs_key(entry.status), entry.job_id)
            pipe.execute()
