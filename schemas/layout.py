"""Where genq keeps things in Redis: every key pattern, the job hash's fields, and its transitions.

This is part of the producer/worker contract, so it lives here as data and pure functions; each side
does its own I/O. Lifetimes:

- ``JOB_KEY`` hash: from submit until ``JOB_TTL_S`` after the job ends.
- ``IDEMPOTENCY_KEY`` string: the job id a producer key maps to; lives as long as the job.
- ``DEAD_LETTERS`` sorted set: job ids whose retries ran out, by time; kept until replayed or removed.
- ``JOBS_KEY`` sorted sets: every job, in the set of its status, by creation time (below).
- ``RUNNING_KEY`` sorted set and ``RUN_KEY`` strings: running jobs and stage runs in progress (below).
- Celery's own keys (queues named after ``QUEUE_FOR_KIND`` values, ``unacked``, ``_kombu.*``) are kombu's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from schemas.records import TERMINAL_STATUSES, JobError, JobRecord, JobStatus, Output, ParkedWait, StageState
from schemas.requests import KINDS, STORED_REQUEST

PREFIX = "genq:"
JOB_KEY = PREFIX + "job:{job_id}"
IDEMPOTENCY_KEY = PREFIX + "idem:{key}"
DEAD_LETTERS = PREFIX + "dead"
# Jobs that are running, by when they last moved (ms, Redis clock): a job enters as it starts, its score
# is set again at every step it advances, and it leaves as it ends. The reconciler (worker/reconcile.py)
# looks for a message of each job that has not moved for a while.
RUNNING_KEY = PREFIX + "running"
# One string per stage run in progress: "<task id> <host>:<pid>" of the process running it, renewed by
# that worker's heartbeat (worker/heartbeat.py) while it runs and lapsing soon after it dies, so a copy
# of the same message delivered meanwhile is not run beside it. ``{state}`` is the stage's state key.
RUN_KEY = PREFIX + "run:{job_id}:{state}"
# kombu's (Redis transport) messages taken by a worker and not yet acknowledged: ``UNACKED`` hash, delivery
# tag -> [message, exchange, routing key]; ``UNACKED_INDEX`` sorted set, delivery tag -> when it was taken
# (Unix seconds, the worker's clock), which genq's heartbeat keeps at now while the worker is alive.
UNACKED = "unacked"
# The reconciler (worker/reconcile.py): its leader's lease; the run id of the Redis it last saw (a new one
# means Redis restarted); and how many repairs it made, by kind (a hash, exported by `genq metrics`).
RECONCILER_LEASE_KEY = PREFIX + "reconciler"
REDIS_RUN_ID_KEY = PREFIX + "redis:run_id"
REPAIRS_KEY = PREFIX + "metrics:repairs"
UNACKED_INDEX = "unacked_index"
# Pipelines (worker/pipeline.py): a hash, job id of a pipeline's step -> the notice its end pushes, JSON
# {"pipeline", "queue", "message"}: the pipeline's run that waits for that job. Written with the job (one
# Lua step), taken and pushed by the step (advance.lua, TRANSITION_LUA) that ends the job; the reconciler
# counts a pipeline whose jobs' notices are here as holding its messages.
PIPELINE_NOTIFY_KEY = PREFIX + "pipeline:notify"
JOB_TTL_S = 7 * 24 * 3600
# The jobs index (`genq jobs`, ``Producer.jobs``): one sorted set per status, job id -> its creation time
# (ms, the ``created_at`` of its record). A job is in the set of its status and no other: it enters the
# queued set in the step that stores it (the submit scripts, submit_batch's transaction, pipeline_step.lua)
# and moves in the step that changes its status (``INDEX_LUA``'s ``index_move``). A job that ends trims
# its new status's set of entries created more than JOB_TTL_S ago (their records, which expire JOB_TTL_S
# after their end, are gone or about to go), so the ended sets hold about JOB_TTL_S of jobs; a listing
# trims them too, and drops an id whose record is gone. Queued and running jobs' records never expire.
JOBS_KEY = PREFIX + "jobs:{status}"
# The bytes each download of a job has written or will write (its Content-Length), a hash: the stage's
# state key (``download``, ``download[2]``) -> bytes. Its sum is held to GENQ_CAPS__MAX_JOB_OUTPUT_BYTES
# (worker/outputs.py). Expires JOB_TTL_S after its last write, as the job's record after its end.
OUTPUT_BYTES_KEY = PREFIX + "outbytes:{job_id}"
# Held by the worker that sweeps an output store (worker/retention.py) until its next sweep is due, so
# one worker sweeps each store per period; ``{store}`` names the store without credentials.
OUTPUT_SWEEP_KEY = PREFIX + "outputs:sweep:{store}"

# The first task of every job, and the queue each kind runs on. Queues are per provider, so a fleet
# scales each provider's workers on their own.
START_TASK = "genq.start"
DEFAULT_QUEUE = "default"
QUEUE_FOR_KIND: Mapping[str, str] = {kind.name: kind.provider for kind in KINDS.values()}

# Hash fields of JOB_KEY.
F_REQUEST = "request"
F_KIND = "kind"
F_TENANT = "tenant"
F_STATUS = "status"
F_CREATED = "created_at"
F_UPDATED = "updated_at"
F_FINISHED = "finished_at"
F_OUTPUTS = "outputs"
F_ERROR = "error"
F_ATTEMPTS = "attempts"
F_ROOT = "root"  # the task id of the job's first message, the root of every run's message
F_PARENT = "parent"  # the pipeline whose step this job runs, if any
STAGE_PREFIX = "stage:"
PROVIDER_ID_PREFIX = "pid:"
# What stages produced for later stages, as JSON: an analysis, the plan, one branch's output ...
DATA_PREFIX = "data:"
# A data field: how many times ``genq replay --fresh`` dropped a provider job of the job that failed at
# the provider; a sync.so create's Idempotency-Key carries it, so the new create makes a new generation.
FRESH_REPLAYS = "fresh_replays"

# Metrics (worker/metrics.py and TRANSITION_LUA add to them, `genq metrics` reads them): counters that
# only grow, kept until deleted (Prometheus handles a reset). Fields are label values joined by METRICS_SEP.
# - METRICS_STAGES_KEY hash: "<provider>|<stage>|<outcome>|<le>" -> stage runs that took at most le seconds
#   and more than the bucket below (per bucket, not cumulative; le "+Inf" for the rest);
#   "<provider>|<stage>|<outcome>|sum" -> their seconds.
# - METRICS_RESPONSES_KEY hash: "<provider>|<HTTP status>|<error code>" -> responses provider clients got.
# - METRICS_JOBS_KEY hash: "<kind>|<terminal status>" -> jobs that reached it (counted by TRANSITION_LUA).
METRICS_STAGES_KEY = PREFIX + "metrics:stages"
METRICS_RESPONSES_KEY = PREFIX + "metrics:responses"
METRICS_JOBS_KEY = PREFIX + "metrics:jobs"
METRICS_SEP = "|"

# The jobs index's Lua functions, at the head of every script that stores a job or changes its status (this
# module's, the producer's submit scripts, and run_begin, advance and pipeline_step as ``JobStore`` loads
# them). ``index_add``: jobs just stored, queued. ``index_move``: a job whose status changed, keeping its
# creation time (a job stored before the index existed has none: it enters scored by the Redis clock now);
# into an ended status, that set's entries created more than JOB_TTL_S ago leave.
INDEX_LUA = f"""
local function index_now()
  local t = redis.call('TIME')
  return t[1] * 1000 + math.floor(t[2] / 1000)
