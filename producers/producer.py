"""``Producer``: what a backend imports to submit jobs of every kind and follow them."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from redis.connection import AbstractConnection, Connection
from redis.exceptions import NoScriptError

from producers.jobs import JobListing, find
from schemas import (
    JOB_REQUEST,
    KINDS,
    SUBMITTABLE,
    JobError,
    JobRecord,
    JobRequest,
    JobStatus,
    LipsyncRequest,
    Output,
    ParkedWait,
)
from schemas import layout as L
from schemas.caps import Caps, json_bytes, over, setting
from schemas.inputs import InputRefused, open_input, roots_from_env
from schemas.lipsync_batch import LipsyncBatchRequest
from schemas.lipsync_wire import (
    BATCH_MAX_FILE_BYTES,
    BATCH_MAX_RECORDS,
    BATCH_MIN_RECORDS,
    BATCH_PLANS,
    PLAN_SETTING,
    batch_file,
)
from schemas.pipeline import END, GENERATIONS, OUTCOME_PREFIX, PipelineRequest
from schemas.problems import field_problem, unknown_kind
from schemas.redis_url import CA_FILE_ENV, tls_options
from schemas.requests import CREDENTIALS
from schemas.wire import task_message, task_messages
from storage import OutputSettings, OutputStore, StoreError, store_for

# Stores a job under an idempotency key, unless the key names one already. KEYS: the key, the job, its
# queue. ARGV: the job's id, the key's time to live (s), its first message, its creation time (ms: the
# jobs index's score), then its hash.
_SUBMIT_IDEMPOTENT_LUA = f"""{L.INDEX_LUA}
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
redis.call('HSET', KEYS[2], unpack(ARGV, 5))
index_add(ARGV[4], ARGV[1])
redis.call('LPUSH', KEYS[3], ARGV[3])
return ARGV[1]
"""
# Stores jobs and pushes their first messages, all or none. KEYS: the queues, then one job key per job.
# ARGV: how many queues, the time of submission (ISO, then ms: the jobs index's score), how many groups
# and runs; each group's (queue index in KEYS, kind, tenant or ''); each run's (group index, how many
# jobs: consecutive jobs of one group); then each job's (request JSON, message). The hash is
# ``layout.new_job_fields``'s; every job enters the jobs index's queued set. Checks come before
# the first write and no write after it can fail (a full Redis refuses only a script's first write), so
# a refusal leaves nothing behind. A call whose jobs all exist already was run before (redis-py resends
# a command whose reply a broken connection lost): it is not run twice.
_SUBMIT_LUA = f"""{L.INDEX_LUA}
local queues, now, created = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local groups, runs = tonumber(ARGV[4]), tonumber(ARGV[5])
for i = 1, queues do
  local kind = redis.call('TYPE', KEYS[i]).ok
  if kind ~= 'none' and kind ~= 'list' then
    return redis.error_reply('WRONGTYPE genq: queue ' .. KEYS[i] .. ' is a ' .. kind .. ', not a list')
  end
end
local jobs = #KEYS - queues
local existing = redis.call('EXISTS', unpack(KEYS, queues + 1))
if existing == jobs then return jobs end
if existing > 0 then return redis.error_reply('genq: ' .. existing .. ' of the new job ids are taken') end
local fields, queue_of, messages, indexed = {{}}, {{}}, {{}}, {{}}
for g = 1, groups do
  local at = 5 + (g - 1) * 3
  queue_of[g] = tonumber(ARGV[at + 1])
  fields[g] = {{'{L.F_REQUEST}', '', '{L.F_KIND}', ARGV[at + 2], '{L.F_STATUS}', '{JobStatus.QUEUED.value}',
    '{L.F_CREATED}', now, '{L.F_UPDATED}', now, '{L.F_ATTEMPTS}', '0'}}
  if ARGV[at + 3] ~= '' then fields[g][13], fields[g][14] = '{L.F_TENANT}', ARGV[at + 3] end
