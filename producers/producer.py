"""``Producer``: what a backend imports to submit jobs of every kind and follow them."""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import redis
from pydantic import ValidationError

from schemas import JOB_REQUEST, JobRecord, JobRequest, JobStatus, ParkedWait
from schemas import layout as L
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
    if check_files:
        missing = {f: p for f, p in parsed.local_files().items() if not Path(p).is_file()}
        if missing:
            raise InvalidRequest([f"{field}: no such file: {path}" for field, path in missing.items()])
    return parsed


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
        """Cancel a job that has not ended. Every stage checks before it acts; an ended job is unchanged."""
        previous = self._transition(
            keys=[L.job_key(job_id)], args=[JobStatus.CANCELLED.value, L.now_iso(), "1", L.JOB_TTL_S]
        )
        if previous is None:
            raise JobNotFound(job_id)
        return self.get(job_id)

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
