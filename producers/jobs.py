"""Finding jobs: the jobs index (``schemas.layout.JOBS_KEY``, one sorted set per status by creation time)
read newest first, with filters, and counted per status.

A listing walks the chosen status's set (or all five, merged by creation time) newest first. Without a kind
or tenant filter it reads the records it shows and few others. With one, a script reads the kind and tenant
of ``PAGE`` entries a call until ``limit`` match or the sets end, then the matching records: a filter that
matches rarely reads every entry of the window (narrow it with a status and ``since``). Counts are ZCOUNTs
of each set since ``since``: kind and tenant do not narrow them (they would need every record). Each
listing first trims the ended sets of entries older than ``JOB_TTL_S`` (the index's scripts trim as jobs
end, too), and drops an entry whose record is gone.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterator
from dataclasses import dataclass

import redis
from redis.commands.core import Script

from schemas import TERMINAL_STATUSES, JobRecord, JobStatus
from schemas import layout as L

# Index entries a call of _MATCHING_LUA reads while a kind or tenant filter walks: Redis runs one call at
# a time, so this bounds how long a call holds up other clients (about 2 ms here, like a submit's chunk).
PAGE = 500

# The entries of one status's set (KEYS[1]) newest first from rank ARGV[2] (ARGV[3] of them, created at or
# after ARGV[1]) whose jobs are of kind ARGV[4] and tenant ARGV[5] ('': any), reading those two fields of
# each record (ARGV[6]: the job key without the id); an entry whose record is gone leaves the set. Returns
# {entries read, entries removed, id, score, id, score ...}.
_MATCHING_LUA = """
local entries = redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', ARGV[1], 'WITHSCORES',
  'LIMIT', ARGV[2], ARGV[3])
local found, n, gone = {0, 0}, 2, 0
for i = 1, #entries, 2 do
  local fields = redis.call('HMGET', ARGV[6] .. entries[i], 'kind', 'tenant')
  if not fields[1] then
    redis.call('ZREM', KEYS[1], entries[i])
    gone = gone + 1
  elseif (ARGV[4] == '' or fields[1] == ARGV[4]) and (ARGV[5] == '' or fields[2] == ARGV[5]) then
    found[n + 1], found[n + 2], n = entries[i], entries[i + 1], n + 2
  end
end
found[1], found[2] = #entries / 2, gone
return found
"""


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
    page = PAGE if kind is not None or tenant is not None else limit
    matching = client.register_script(_MATCHING_LUA)
    entries = heapq.merge(  # newest first across the sets
        *(_matching(matching, s, since_ms=since_ms, kind=kind, tenant=tenant, page=page) for s in statuses),
        key=lambda entry: -entry.created_ms,
    )
    jobs: list[JobRecord] = []
    seen: set[str] = set()  # a job that moves while the sets are walked may be met twice
    while len(jobs) < limit and (taken := _take(entries, limit - len(jobs))):
        fresh = [e for e in taken if e.job_id not in seen]
        seen.update(e.job_id for e in fresh)
        jobs += _records(client, fresh, status)
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


def _matching(
    script: Script,
    status: JobStatus,
    *,
    since_ms: int | None,
    kind: str | None,
    tenant: str | None,
    page: int,
) -> Iterator[_Entry]:
    """The entries of one status's set whose jobs are of ``kind`` and ``tenant``, newest first, ``page``
    entries read a call."""
    low = "-inf" if since_ms is None else since_ms
    offset = 0
    while True:
        args = [low, offset, page, kind or "", tenant or "", L.job_key("")]
        read, gone, *found = script(keys=[L.jobs_key(status)], args=args)
        for at in range(0, len(found), 2):
            yield _Entry(float(found[at + 1]), L.text(found[at]), status)
        if int(read) < page:
            return
        offset += int(read) - int(gone)


def _take(entries: Iterator[_Entry], count: int) -> list[_Entry]:
    return [entry for _, entry in zip(range(count), entries, strict=False)]


def _records(client: redis.Redis, batch: list[_Entry], status: JobStatus | None) -> list[JobRecord]:
    """The records of ``batch`` in one round trip, in order; one whose status moved away from ``status``
    since its entry was read is left out, and one whose record has gone since is dropped."""
    with client.pipeline(transaction=False) as pipe:
        for entry in batch:
            pipe.hgetall(L.job_key(entry.job_id))
        raws = pipe.execute()
    records = [L.record_from_fields(e.job_id, raw) for e, raw in zip(batch, raws, strict=True) if raw]
    return [r for r in records if status is None or r.status is status]
