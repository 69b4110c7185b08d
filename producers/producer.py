"""``Producer``: what a backend imports to submit jobs of every kind and follow them."""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from pydantic import ValidationError

from schemas import JOB_REQUEST, SUBMITTABLE, JobRecord, JobRequest, JobStatus, LipsyncRequest, ParkedWait
from schemas import layout as L
from schemas.lipsync_batch import LipsyncBatchRequest
from schemas.lipsync_wire import BATCH_MAX_FILE_BYTES, BATCH_MAX_RECORDS, BATCH_MIN_RECORDS, batch_file
from schemas.wire import task_message

_SUBMIT_IDEMPOTENT_LUA = """
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
redis.call('HSET', KEYS[2], unpack(ARGV, 4))
redis.call('LPUSH', KEYS[3], ARGV[3])
return ARGV[1]
"""
_BATCH = 500


class InvalidRequest(ValueError):
    """A job request was refused before anything was stored or enqueued. ``problems``: one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid job request:\n" + "\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class BatchSubmission:
    """What ``submit_batch`` stored: the batch's own record and its jobs, in the order given."""

    batch_id: str
    job_ids: list[str]


class JobNotFound(KeyError):
    """No job has that id (or its record expired)."""


def new_job_id() -> str:
    """28 hex characters, time-ordered (milliseconds first), so ids sort by submission time."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(8)}"


def validate(request: JobRequest | Mapping[str, Any], *, check_files: bool = True) -> JobRequest:
    """Parse and check a request; raise ``InvalidRequest`` with one line per bad field."""
    try:
        parsed = request if not isinstance(request, Mapping) else JOB_REQUEST.validate_python(request)
    except ValidationError as exc:
        raise InvalidRequest([_problem(err) for err in exc.errors()]) from None
    if parsed.kind not in SUBMITTABLE:
        raise InvalidRequest([f"kind: {parsed.kind!r} is made by genq and cannot be submitted"])
    if check_files:
        problems = [_file_problem(field, Path(path), parsed.max_local_file_bytes)
                    for field, path in parsed.local_files().items()]  # fmt: skip
        if any(problems):
            raise InvalidRequest([p for p in problems if p])
    return parsed


def _file_problem(field: str, path: Path, max_bytes: int | None) -> str | None:
    try:
        if not path.is_file():
            return f"{field}: no such file: {path}"
        size = path.stat().st_size
    except OSError as exc:
        return f"{field}: cannot read {path}: {exc.strerror}"
    if max_bytes is not None and size > max_bytes:
        return f"{field}: {path} is {size} bytes; the provider takes files of at most {max_bytes} bytes"
    return None


def _problem(err: Any) -> str:
    loc = list(err["loc"])
    if loc and loc[0] in L.QUEUE_FOR_KIND:  # the discriminator tag pydantic puts first
        loc = loc[1:]
    where = ".".join(str(p) for p in loc) or "request"
    return f"{where}: {err['msg']}"


def _redis_mapping(fields: dict[str, str]) -> Mapping[Any, Any]:
    return fields  # redis-py's stubs type the mapping's keys as a union, and Mapping keys are invariant


class Producer:
    """Submits jobs to Redis and reads their records. Thread-safe (redis-py pools its connections)."""

    def __init__(self, redis_url: str | None = None, *, client: redis.Redis | None = None) -> None:
        if client is None:
            if redis_url is None:
                raise ValueError("give redis_url or client")
            client = redis.Redis.from_url(redis_url)
        self.redis = client
        self._submit_idempotent = client.register_script(_SUBMIT_IDEMPOTENT_LUA)
        self._transition = client.register_script(L.TRANSITION_LUA)
        self._replay = client.register_script(L.REPLAY_LUA)

    def submit(self, request: JobRequest | Mapping[str, Any], idempotency_key: str | None = None) -> str:
        """Validate, store and enqueue one job; return its id. A repeated key returns the first job's id."""
        parsed = validate(request)
        job_id = new_job_id()
        fields, message, queue = self._prepare(job_id, parsed)
        if idempotency_key is None:
            with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(L.job_key(job_id), mapping=_redis_mapping(fields))
                pipe.lpush(queue, message)
                pipe.execute()
            return job_id
        if not idempotency_key or len(idempotency_key) > 256:
            raise InvalidRequest(["idempotency_key: must be 1 to 256 characters"])
        flat = [x for pair in fields.items() for x in pair]
        keys = [L.idempotency_key(idempotency_key), L.job_key(job_id), queue]
        result = self._submit_idempotent(keys=keys, args=[job_id, L.JOB_TTL_S, message, *flat])
        return L.text(result)

    def submit_many(self, requests: Iterable[JobRequest | Mapping[str, Any]]) -> list[str]:
        """Submit many jobs in pipelined transactions. All are validated first: one bad request
        refuses the whole call and nothing is enqueued."""
        parsed: list[JobRequest] = []
        problems: list[str] = []
        for index, request in enumerate(requests):
            try:
                parsed.append(validate(request))
            except InvalidRequest as exc:
                problems += [f"[{index}] {p}" for p in exc.problems]
        if problems:
            raise InvalidRequest(problems)
        ids: list[str] = []
        for start in range(0, len(parsed), _BATCH):
            with self.redis.pipeline(transaction=True) as pipe:
                for request in parsed[start : start + _BATCH]:
                    job_id = new_job_id()
                    fields, message, queue = self._prepare(job_id, request)
                    pipe.hset(L.job_key(job_id), mapping=_redis_mapping(fields))
                    pipe.lpush(queue, message)
                    ids.append(job_id)
                pipe.execute()
        return ids

    def submit_batch(
        self,
        requests: Sequence[JobRequest | Mapping[str, Any]],
        *,
        request_ids: Sequence[str] | None = None,
    ) -> BatchSubmission:
        """Submit 20 to 500 lipsync jobs as one sync.so batch. Each is an ordinary job with its own
        record, output and error; the batch (its own record, ``batch_id``) sends them as one batch file
        and maps each result row back to its job. ``request_ids`` (default: the job ids) are the
        batch file's ids, e.g. the caller's own keys. Everything is checked first, including the batch
        file's size: a batch sync.so would refuse is refused here and nothing is stored."""
        parsed, problems = self._batch_members(requests)
        if not BATCH_MIN_RECORDS <= len(parsed) <= BATCH_MAX_RECORDS:
            problems.append(f"batch: {len(parsed)} jobs; a sync.so batch takes {BATCH_MIN_RECORDS} to "
                            f"{BATCH_MAX_RECORDS} (submit fewer jobs one by one)")  # fmt: skip
        if problems:
            raise InvalidRequest(problems)
        job_ids = [new_job_id() for _ in parsed]
        rids = list(request_ids) if request_ids is not None else job_ids
        batch = self._batch_record(job_ids, rids)
        size = len(batch_file(list(zip(rids, parsed, strict=True))))
        if size > BATCH_MAX_FILE_BYTES:
            limit = BATCH_MAX_FILE_BYTES
            raise InvalidRequest([f"batch: its file would be {size} bytes; sync.so takes at most {limit} "
                                  "(split the jobs into smaller batches)"])  # fmt: skip
        batch_id = new_job_id()
        now = L.now_iso()
        with self.redis.pipeline(transaction=True) as pipe:
            for job_id, rid, request in zip(job_ids, rids, parsed, strict=True):
                fields = L.new_job_fields(
                    job_id, request.model_dump_json(), request.kind, request.tenant, now
                )
                fields[L.DATA_PREFIX + "batch"] = json.dumps({"id": batch_id, "request_id": rid})
                pipe.hset(L.job_key(job_id), mapping=_redis_mapping(fields))
            fields, message, queue = self._prepare(batch_id, batch)
            pipe.hset(L.job_key(batch_id), mapping=_redis_mapping(fields))
            pipe.lpush(queue, message)
            pipe.execute()
        return BatchSubmission(batch_id, job_ids)

    @staticmethod
    def _batch_members(
        requests: Sequence[JobRequest | Mapping[str, Any]],
    ) -> tuple[list[LipsyncRequest], list[str]]:
        parsed: list[LipsyncRequest] = []
        problems: list[str] = []
        for index, request in enumerate(requests):
            try:
                member = validate(request, check_files=False)
            except InvalidRequest as exc:
                problems += [f"[{index}] {p}" for p in exc.problems]
                continue
            if not isinstance(member, LipsyncRequest):
                problems.append(f"[{index}] kind: a batch takes lipsync jobs only, not {member.kind!r}")
                continue
            for field, path in member.local_files().items():
                problems.append(f"[{index}] {field}: a batch file carries URLs and asset ids, not the local "
                                f"file {path} (submit it alone, or upload it as an asset first)")  # fmt: skip
            if member.max_cost_usd is not None:
                problems.append(f"[{index}] max_cost_usd: a batch is not estimated job by job; submit a job "
                                "with a cost cap alone")  # fmt: skip
            parsed.append(member)
        return parsed, problems

    @staticmethod
    def _batch_record(job_ids: list[str], request_ids: list[str]) -> LipsyncBatchRequest:
        try:
            return LipsyncBatchRequest(jobs=job_ids, request_ids=request_ids)
        except ValidationError as exc:
            problems = [_problem(err).replace("request: ", "batch: ", 1) for err in exc.errors()]
            raise InvalidRequest(problems) from None

    def _prepare(self, job_id: str, request: JobRequest) -> tuple[dict[str, str], str, str]:
        queue = L.QUEUE_FOR_KIND[request.kind]
        now = L.now_iso()
        fields = L.new_job_fields(job_id, request.model_dump_json(), request.kind, request.tenant, now)
        return fields, task_message(L.START_TASK, [job_id], queue), queue

    def get(self, job_id: str) -> JobRecord:
        """The job's current record; ``JobNotFound`` if there is none."""
        raw = self.redis.hgetall(L.job_key(job_id))
        if not raw:
            raise JobNotFound(job_id)
        return L.record_from_fields(job_id, raw)

    def parked(self, record: JobRecord) -> list[ParkedWait]:
        """The job's stages parked until a provider job ends: what each waits for, since when, and
        when the status sweep checks it next."""
        provider = L.QUEUE_FOR_KIND[record.kind]
        entries, _, due = L.wait_keys(provider)
        waits = []
        for provider_id in record.provider_ids.values():
            entry = self.redis.hget(entries, provider_id)
            if not isinstance(entry, bytes | str):
                continue
            account = json.loads(entry)["account"]
            score = self.redis.zscore(due + account, provider_id)
            waits.append(L.parked_wait(provider, provider_id, entry, score))
        return waits

    def wait(self, job_id: str, timeout_s: float, *, poll_s: float = 0.2) -> JobRecord:
        """Block until the job ends or ``timeout_s`` passes; return its record either way."""
        deadline = time.monotonic() + timeout_s
        while True:
            record = self.get(job_id)
            remaining = deadline - time.monotonic()
            if record.is_terminal or remaining <= 0:
                return record
            time.sleep(min(poll_s, remaining))
            poll_s = min(poll_s * 1.5, 2.0)

    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a job that has not ended. Every stage checks before it acts; an ended job is unchanged.
        Cancelling a batch cancels each of its jobs too."""
        previous = self._transition(
            keys=[L.job_key(job_id)], args=[JobStatus.CANCELLED.value, L.now_iso(), "1", L.JOB_TTL_S]
        )
        if previous is None:
            raise JobNotFound(job_id)
        record = self.get(job_id)
        if isinstance(record.request, LipsyncBatchRequest):  # a batch's jobs are cancelled with it
            for member in record.request.jobs:
                self._transition(
                    keys=[L.job_key(member)], args=[JobStatus.CANCELLED.value, L.now_iso(), "1", L.JOB_TTL_S]
                )
        return record

    def dead_letters(self, limit: int = 100) -> list[JobRecord]:
        """Jobs whose retries ran out, newest first (``genq dead``)."""
        ids = [
            L.text(i)
            for i in self.redis.zrevrange(L.DEAD_LETTERS, 0, limit - 1)
            if isinstance(i, bytes | str)
        ]
        records = []
        for job_id in ids:
            with contextlib.suppress(JobNotFound):
                records.append(self.get(job_id))
        return records

    def replay(self, job_id: str) -> JobRecord:
        """Run a failed job again from its first stage, keeping its provider ids (so a generation it
        already has is followed, not created again). Refuses a job that did not fail."""
        job = self.get(job_id)
        if job.kind not in SUBMITTABLE:
            raise InvalidRequest(
                [f"job {job_id} is a {job.kind}: replay its failed jobs instead (each runs alone)"]
            )
        message = task_message(L.START_TASK, [job_id], L.QUEUE_FOR_KIND[job.kind])
        result = self._replay(
            keys=[L.job_key(job_id), L.DEAD_LETTERS, L.QUEUE_FOR_KIND[job.kind]],
            args=[L.now_iso(), job_id, message],
        )
        if result is None:
            raise JobNotFound(job_id)
        if result != 1:
            raise InvalidRequest([f"job {job_id} is {L.text(result)}; only a failed job can be replayed"])
        return self.get(job_id)

    def close(self) -> None:
        self.redis.close()