end
local function index_add(...)  -- created_ms, job, created_ms, job ...
  redis.call('ZADD', '{JOBS_KEY.format(status=JobStatus.QUEUED.value)}', ...)
end
local function index_move(job, from, to)
  if from == to then return end
  local old, new = '{JOBS_KEY.format(status="")}' .. from, '{JOBS_KEY.format(status="")}' .. to
  local created = redis.call('ZSCORE', old, job)
  if created then redis.call('ZREM', old, job) else created = index_now() end
  redis.call('ZADD', new, created, job)
  if to == 'succeeded' or to == 'failed' or to == 'cancelled' then
    redis.call('ZREMRANGEBYSCORE', new, '-inf', '(' .. (index_now() - {JOB_TTL_S * 1000}))
  end
end
"""


# Moves a job to ARGV[1] unless it already ended; sets updated_at (and finished_at and the TTL for a
# terminal status, counts the job in METRICS_JOBS_KEY and pushes its pipeline's notice, if it has one:
# PIPELINE_NOTIFY_KEY) and keeps RUNNING_KEY (a job enters it as it starts running and leaves it as it
# ends) and the jobs index (JOBS_KEY). Those are named here rather than in KEYS, so callers are
# unchanged; genq's one Redis is not a cluster. A failure's error and dead-letter entry, and the state of
# the stage it happened in (ARGV[9] its field, ARGV[10] the state), are written in the same step, so a
# job that has ended keeps its status, its first error and its place (or none) in the dead-letter set.
# KEYS and ARGV: ``transition_call``. Returns the previous status, or false when the job does not exist.
TRANSITION_LUA = f"""{INDEX_LUA}
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then return status end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'updated_at', ARGV[2])
index_move(ARGV[8], status, ARGV[1])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], '{F_ERROR}', ARGV[5]) end
if ARGV[6] == '1' then redis.call('ZADD', KEYS[2], tonumber(ARGV[7]), ARGV[8]) end
if ARGV[9] ~= '' then redis.call('HSET', KEYS[1], ARGV[9], ARGV[10]) end
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], 'finished_at', ARGV[2])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
  redis.call('ZREM', '{RUNNING_KEY}', ARGV[8])
  local kind = redis.call('HGET', KEYS[1], 'kind') or ''
  redis.call('HINCRBY', '{METRICS_JOBS_KEY}', kind .. '{METRICS_SEP}' .. ARGV[1], 1)
  local notice = redis.call('HGET', '{PIPELINE_NOTIFY_KEY}', ARGV[8])
  if notice then
    redis.call('HDEL', '{PIPELINE_NOTIFY_KEY}', ARGV[8])
    notice = cjson.decode(notice)
    redis.call('LPUSH', notice['queue'], notice['message'])
  end