end
for i = 1, queues do messages[i] = {{}} end
local run_at = 5 + groups * 3
local key, a = queues, run_at + runs * 2
for r = 1, runs do
  local g = tonumber(ARGV[run_at + 2 * r - 1])
  local hash, pushed = fields[g], messages[queue_of[g]]
  for _ = 1, tonumber(ARGV[run_at + 2 * r]) do
    key, a = key + 1, a + 2
    hash[2] = ARGV[a - 1]
    redis.call('HSET', KEYS[key], unpack(hash))
    pushed[#pushed + 1] = ARGV[a]
    local n = 2 * (key - queues)
    indexed[n - 1], indexed[n] = created, string.sub(KEYS[key], {len(L.job_key(""))} + 1)
  end
end
index_add(unpack(indexed))
for i = 1, queues do redis.call('LPUSH', KEYS[i], unpack(messages[i])) end
return jobs
"""
_SUBMIT_SHA = hashlib.sha1(_SUBMIT_LUA.encode()).hexdigest()
# Jobs per script call: Redis runs one call at a time, so this bounds how long a call holds up other
# clients (a few ms), and Lua's unpack() takes at most about 8,000 values. 200 to 2,000 submit as fast.
_CHUNK = 500
_JOB_ID = re.compile(r"[0-9a-f]{28}")


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


@dataclass(frozen=True)
class _Call:
    """One call of ``_SUBMIT_LUA``: the ids of the jobs it stores, its keys and its arguments."""

    ids: list[str]
    keys: list[str]
    args: list[str | int]


class JobNotFound(KeyError):
    """No job has that id (or its record expired)."""


def new_job_id() -> str:
    """28 hex characters, time-ordered (milliseconds first), so ids sort by submission time."""
    return _new_job_ids(1)[0]


def is_job_id(text: str) -> bool:
    """Whether ``text`` has the form of every job id genq makes (``new_job_id``'s: 28 lowercase hex)."""
    return _JOB_ID.fullmatch(text) is not None


_last_id = [0, 0]  # the milliseconds and the 64-bit counter of the last id this process made
_id_lock = threading.Lock()


def _new_job_ids(count: int) -> list[str]:
    """``count`` ids of ``new_job_id``'s form, made at once: the clock's milliseconds, then a random
    64-bit number, counted up within one millisecond (as a monotonic ULID's), so that the ids one process
    makes sort in the order it made them, even within a millisecond (``genq jobs`` lists newest first)."""
    now = time.time_ns() // 1_000_000
    with _id_lock:
        last_ms, last_n = _last_id
        if now <= last_ms and last_n + count < 1 << 64:  # the same millisecond (or the clock went back)
            millis, first = last_ms, last_n + 1
        else:  # a new one; randbits(63) leaves room to count up within it
            millis, first = max(now, last_ms + 1), secrets.randbits(63)
        _last_id[:] = [millis, first + count - 1]
    head = f"{millis:012x}"
    return [f"{head}{n:016x}" for n in range(first, first + count)]


def validate(
    request: JobRequest | Mapping[str, Any],
    *,
    check_files: bool = True,
    input_roots: Sequence[Path] | None = None,
    caps: Caps | None = None,
) -> JobRequest:
    """Parse and check a request; raise ``InvalidRequest`` with one line per bad field. Its JSON and its
    lists must fit ``caps`` (default: ``GENQ_CAPS__…``). With ``check_files``, local inputs must lie under
    ``input_roots`` (default: ``GENQ_INPUT_ROOTS``), exist and fit the provider's size limit."""
    return _validated(request, check_files, input_roots, Caps.from_env() if caps is None else caps).request


@dataclass(frozen=True)
class _Valid:
    """A request that passed ``validate``, with its JSON as it is stored."""

    request: JobRequest
    json: str


def _validated(
    request: JobRequest | Mapping[str, Any],
    check_files: bool,
    input_roots: Sequence[Path] | None,
    caps: Caps,
) -> _Valid:
    if not isinstance(request, Mapping | JobRequest):
        raise InvalidRequest([f"request: must be a JSON object, not {type(request).__name__}"])
    try:
        parsed = request if not isinstance(request, Mapping) else JOB_REQUEST.validate_python(request)
    except ValidationError as exc:
        raise InvalidRequest([_problem(err) for err in exc.errors()]) from None
    if parsed.kind not in SUBMITTABLE:
        raise InvalidRequest([f"kind: {_MADE_BY_GENQ.format(kind=parsed.kind)}"])
    handed = [f"{field}: {source} is a pipeline step's output; in a pipeline, a step takes one as "
              '{"from": "<step>"}' for field, source in parsed.output_refs().items()]  # fmt: skip
    if handed:
        raise InvalidRequest(handed)
    text = parsed.model_dump_json()
    size = json_bytes(text)
    too_large = over("request", size, "bytes of JSON", caps.max_request_bytes, "max_request_bytes")
    problems = parsed.over_caps(caps) + ([too_large] if too_large else [])
    if problems:
        raise InvalidRequest(problems)
    local = parsed.local_files() if check_files else {}
    if local:
        roots = roots_from_env() if input_roots is None else tuple(input_roots)
        problems = [p for field, path in local.items() if (p := _file_problem(field, path, roots, parsed))]
        if problems:
            raise InvalidRequest(problems)
    return _Valid(parsed, text)


def _file_problem(field: str, path: str, roots: Sequence[Path], request: JobRequest) -> str | None:
    """What is wrong with a local input, opened as the workers open it (``open_input``)."""
    try:
        with open_input(path, roots, field=field) as file:
            size = os.fstat(file.fileno()).st_size
    except InputRefused as exc:
        return str(exc)
    except OSError as exc:
        return f"{field}: cannot read {path}: {exc.strerror}"
    max_bytes = request.max_local_file_bytes
    if max_bytes is not None and size > max_bytes:
        return f"{field}: {path} is {size} bytes; the provider takes files of at most {max_bytes} bytes"
    return None


def _kinds(request: JobRequest | Mapping[str, Any]) -> list[str]:
    """The kinds of the jobs ``request`` makes: its own, or a pipeline's steps'."""
    if isinstance(request, PipelineRequest):
        return [str(step.request.get("kind")) for step in request.steps.values()]
    if not isinstance(request, Mapping):
        return [request.kind]
    steps = request.get("steps")
    if request.get("kind") != "pipeline" or not isinstance(steps, Mapping):
        return [str(request.get("kind"))]
    parts = [step.get("request") for step in steps.values() if isinstance(step, Mapping)]
    return [str(part.get("kind")) for part in parts if isinstance(part, Mapping)]


def _said(error: JobError | None) -> str:
    """How a job failed, in a few words: ``failed at create (syncso 401)``."""
    if error is None:
        return "failed"
    parts = " ".join(str(part) for part in (error.provider, error.status_code, error.code) if part)
    return f"failed at {error.stage}" + (f" ({parts})" if parts else "")


def _plan_problem(plan: str, where: str) -> str:
    whose = (
        f"{PLAN_SETTING} is {plan!r} here"
        if where == "here"
        else f"the workers' {PLAN_SETTING} is {plan!r} (registered in Redis by their sync.so sweep)"
    )
    return (
        f"batch: sync.so runs batches on the {' and '.join(BATCH_PLANS)} plans only, and {whose}; submit "
        f"the jobs one by one, or set {PLAN_SETTING} to the account's plan"
    )


_MADE_BY_GENQ = "{kind!r} is made by genq and cannot be submitted"  # a batch record


def _problem(err: ErrorDetails, model: type[BaseModel] | None = None) -> str:
    """One line of a refused request (``schemas.problems``): an error of the job request union names its
    kind's model first (pydantic puts the tag first), or ``model`` is the one validated."""
    loc = list(err["loc"])
    if err["type"] in ("union_tag_not_found", "union_tag_invalid") and not loc:
        return f"kind: {_kind_problem(err['input'])}"
    if loc and isinstance(loc[0], str) and loc[0] in KINDS:
        model, loc = KINDS[loc[0]].model, loc[1:]
    return field_problem(err, loc, model)


def _kind_problem(request: Any) -> str:
    kind = request.get("kind") if isinstance(request, Mapping) else None
    if isinstance(kind, str) and kind in KINDS and kind not in SUBMITTABLE:
        return _MADE_BY_GENQ.format(kind=kind)
    return unknown_kind(kind, SUBMITTABLE)


@contextlib.contextmanager
def _disconnected_on_error(conn: AbstractConnection) -> Iterator[None]:
    """Disconnect ``conn`` when the block fails, so that no unread reply is left on it."""
    try:
        yield
    except BaseException:
        conn.disconnect()  # type: ignore[no-untyped-call]
        raise


def _redis_mapping(fields: dict[str, str]) -> Mapping[Any, Any]:
    return fields  # redis-py's stubs type the mapping's keys as a union, and Mapping keys are invariant


class Producer:
    """Submits jobs to Redis and reads their records. Thread-safe (redis-py pools its connections). It
    keeps one connection of the pool for submits (unless the pool holds a single one) until ``close``.
    What a submit may ask for is ``caps`` (default: ``GENQ_CAPS__…``, read once here). Outputs in an S3
    store are presigned with ``outputs`` (default: ``GENQ_OUTPUTS__…``, the store's endpoint and a key that
    may read it; presigning is computed here, no request is sent)."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        client: redis.Redis | None = None,
        caps: Caps | None = None,
        ca_file: str | None = None,
        outputs: OutputSettings | None = None,
    ) -> None:
        """``redis_url`` (or a ``client``); a rediss:// server's certificate is verified against
        ``ca_file``, by default ``$GENQ_REDIS_CA_FILE``, else the system's CAs."""
        self.caps = Caps.from_env() if caps is None else caps
        self._outputs = outputs
        self._stores: dict[str, OutputStore] = {}
        if client is None:
            if redis_url is None:
                raise ValueError("give redis_url or client")
            ca_file = ca_file or os.environ.get(CA_FILE_ENV) or None
            client = redis.Redis.from_url(redis_url, **tls_options(redis_url, ca_file))
        self.redis = client
        self._kept_lock = threading.Lock()
        self._kept: tuple[int, Connection] | None = None  # (pid, connection), see _connection
        self._submit_idempotent = client.register_script(_SUBMIT_IDEMPOTENT_LUA)
        self._transition = client.register_script(L.TRANSITION_LUA)
        self._replay = client.register_script(L.REPLAY_LUA)

    def submit(self, request: JobRequest | Mapping[str, Any], idempotency_key: str | None = None) -> str:
        """Validate, store and enqueue one job; return its id. A repeated key returns the first job's id."""
        valid = self._validated(request)
        if idempotency_key is None:
            return self._store([valid])[0]
        if not idempotency_key or len(idempotency_key) > 256:
            raise InvalidRequest(["idempotency_key: must be 1 to 256 characters"])
        job_id = new_job_id()
        fields, message, queue = self._prepare(job_id, valid.request, valid.json)
        flat = [x for pair in fields.items() for x in pair]
        keys = [L.idempotency_key(idempotency_key), L.job_key(job_id), queue]
        created = L.epoch_ms(fields[L.F_CREATED])
        result = self._submit_idempotent(keys=keys, args=[job_id, L.JOB_TTL_S, message, created, *flat])
        return L.text(result)

    def submit_many(self, requests: Iterable[JobRequest | Mapping[str, Any]]) -> list[str]:
        """Submit many jobs, in one script call per chunk of 500 (each chunk all or nothing). All are
        validated first: one bad request refuses the whole call and nothing is enqueued, and so do more
        jobs, or more bytes of requests in all, than the caps allow (``GENQ_CAPS__MAX_JOBS_PER_SUBMIT``,
        ``GENQ_CAPS__MAX_SUBMIT_BYTES``)."""
        caps = self.caps
        valid: list[_Valid] = []
        problems: list[str] = []
        total_bytes = 0
        for index, request in enumerate(requests):
            if index == caps.max_jobs_per_submit:  # the rest is not even read
                raise InvalidRequest([f"submit: more than {index} jobs; at most {index} in one call "
                                      f"({setting('max_jobs_per_submit')})"])  # fmt: skip
            try:
                valid.append(self._validated(request))
            except InvalidRequest as exc:
                problems += [f"[{index}] {p}" for p in exc.problems]
                continue
            total_bytes += json_bytes(valid[-1].json)
        too_large = over(
            "submit", total_bytes, "bytes of requests", caps.max_submit_bytes, "max_submit_bytes"
        )
        if too_large:
            problems.append(too_large)
        if problems:
            raise InvalidRequest(problems)
        return self._store(valid)

    def _validated(self, request: JobRequest | Mapping[str, Any], *, check_files: bool = True) -> _Valid:
        return _validated(request, check_files, None, self.caps)

    def _store(self, requests: Sequence[_Valid]) -> list[str]:
        """Store validated requests as new jobs with their first messages and return their ids: one
        script call per chunk of ``_CHUNK`` jobs (every record with its message, or nothing), all on one
        connection. Each chunk is built while Redis runs the one before it, whose reply is read only
        then, so Python and Redis work at the same time; an error reply stops the call before the next
        chunk is sent. The calls go out as plain EVALSHA commands on the connection itself: redis-py's
        command machinery costs a single submit about as much as its round trip."""
        ids: list[str] = []
        in_flight: _Call | None = None
        with self._connection() as conn:
            for start in range(0, len(requests), _CHUNK):
                call = self._call(requests[start : start + _CHUNK])
                if in_flight is not None:
                    ids += self._finish(conn, in_flight)
                in_flight = call
                try:
                    self._send(conn, call)
                except (redis.ConnectionError, redis.TimeoutError):
                    in_flight = None
                    ids += self._resend(conn, call)
            if in_flight is not None:
                ids += self._finish(conn, in_flight)
        return ids

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Connection]:
        """A connection for submits: the one this producer keeps, or one of the pool's while another
        thread uses it. The pool checks a connection it hands out for unread data, with as many system
        calls as a submit makes; the kept one has none (a failed use disconnects it). A forked process
        leaves its parent's connection alone."""
        pool = self.redis.connection_pool
        if pool.max_connections < 2 or not self._kept_lock.acquire(blocking=False):
            conn = pool.get_connection()
            try:
                with _disconnected_on_error(conn):
                    yield conn
            finally:
                pool.release(conn)
            return
        try:
            if self._kept is None or self._kept[0] != os.getpid():
                self._kept = (os.getpid(), pool.get_connection())
            with _disconnected_on_error(self._kept[1]):
                yield self._kept[1]
        finally:
            self._kept_lock.release()

    def _send(self, conn: AbstractConnection, call: _Call) -> None:
        """Send ``call`` on ``conn`` without reading its reply, in one system call (redis-py sends a packed
        command in pieces of 6 kB, a system call each)."""
        command = ("EVALSHA", _SUBMIT_SHA, len(call.keys), *call.keys, *call.args)
        packed = conn.pack_command(*command)  # type: ignore[no-untyped-call]
        conn.send_packed_command([b"".join(packed)])  # type: ignore[no-untyped-call]

    def _finish(self, conn: AbstractConnection, call: _Call) -> list[str]:
        """Read the reply to ``call``, sent on ``conn``."""
        try:
            conn.read_response()
        except (NoScriptError, redis.ConnectionError, redis.TimeoutError):
            return self._resend(conn, call)
        return call.ids

    def _resend(self, conn: AbstractConnection, call: _Call) -> list[str]:
        """Send ``call`` again on ``conn`` after Redis did not have the script (nothing ran) or the
        connection broke (it may have run; the script never runs a call twice): the script is loaded
        first (a restarted Redis has none), and a broken connection is retried as the client's retry
        policy says."""

        def send_again() -> None:
            conn.send_command("SCRIPT", "LOAD", _SUBMIT_LUA)  # type: ignore[no-untyped-call]
            conn.read_response()
            self._send(conn, call)
            conn.read_response()

        conn.disconnect()  # type: ignore[no-untyped-call]
        conn.retry.call_with_retry(send_again, lambda _: conn.disconnect())  # type: ignore[no-untyped-call]
        return call.ids

    def _call(self, requests: Sequence[_Valid]) -> _Call:
        """The submit script's call that stores ``requests`` as new jobs with their first messages."""
        ids = _new_job_ids(len(requests))
        job_queues = [L.QUEUE_FOR_KIND[valid.request.kind] for valid in requests]
        messages = task_messages(
            L.START_TASK, [([job_id], q) for job_id, q in zip(ids, job_queues, strict=True)]
        )
        queues: dict[str, int] = {}  # queue -> its index in KEYS
        groups: dict[tuple[str, str], int] = {}  # (kind, tenant) -> its index among the groups
        group_args: list[str | int] = []
        runs: list[int] = []  # group, count, group, count ...
        job_args: list[str] = []
        for valid, queue, message in zip(requests, job_queues, messages, strict=True):
            kind, tenant = valid.request.kind, valid.request.tenant or ""
            group = groups.get((kind, tenant))
            if group is None:
                group = groups[kind, tenant] = len(groups) + 1
                group_args += (queues.setdefault(queue, len(queues) + 1), kind, tenant)
            if runs and runs[-2] == group:
                runs[-1] += 1
            else:
                runs += (group, 1)
            job_args += (valid.json, message)
        now = L.now_iso()
        args = [len(queues), now, L.epoch_ms(now), len(groups), len(runs) // 2, *group_args, *runs, *job_args]
        return _Call(ids, [*queues, *(L.job_key(job_id) for job_id in ids)], args)

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
        file's size: a batch sync.so would refuse is refused here and nothing is stored, and so is one of
        more jobs than ``GENQ_CAPS__MAX_BATCH_JOBS``, and one on a plan without batches (``batch_plan``)."""
        count = len(requests)
        if count > self.caps.max_batch_jobs or count > BATCH_MAX_RECORDS:  # the jobs are not even read
            raise InvalidRequest([self._batch_count_problem(count)])
        plan = self.batch_plan()
        parsed, problems = self._batch_members(requests)
        if plan is not None and plan[0] not in BATCH_PLANS:
            problems.insert(0, _plan_problem(*plan))
        if len(parsed) < BATCH_MIN_RECORDS:
            problems.append(self._batch_count_problem(len(parsed)))
        for tenant in sorted({m.tenant for m in parsed if m.tenant is not None}):
            if self.redis.exists(L.BUDGET_KEY.format(tenant=tenant)):
                held = "which a batch's jobs are not held to (sync.so estimates no batch)"
                problems.append(f"batch: tenant {tenant} has a spend budget, {held}: submit them one by one")
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
            created = dict.fromkeys(job_ids, L.epoch_ms(now)) | {batch_id: L.epoch_ms(fields[L.F_CREATED])}
            pipe.zadd(L.jobs_key(JobStatus.QUEUED), created)
            pipe.lpush(queue, message)
            pipe.execute()
        return BatchSubmission(batch_id, job_ids)

    def batch_plan(self) -> tuple[str, str] | None:
        """The sync.so plan a batch would run on, and where genq knows it from: this process's
        ``GENQ_SYNCSO__PLAN`` if it is set, else the plan the workers' settings name, which their sync.so
        sweep registered in Redis (``layout.PLANS_KEY``); None before either is known."""
        own = next((v for k, v in os.environ.items() if k.upper() == PLAN_SETTING), None)
        if own is not None:
            return own.strip().lower(), "here"
        registered = self.redis.hget(L.PLANS_KEY, KINDS["lipsync"].provider)
        return (L.text(registered), "workers") if registered is not None else None

    def unserved(self, requests: Iterable[JobRequest | Mapping[str, Any]]) -> dict[str, tuple[str, ...]]:
        """The providers ``requests`` need (a pipeline: those of its steps) for which no worker has
        registered an account in Redis (``layout.ACCOUNTS_KEY``: each worker's status sweep registers its
        own as it starts, and it stays), each with the settings that configure it on the workers. Their
        jobs wait in their queues until such workers start."""
        needed = dict.fromkeys(KINDS[kind].provider for r in requests for kind in _kinds(r) if kind in KINDS)
        registered = {L.text(n).split(".", 1)[0] for n in self.redis.hkeys(L.ACCOUNTS_KEY)}
        return {p: CREDENTIALS[p] for p in needed if p in CREDENTIALS and p not in registered}

    def _batch_count_problem(self, count: int) -> str:
        if count > self.caps.max_batch_jobs and self.caps.max_batch_jobs < BATCH_MAX_RECORDS:
            return f"batch: {count} jobs; at most {self.caps.max_batch_jobs} ({setting('max_batch_jobs')})"
        return (f"batch: {count} jobs; a sync.so batch takes {BATCH_MIN_RECORDS} to {BATCH_MAX_RECORDS} "
                "(submit fewer jobs one by one)")  # fmt: skip

    def _batch_members(
        self, requests: Sequence[JobRequest | Mapping[str, Any]]
    ) -> tuple[list[LipsyncRequest], list[str]]:
        parsed: list[LipsyncRequest] = []
        problems: list[str] = []
        for index, request in enumerate(requests):
            try:
                member = self._validated(request, check_files=False).request
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
            problems = [
                _problem(err, LipsyncBatchRequest).replace("request: ", "batch: ", 1) for err in exc.errors()
            ]
            raise InvalidRequest(problems) from None

    def _prepare(
        self, job_id: str, request: JobRequest, request_json: str | None = None
    ) -> tuple[dict[str, str], str, str]:
        queue = L.QUEUE_FOR_KIND[request.kind]
        now = L.now_iso()
        text = request.model_dump_json() if request_json is None else request_json
        fields = L.new_job_fields(job_id, text, request.kind, request.tenant, now)
        return fields, task_message(L.START_TASK, [job_id], queue), queue

    def get(self, job_id: str, *, presign: bool = True) -> JobRecord:
        """The job's current record; ``JobNotFound`` if there is none. With ``presign``, each output in an
        S3 store carries a short-lived ``download_url`` (``presigned``)."""
        raw = self.redis.hgetall(L.job_key(job_id))
        if not raw:
            raise JobNotFound(job_id)
        record = L.record_from_fields(job_id, raw)
        return self.presigned(record) if presign and record.outputs else record

    def get_many(self, job_ids: Sequence[str], *, presign: bool = True) -> list[JobRecord | None]:
        """The current records of ``job_ids`` in one round trip, in order; None where there is none. With
        ``presign``, as ``get``."""
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(L.job_key(job_id))
            raws = pipe.execute()
        records = [
            L.record_from_fields(job_id, raw) if raw else None
            for job_id, raw in zip(job_ids, raws, strict=True)
        ]
        return [self.presigned(r) if presign and r is not None and r.outputs else r for r in records]

    def presigned(self, record: JobRecord) -> JobRecord:
        """``record`` with a presigned GET URL (``GENQ_OUTPUTS__PRESIGN_EXPIRES_S``, 15 minutes) on each
        output in an S3 store: whoever gets it downloads the output with no credentials. An output in a
        file store keeps its path only; one this process has no credentials for keeps no URL."""
        return record.model_copy(update={"outputs": [self._presigned(o) for o in record.outputs]})

    def _presigned(self, output: Output) -> Output:
        if not output.store_url or not output.store_url.startswith("s3://"):
            return output
        try:
            url = self.store_for(output.store_url).presign(output.store_url)
        except StoreError:
            return output
        return output.model_copy(update={"download_url": url})

    def store_for(self, store_url: str) -> OutputStore:
        """A store that reads ``store_url`` with this process's output settings (one per bucket)."""
        where = store_url.split("/", 3)[2] if store_url.startswith("s3://") else "file"
        with self._kept_lock:
            if where not in self._stores:
                settings = self._outputs or OutputSettings.from_env()[0]
                self._stores[where] = store_for(store_url, settings, Path())
            return self._stores[where]

    def read_output(self, output: Output) -> Iterator[bytes]:
        """The output's bytes, from wherever its store is (``StoreError`` if this host cannot reach it:
        another host's file store, an S3 store without credentials)."""
        store_url = output.store_url or Path(output.path).resolve().as_uri()  # records from before stores
        return self.store_for(store_url).read(store_url)

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
        Cancelling a batch cancels each of its jobs too, and cancelling a pipeline each of its steps' jobs
        that has not ended (a provider job already started is followed to its end)."""
        keys, args = L.transition_call(job_id, JobStatus.CANCELLED)
        if self._transition(keys=keys, args=args) is None:
            raise JobNotFound(job_id)
        record = self.get(job_id)
        members: list[str] = []
        if isinstance(record.request, LipsyncBatchRequest):  # a batch's jobs are cancelled with it
            members = list(record.request.jobs)
        elif isinstance(record.request, PipelineRequest):  # and a pipeline's steps' jobs
            members = list(record.provider_ids.values())
        for member in members:
            keys, args = L.transition_call(member, JobStatus.CANCELLED)
            self._transition(keys=keys, args=args)
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

    def jobs(
        self,
        *,
        status: JobStatus | str | None = None,
        kind: str | None = None,
        tenant: str | None = None,
        since: datetime | timedelta | None = None,
        limit: int = 50,
    ) -> JobListing:
        """The newest ``limit`` jobs (``genq jobs``) of a ``status``, ``kind`` and ``tenant`` (None: any),
        created at or after ``since`` (a time, or how long ago), from the jobs index, with how many jobs
        each status has among those created since then (of every kind and tenant). A kind or tenant
        filter reads the two fields of each job newest first until ``limit`` match (``producers.jobs``)."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if isinstance(since, timedelta):
            since = datetime.now(UTC) - since
        since_ms = None if since is None else L.epoch_ms(since)
        wanted = None if status is None else JobStatus(status)
        return find(self.redis, status=wanted, kind=kind, tenant=tenant, since_ms=since_ms, limit=limit)

    def replay(self, job_id: str, *, fresh: bool = False) -> JobRecord:
        """Run a failed job again from its first stage, keeping its provider ids (so a generation it
        already has is followed, not created again) and the ends recorded for them, except genq's own
        wait timeouts (so a wait that timed out follows its provider job again). Refuses a job that did
        not fail. With ``fresh``, a job whose provider job failed at the provider first drops that
        provider job's ids and recorded end (``JobError.failed_provider_ids``), so a new one is created
        (and paid for); everything else is kept. A pipeline's replay always makes new step jobs."""
        job = self.get(job_id)
        if isinstance(job.request, PipelineRequest):
            return self._replay_pipeline(job)
        if job.pipeline is not None:
            raise InvalidRequest([f"job {job_id} runs a step of pipeline {job.pipeline}: replay the pipeline "
                                  "(it runs its failed steps again, with new jobs)"])  # fmt: skip
        kind = SUBMITTABLE.get(job.kind)
        if kind is None:
            raise InvalidRequest(
                [f"job {job_id} is a {job.kind}: replay its failed jobs instead (each runs alone)"]
            )
        message = task_message(L.START_TASK, [job_id], L.QUEUE_FOR_KIND[job.kind])
        ends = L.WAIT_RESULT_KEY.format(provider=kind.provider, provider_id="")  # + a provider id
        keys = [L.job_key(job_id), L.DEAD_LETTERS, L.QUEUE_FOR_KIND[job.kind]]
        args = [L.now_iso(), job_id, message, ends]
        if fresh:
            self._replay_fresh(job, ends, keys, args)
            return self.get(job_id)
        result = self._replay(keys=keys, args=args)
        if result is None:
            raise JobNotFound(job_id)
        if result != 1:
            raise InvalidRequest([f"job {job_id} is {L.text(result)}; only a failed job can be replayed"])
        return self.get(job_id)

    def _replay_fresh(self, job: JobRecord, ends: str, keys: list[str], args: list[str]) -> None:
        """``REPLAY_LUA`` after dropping the provider job that failed at the provider (its ids, its
        recorded end) and counting the fresh replay (``L.FRESH_REPLAYS``), in one transaction, which a
        concurrent change to the job makes fail."""
        if job.status is not JobStatus.FAILED:
            raise InvalidRequest([f"job {job.id} is {job.status.value}; only a failed job can be replayed"])
        names = job.error.failed_provider_ids if job.error else ()
        if not names:
            raise InvalidRequest([f"job {job.id} {_said(job.error)}, not with a provider job that failed at "
                                  f"the provider: nothing to make anew (genq replay {job.id} runs it again "
                                  "as it is)"])  # fmt: skip
        key, fresh = L.job_key(job.id), int(job.data.get(L.FRESH_REPLAYS, 0)) + 1
        dropped = [job.provider_ids[name] for name in names if name in job.provider_ids]
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.watch(key)  # type: ignore[no-untyped-call]
            if L.text(pipe.hget(key, L.F_STATUS) or b"") != JobStatus.FAILED.value:
                raise InvalidRequest([f"job {job.id} changed while it was replayed; try again"])
            pipe.multi()
            pipe.hdel(key, *(L.PROVIDER_ID_PREFIX + name for name in names))
            if dropped:
                pipe.delete(*(ends + provider_id for provider_id in dropped))
            pipe.hset(key, L.DATA_PREFIX + L.FRESH_REPLAYS, json.dumps(fresh))
            self._replay(keys=keys, args=args, client=pipe)
            try:
                pipe.execute()
            except redis.WatchError:
                raise InvalidRequest([f"job {job.id} changed while it was replayed; try again"]) from None

    def _replay_pipeline(self, job: JobRecord) -> JobRecord:
        """Run a failed pipeline again: each run of a step that succeeded keeps its job and output; every
        other run (failed, cancelled, skipped or never reached) and the pipeline's end run again, a
        run whose job was made getting a new job (its provider job failed: a new one is made). In one
        transaction (the jobs index moved with it), which a concurrent change to the pipeline makes fail."""
        assert isinstance(job.request, PipelineRequest)
        if job.status is not JobStatus.FAILED:
            raise InvalidRequest([f"job {job.id} is {job.status.value}; only a failed job can be replayed"])
        kept = {
            key
            for key in job.request.shape().all_nodes()
            if (job.data.get(OUTCOME_PREFIX + key) or {}).get("status") == "succeeded"
        }
        again = [key for key in job.request.shape().all_nodes() if key not in kept] + [END]
        generations = dict(job.data.get(GENERATIONS, {}))
        for key in again:
            if key in job.provider_ids:
                generations[key] = int(generations.get(key, 0)) + 1
        fields = [L.F_ERROR, L.F_FINISHED]
        for key in again:
            fields += [L.STAGE_PREFIX + key, L.DATA_PREFIX + OUTCOME_PREFIX + key, L.PROVIDER_ID_PREFIX + key]
        message = task_message(L.START_TASK, [job.id], L.QUEUE_FOR_KIND[job.kind])
        key = L.job_key(job.id)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.watch(key)  # type: ignore[no-untyped-call]
            if L.text(pipe.hget(key, L.F_STATUS) or b"") != JobStatus.FAILED.value:
                raise InvalidRequest([f"job {job.id} changed while it was replayed; try again"])
            created = pipe.zscore(L.jobs_key(JobStatus.FAILED), job.id)  # moves only with the status
            pipe.multi()
            pipe.hdel(key, *fields)
            pipe.hset(key, mapping={L.F_STATUS: JobStatus.QUEUED.value, L.F_UPDATED: L.now_iso(),
                                    L.DATA_PREFIX + GENERATIONS: json.dumps(generations)})  # fmt: skip
            pipe.persist(key)
            pipe.zrem(L.jobs_key(JobStatus.FAILED), job.id)
            pipe.zadd(L.jobs_key(JobStatus.QUEUED), {job.id: created or L.epoch_ms(job.created_at)})
            pipe.zrem(L.DEAD_LETTERS, job.id)
            pipe.lpush(L.QUEUE_FOR_KIND[job.kind], message)
            try:
                pipe.execute()
            except redis.WatchError:
                raise InvalidRequest([f"job {job.id} changed while it was replayed; try again"]) from None
        return self.get(job.id)

    def close(self) -> None:
        with self._kept_lock:
            if self._kept is not None and self._kept[0] == os.getpid():
                self.redis.connection_pool.release(self._kept[1])
            self._kept = None
        self.redis.close()