elseif ARGV[1] == 'running' then
  redis.call('ZADD', '{RUNNING_KEY}', 'NX', math.floor(tonumber(ARGV[7]) * 1000), ARGV[8])
end
return status
"""


def transition_call(
    job_id: str,
    status: JobStatus,
    *,
    error: JobError | None = None,
    dead_letter: bool = False,
    stage: tuple[str, StageState] | None = None,
) -> tuple[list[str], list[str | float]]:
    """KEYS and ARGV of ``TRANSITION_LUA`` for one job: every caller builds them here. ``stage``: the
    state of the stage the job ends in, written with it."""
    now, terminal = datetime.now(UTC), status in TERMINAL_STATUSES
    field, state = (STAGE_PREFIX + stage[0], stage[1].model_dump_json()) if stage else ("", "")
    args: list[str | float] = [status.value, now.isoformat(), "1" if terminal else "0", JOB_TTL_S,
                               error.model_dump_json() if error else "", "1" if dead_letter else "0",
                               now.timestamp(), job_id, field, state]  # fmt: skip
    return [job_key(job_id), DEAD_LETTERS], args


# Puts a failed job back in line: status queued, error and stage history cleared, no expiry, out of the
# dead-letter set, moved in the jobs index, and its first message pushed, all at once. Provider ids stay,
# so stages resume (a recorded generation is followed, not created again). A wait's recorded end that is
# genq's own timeout is dropped, so the replayed wait follows its provider job again; a real end stays (a
# finished generation is downloaded, not made again). ARGV[4] is WAIT_RESULT_KEY of the job's provider
# without the id (those keys are named here rather than in KEYS, like TRANSITION_LUA's metrics). Returns
# 1, or the status of a job that had not failed, or false when there is no such job.
REPLAY_LUA = f"""{INDEX_LUA}
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
if status ~= 'failed' then return status end
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local field = fields[i]
  if string.sub(field, 1, 6) == 'stage:' then redis.call('HDEL', KEYS[1], field) end
  if string.sub(field, 1, 4) == 'pid:' then
    local key = ARGV[4] .. fields[i + 1]
    local ended = redis.call('GET', key)
    if ended and cjson.decode(ended)['state'] == 'timeout' then redis.call('DEL', key) end
  end
end
redis.call('HDEL', KEYS[1], 'error', 'finished_at')
redis.call('HSET', KEYS[1], 'status', 'queued', 'updated_at', ARGV[1])
redis.call('PERSIST', KEYS[1])
index_move(ARGV[2], 'failed', 'queued')
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('LPUSH', KEYS[3], ARGV[3])
return 1
"""


# Starts a job once: if it is still queued, moves it to running (into RUNNING_KEY and the jobs index's
# running set), records its root task id (ARGV[3]: Flower groups the job's runs under it) and pushes the
# first messages of its graph (ARGV[4:], onto KEYS[2]), in one step (genq.start). A redelivered start
# finds it running and does nothing, so a worker that died after this step and before its ack cannot
# start the job twice; one that died before it left the job queued, and the redelivery starts it.
# Returns 1, the status of a job that was not queued, or false.
START_LUA = f"""{INDEX_LUA}
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
if status ~= 'queued' then return status end
redis.call('HSET', KEYS[1], 'status', 'running', 'updated_at', ARGV[1], '{F_ROOT}', ARGV[3])
index_move(ARGV[2], 'queued', 'running')
local t = redis.call('TIME')
redis.call('ZADD', '{RUNNING_KEY}', 'NX', t[1] * 1000 + math.floor(t[2] / 1000), ARGV[2])
for i = 4, #ARGV do redis.call('LPUSH', KEYS[2], ARGV[i]) end
return 1
"""


def queue_for_task(task: str) -> str:
    """The queue a task's messages go to: ``genq.<provider>.<stage>`` runs on its provider's queue."""
    parts = task.split(".")
    return parts[1] if len(parts) == 3 else DEFAULT_QUEUE


def job_key(job_id: str) -> str:
    return JOB_KEY.format(job_id=job_id)


def output_bytes_key(job_id: str) -> str:
    return OUTPUT_BYTES_KEY.format(job_id=job_id)


def output_sweep_key(store: str) -> str:
    return OUTPUT_SWEEP_KEY.format(store=store)


def run_key(job_id: str, state: str) -> str:
    return RUN_KEY.format(job_id=job_id, state=state)


def idempotency_key(key: str) -> str:
    return IDEMPOTENCY_KEY.format(key=key)


def jobs_key(status: JobStatus | str) -> str:
    """The jobs index's set of one status."""
    return JOBS_KEY.format(status=JobStatus(status).value)


def epoch_ms(moment: str | datetime) -> int:
    """A time (a record's ISO text, or a datetime) in ms since the epoch: how the jobs index scores it."""
    return int((datetime.fromisoformat(moment) if isinstance(moment, str) else moment).timestamp() * 1000)


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def new_job_fields(job_id: str, request_json: str, kind: str, tenant: str | None, now: str) -> dict[str, str]:
    """The hash of a job that has just been submitted."""
    fields = {
        F_REQUEST: request_json,
        F_KIND: kind,
        F_STATUS: JobStatus.QUEUED.value,
        F_CREATED: now,
        F_UPDATED: now,
        F_ATTEMPTS: "0",
    }
    if tenant is not None:
        fields[F_TENANT] = tenant
    return fields


def record_from_fields(job_id: str, raw: Mapping[bytes | str, bytes | str]) -> JobRecord:
    """Decode a job hash (as HGETALL returns it) into a ``JobRecord``."""
    fields = {text(k): text(v) for k, v in raw.items()}
    stages = {
        name.removeprefix(STAGE_PREFIX): StageState.model_validate_json(value)
        for name, value in fields.items()
        if name.startswith(STAGE_PREFIX)
    }
    provider_ids = {
        name.removeprefix(PROVIDER_ID_PREFIX): value
        for name, value in fields.items()
        if name.startswith(PROVIDER_ID_PREFIX)
    }
    data = {
        name.removeprefix(DATA_PREFIX): json.loads(value)
        for name, value in fields.items()
        if name.startswith(DATA_PREFIX)
    }
    outputs: list[Any] = json.loads(fields.get(F_OUTPUTS, "[]"))
    error = fields.get(F_ERROR)
    return JobRecord(
        id=job_id,
        kind=fields[F_KIND],
        status=JobStatus(fields[F_STATUS]),
        request=STORED_REQUEST.validate_json(fields[F_REQUEST]),
        tenant=fields.get(F_TENANT),
        pipeline=fields.get(F_PARENT),
        cost_usd=int(fields[F_SPEND_COST]) / MICROS if F_SPEND_COST in fields else None,
        reserved_usd=int(fields[F_SPEND_HOLD].split(" ")[1]) / MICROS if F_SPEND_HOLD in fields else None,
        stages=stages,
        provider_ids=provider_ids,
        data=data,
        outputs=[Output.model_validate(o) for o in outputs],
        error=JobError.model_validate_json(error) if error else None,
        attempts=int(fields.get(F_ATTEMPTS, "0")),
        created_at=datetime.fromisoformat(fields[F_CREATED]),
        updated_at=datetime.fromisoformat(fields[F_UPDATED]),
        finished_at=datetime.fromisoformat(fields[F_FINISHED]) if F_FINISHED in fields else None,
    )


def text(value: object) -> str:
    """A Redis reply as text (redis-py types many replies loosely)."""
    return value.decode() if isinstance(value, bytes) else str(value)


# Spend budgets per tenant (worker/spend.py). Amounts are integers of micro-dollars.
# - BUDGET_KEY hash: limit, per (day|month), over (refuse|wait), unknown (the price a job of unknown cost
#   is admitted at; none: refused). BUDGETS_KEY set: the tenants that have one. Kept until deleted.
# - SPEND_KEY hash per tenant and period (2026-12-06, 2026-12): spent, reserved, refused; kept 70 days.
# - SPEND_HOLDS_KEY hash per tenant: job id -> "<period> <amount>" of each reservation not yet settled.
# - SPEND_WAITING_KEY set per tenant: the jobs waiting for budget (``over: wait``).
# - METRICS_REFUSALS_KEY hash: tenant -> jobs refused for budget (a counter).
# - Job fields: F_SPEND_HOLD "<period> <amount>" once reserved; F_SPEND_COST what it was charged.
BUDGET_KEY = PREFIX + "budget:{tenant}"
BUDGETS_KEY = PREFIX + "budgets"
SPEND_KEY = PREFIX + "spend:{tenant}:{period}"
SPEND_HOLDS_KEY = PREFIX + "spend:{tenant}:holds"
SPEND_WAITING_KEY = PREFIX + "spend:{tenant}:waiting"
METRICS_REFUSALS_KEY = PREFIX + "metrics:budget_refusals"
F_SPEND_HOLD = "spend_hold"
F_SPEND_COST = "spend_cost"
MICROS = 1_000_000  # amounts are kept as integers of micro-dollars


def spend_key(tenant: str, period: str) -> str:
    return SPEND_KEY.format(tenant=tenant, period=period)


# Provider budgets (worker/limits). `{name}` is a budget name such as `syncso.create`.
# - RATE_KEY:tat  string, the GCRA theoretical arrival time (ms); expires a minute after it passes.
# - RATE_KEY:resv sorted set, holder -> reserved time (ms); entries leave when used or a minute stale.
# - RATE_KEY:paused / POOL_KEY:paused  string, paused until (ms), set by a 429; expires with the pause.
# - POOL_KEY:leases sorted set, holder (job id) -> lease expiry (ms); a lapsed lease is reaped.
# - POOL_KEY:waiting hash, holder -> {queue, message, tenant} of a parked stage; POOL_KEY:t:{tenant} sorted
#   set of that tenant's parked holders by job age; POOL_KEY:tenants the tenants with parked holders;
#   POOL_KEY:rr the tenant served last. All leave when the holder is woken or releases.
RATE_KEY = PREFIX + "rate:{name}"
POOL_KEY = PREFIX + "pool:{name}"


# The Redis-side schedule (worker/schedule.py): delayed stage runs (budget re-runs, retry backoff).
# - SCHEDULE_KEY sorted set per queue, run key (job id and stage) -> due time (ms, Redis clock); a run
#   key is scheduled once, so a redelivered stage that schedules itself again replaces its entry.
# - SCHEDULE_KEY:items hash, run key -> "queue\nmessage"; both leave when the mover pushes the message.
# - SCHEDULE_CHANNEL pub/sub: the due time of an entry that became the earliest, so movers wake for it.
SCHEDULE_KEY = PREFIX + "schedule:{queue}"
SCHEDULE_CHANNEL = PREFIX + "schedule:wake"

# Parked waits (worker/waits.py): stages waiting for a provider job to end, woken by a sweep or webhook.
# - WAIT_DUE_KEY sorted set per provider account, provider id -> next status check (ms); leaves on wake.
# - WAIT_KEY:entries hash, provider id -> {job, stage, account, since, deadline} (JSON); leaves on wake.
# - WAIT_KEY:messages hash, provider id -> "queue\nmessage" of the parked stage's next run.
# - WAIT_RESULT_KEY string, the provider job's end as a sweep or webhook saw it (JSON); kept
#   WAIT_RESULT_TTL_S, so a stage that parks after its job ended is woken at once.
# - SWEEP_LEASE_KEY string, the worker that sweeps this account now; lapses when it stops renewing.
# - WEBHOOK_SEEN_KEY string per accepted delivery (its id or signature); kept past the 5 min tolerance.
WAIT_KEY = PREFIX + "wait:{provider}"
WAIT_DUE_KEY = WAIT_KEY + ":due:{account}"
WAIT_RESULT_KEY = WAIT_KEY + ":result:{provider_id}"
WAIT_RESULT_TTL_S = JOB_TTL_S
# - WAIT_PROGRESS_KEY string, a provider job's last progress a sweep saw and when it last moved
#   (JSON), for providers that report progress (a render stuck too long fails); expires with the wait.
WAIT_PROGRESS_KEY = WAIT_KEY + ":progress:{provider_id}"
SWEEP_LEASE_KEY = PREFIX + "sweep:{provider}:{account}"
# - ACCOUNTS_KEY hash, wait namespace (``<provider>`` or ``<provider>.<kind>``) -> the account a status
#   sweep runs for: written by each worker's sweep as it starts, kept until deleted, so that a service
#   without the credentials (`genq metrics`, `genq limits`) reports the accounts the fleet uses.
ACCOUNTS_KEY = PREFIX + "accounts"
# - PLANS_KEY hash, provider -> the plan its workers' settings name (sync.so: GENQ_SYNCSO__PLAN, default
#   creator), written with ACCOUNTS_KEY and kept like it, so that a producer without the workers' settings
#   refuses at submit what that plan cannot run (a sync.so batch below scale).
PLANS_KEY = PREFIX + "plans"
# - CLAIMED_KEY set per kind of provider job (e.g. ``syncso.batch``): the ids some genq record owns, so
#   a record adopting a provider job it found by a search (after a crash) never takes another's.
CLAIMED_KEY = PREFIX + "claimed:{kind}"
WEBHOOK_SEEN_KEY = PREFIX + "webhook:seen:{provider}:{digest}"


def parked_wait(
    provider: str, provider_id: str, entry: bytes | str, next_check_ms: float | None
) -> ParkedWait:
    """Decode a parked wait's entry (``WAIT_KEY:entries``) and its due score."""
    data = json.loads(entry)
    return ParkedWait(
        provider=provider,
        provider_id=provider_id,
        stage=data["stage"],
        since=datetime.fromtimestamp(data["since"] / 1000.0, UTC),
        deadline=datetime.fromtimestamp(data["deadline"] / 1000.0, UTC),
        next_check=None if next_check_ms is None else datetime.fromtimestamp(next_check_ms / 1000.0, UTC),
    )


def wait_keys(provider: str) -> tuple[str, str, str]:
    """(entries, messages, due-key prefix) of one provider's parked waits."""
    base = WAIT_KEY.format(provider=provider)
    return base + ":entries", base + ":messages", base + ":due:"


# Provider access tokens (AI Studios: 24 h tokens from appId + userKey), shared by every worker.
# - TOKEN_KEY string, JSON {"token", "expires_at"} of the account's current token; expires with it.
# - TOKEN_KEY:lock string, the worker fetching a new token now; lapses after a few seconds, so one
#   refresh runs at a time and a dead refresher blocks nobody for long.
TOKEN_KEY = PREFIX + "token:{provider}:{account}"
TOKEN_LOCK_KEY = TOKEN_KEY + ":lock"
