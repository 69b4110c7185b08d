"""The reconciler: the one place that repairs what a lost write left behind, so recovery waits on no
clock meant for something else. One worker at a time runs it (a Redis lease, like the status sweep).
Every ``reconcile_every_s`` it:

- **puts lost step runs back.** A running job that has not moved for ``stale_s`` (or since a Redis restart
  the reconciler saw) and has no message anywhere (its queue, kombu's unacknowledged messages, the
  schedule, a parked wait, a pool's parked callers), two passes in a row, gets the runs its step graph
  says are due (``Graph.frontier``) pushed again. A message pushed twice is harmless: a run of a stage
  that advanced is skipped. A pipeline's run that waits for a step's job is held by the notice that
  job's end pushes (``layout.PIPELINE_NOTIFY_KEY``).
- **frees pool slots no step holds.** A lease whose job has ended, or whose step that lets go of the
  pool is done, is released (which wakes a parked caller), instead of waiting out its time to live.
- **checks again what a sweep held when Redis restarted.** Parked ids a status sweep had claimed may have
  lost the write of their next check: each is due again within one check interval, not ``claim_hold_s``.
- **brings back messages nobody holds after Redis restarted.** Redis restarted from its append-only
  file may have lost the acknowledgement of a message some worker had finished: kombu would give it
  back only after the visibility timeout. Once every live worker's heartbeat has beaten since the
  restart, an unacknowledged message whose time is older than the restart is held by no one: it goes
  back to its queue.

Each repair is logged and counted (``REPAIRS_KEY``, exported as ``genq_repairs_total{kind}``).
Places are read upstream first (parked, scheduled, queued, then taken), so a message moving along while
they are read is seen in the later place.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis

from schemas import JobRecord, JobStatus, StageStatus
from schemas import layout as L
from worker.context import Context, watchers
from worker.graph import Graph, run_message
from worker.limits import Limiter, Pool
from worker.lua import source
from worker.providers.registry import graph_for
from worker.spend import Spend
from worker.store import JobStore
from worker.sweep import holder_id

log = logging.getLogger(__name__)

SCAN_CHUNK = 1000  # queue entries read per round trip
CANDIDATES = 500  # stale jobs looked at per pass
# The job id in a message's argsrepr header: "['<job id>'" or "['<job id>', 2]".
_ARGSREPR = re.compile(rb'"argsrepr": "\[\'([^\'"]+)\'')


@dataclass
class Repairs:
    messages: int = 0  # runs pushed again
    leases: int = 0  # pool slots freed
    unacked: int = 0  # messages brought back after a restart
    spend: int = 0  # reservations of ended or vanished jobs settled


class Reconciler:
    def __init__(
        self,
        client: redis.Redis,
        limiter: Limiter,
        pools: Sequence[Pool],
        *,
        queues: Sequence[str],
        wait_namespaces: Sequence[str],
        stale_s: float,
        every_s: float,
        lease_s: float,
        heartbeat_s: float,
        sweeps: Sequence[tuple[str, str, float]] = (),
        holder: str | None = None,
    ) -> None:
        self.redis = client
        self.store = JobStore(client)
        self.spend = Spend(client)
        self.limiter = limiter
        self.pools = list(pools)
        self.queues = list(queues)
        self.wait_namespaces = list(wait_namespaces)
        # (wait namespace, account or "" when this worker has no credentials for it, check interval) of
        # each provider's status sweep.
        self.sweeps = list(sweeps)
        self.stale_s = stale_s
        self.every_s = every_s
        self.lease_s = lease_s
        self.heartbeat_s = heartbeat_s
        self.holder = holder or holder_id()
        self.stopped = threading.Event()
        self._lease = client.register_script(source("lease"))
        self._repush = client.register_script(source("repush"))
        self._suspects: set[str] = set()  # running jobs found with no message on the last pass
        self._restarted_at: float | None = None  # when a Redis restart was seen, until it is dealt with
        self._restart_ms = 0  # the last restart this reconciler saw (the Redis server's clock, ms)
        self.total = Repairs()

    @classmethod
    def of(cls, ctx: Context, queues: Sequence[str]) -> Reconciler:
        """The reconciler over ``queues`` and every provider's pools and wait namespaces: whichever
        worker leads it (a sync.so worker may hold no AI Studios credentials), it sees every job's parked
        stages, and so never takes a job parked with another provider for lost."""
        runs = ctx.settings.runs
        sweeps = watchers(ctx, configured_only=False)  # every provider's: no credentials needed
        # The accounts this worker sweeps; "" for a provider it has no credentials of (the account its
        # workers registered is read when needed, see _check_claimed_again).
        accounts = {w.provider: w.account for w in watchers(ctx)}
        return cls(
            ctx.redis,
            ctx.limiter,
            ctx.budgets.pools,
            queues=queues,
            wait_namespaces=[w.provider for w in sweeps],
            sweeps=[(w.provider, accounts.get(w.provider, ""), w.check_interval_s) for w in sweeps],
            stale_s=runs.stale_s,
            every_s=runs.reconcile_every_s,
            lease_s=runs.leader_lease_s,
            heartbeat_s=runs.heartbeat_s,
        )

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                if self.leads():
                    self.reconcile()
            except redis.RedisError as exc:
                log.warning("reconciler: Redis unavailable (%s)", exc)
            self.stopped.wait(self.every_s)

    def stop(self) -> None:
        self.stopped.set()

    def leads(self) -> bool:
        return bool(
            self._lease(keys=[L.RECONCILER_LEASE_KEY], args=[self.holder, round(self.lease_s * 1000)])
        )

    def reconcile(self) -> Repairs:
        """One pass; returns what it repaired."""
        repairs = Repairs(
            unacked=self.restore_after_restart(),
            messages=self.repush_lost(),
            leases=self.free_slots(),
            spend=self.settle_spend(),
        )
        for kind, count in (
            ("message", repairs.messages),
            ("lease", repairs.leases),
            ("unacked", repairs.unacked),
            ("spend", repairs.spend),
        ):
            if count:
                self.redis.hincrby(L.REPAIRS_KEY, kind, count)
        self.total.messages += repairs.messages
        self.total.leases += repairs.leases
        self.total.unacked += repairs.unacked
        self.total.spend += repairs.spend
        return repairs

    # Lost step runs.

    def repush_lost(self) -> int:
        """Push again the due runs of each running job that has no message anywhere, two passes in a
        row, and has not moved for ``stale_s`` or since a Redis restart (whose lost writes are what
        left it so: no need to wait out ``stale_s`` then)."""
        now_ms = self._now_ms()
        cutoff = max(now_ms - round(self.stale_s * 1000), self._restart_ms)
        stale = [
            L.text(j)
            for j in self.redis.zrangebyscore(L.RUNNING_KEY, "-inf", cutoff, start=0, num=CANDIDATES)
        ]
        if not stale:
            self._suspects = set()
            return 0
        lost = set(stale) - self.with_messages(set(stale))
        confirmed, self._suspects = lost & self._suspects, lost - self._suspects
        pushed = 0
        for job_id in sorted(confirmed):
            pushed += self._repush_job(job_id, cutoff)
        return pushed

    def _repush_job(self, job_id: str, cutoff_ms: int) -> int:
        raw = self.redis.hgetall(L.job_key(job_id))
        if not raw:
            self.redis.zrem(L.RUNNING_KEY, job_id)
            return 0
        job = L.record_from_fields(job_id, raw)
        runs = graph_for(job.kind).frontier(job)
        root = L.text(raw.get(L.F_ROOT.encode(), b"")) or None
        args: list[str] = []
        for run in runs:
            args += run_message(run.step.task, job_id, run.args, root_id=root)
        pushed = int(self._repush(keys=[L.job_key(job_id), L.RUNNING_KEY], args=[cutoff_ms, *args]))
        if pushed:
            log.warning("job %s had no message anywhere: pushed %s again",
                        job_id, ", ".join(run.state_key for run in runs))  # fmt: skip
        elif not runs:
            log.warning("job %s has no message anywhere and no step due (its graph: %s)", job_id, job.kind)
        self._suspects.discard(job_id)
        return pushed

    def orphans(self) -> set[str]:
        """The running jobs that have no message anywhere now, however briefly (what a pass finds two
        times in a row and repairs)."""
        running = {L.text(j) for j in self.redis.zrange(L.RUNNING_KEY, 0, -1)}
        return running - self.with_messages(running) if running else set()

    def with_messages(self, jobs: set[str]) -> set[str]:
        """Which of ``jobs`` have a message somewhere (read upstream first)."""
        found: set[str] = set()
        found |= self._parked_in_pools()
        found |= self._parked_in_waits()
        found |= self._waiting_for_steps()
        found |= self._scheduled()
        if jobs - found:
            found |= self._in_lists(self.queues)
        if jobs - found:
            found |= self._taken()
        return found

    def _parked_in_pools(self) -> set[str]:
        with self.redis.pipeline(transaction=False) as pipe:
            for pool in self.pools:
                pipe.hkeys(L.POOL_KEY.format(name=pool.name) + ":waiting")
            return {L.text(h).split(":", 1)[0] for holders in pipe.execute() for h in holders}

    def _parked_in_waits(self) -> set[str]:
        with self.redis.pipeline(transaction=False) as pipe:
            for namespace in self.wait_namespaces:
                pipe.hvals(L.wait_keys(namespace)[0])
            return {json.loads(entry)["job"] for entries in pipe.execute() for entry in entries}

    def _waiting_for_steps(self) -> set[str]:
        """Pipelines whose runs wait for a step's job to end: the notice that job's end pushes holds it."""
        return {json.loads(notice)["pipeline"] for notice in self.redis.hvals(L.PIPELINE_NOTIFY_KEY)}

    def _scheduled(self) -> set[str]:
        with self.redis.pipeline(transaction=False) as pipe:
            for queue in self.queues:
                pipe.hkeys(L.SCHEDULE_KEY.format(queue=queue) + ":items")
            return {L.text(k).split(":", 1)[0] for keys in pipe.execute() for k in keys}

    def _in_lists(self, queues: Iterable[str]) -> set[str]:
        found: set[str] = set()
        for queue in queues:
            start = 0
            while chunk := self.redis.lrange(queue, start, start + SCAN_CHUNK - 1):
                found |= _job_ids(chunk)
                start += SCAN_CHUNK
        return found

    def _taken(self) -> set[str]:
        return _job_ids(self.redis.hvals(L.UNACKED))

    # Pool slots.

    def free_slots(self) -> int:
        """Release each lease whose holder's job ended or whose step that lets go of the pool is done."""
        freed = 0
        for pool in self.pools:
            holders = [
                L.text(h) for h in self.redis.zrange(L.POOL_KEY.format(name=pool.name) + ":leases", 0, -1)
            ]
            if not holders:
                continue
            jobs = self.store.get_many([h.split(":", 1)[0] for h in holders])
            for holder, job in zip(holders, jobs, strict=True):
                if job is not None and not _holds(job, holder, pool.name):
                    self.limiter.release(pool, holder)
                    log.warning("pool %s: job %s (%s) no longer holds its slot; released", pool.name,
                                job.id, job.status.value)  # fmt: skip
                    freed += 1
        return freed

    # Spend reservations.

    def settle_spend(self) -> int:
        """Settle the reservation of each job that ended without settling it (cancelled, or its worker
        killed between its end and the settle) or whose record is gone (nothing charged), by
        ``worker.spend.charge_of``."""
        held: list[tuple[str, str, JobRecord | None, bool]] = []
        for tenant in sorted(L.text(t) for t in self.redis.smembers(L.BUDGETS_KEY)):
            ids = list(self.spend.holds(tenant))
            for job_id, job in zip(ids, self.store.get_many(ids) if ids else [], strict=True):
                held.append((tenant, job_id, job, job is not None and graph_for(job.kind).spent(job)))
        settled = self.spend.settle_ended(iter(held))
        if settled:
            log.warning("spend: settled %d reservation(s) of jobs that had ended without settling", settled)
        return settled

    # Messages after a restart.

    def restore_after_restart(self) -> int:
        """Once a restart of Redis was seen and every live worker has beaten since, bring back the
        unacknowledged messages whose time is older than the restart."""
        run_id = L.text(self.redis.info("server")["run_id"])
        seen = self.redis.getset(L.REDIS_RUN_ID_KEY, run_id)
        if seen is not None and L.text(seen) != run_id:
            self._restarted_at = time.time()
            self._restart_ms = self._now_ms()
            log.warning("Redis restarted (run id %s, was %s)", run_id, L.text(seen))
            self._check_claimed_again()
        if self._restarted_at is None or time.time() < self._restarted_at + 2 * self.heartbeat_s:
            return 0
        cutoff, self._restarted_at = self._restarted_at, None
        tags = [L.text(t) for t in self.redis.zrangebyscore(L.UNACKED_INDEX, "-inf", cutoff)]
        restored = sum(self._restore(tag) for tag in tags)
        if restored:
            log.warning(
                "after the Redis restart: %d messages no worker holds put back on their queues", restored
            )
        return restored

    def _check_claimed_again(self) -> None:
        """Parked ids a status sweep had claimed when Redis went away may have lost the write that
        scheduled their next check: each due later than one check interval from now is due then."""
        now_ms = self._now_ms()
        registered = {L.text(k): L.text(v) for k, v in self.redis.hgetall(L.ACCOUNTS_KEY).items()}
        for namespace, known, interval_s in self.sweeps:
            account = known or registered.get(namespace)
            if not account:
                continue
            due_key = L.wait_keys(namespace)[2] + account
            next_ms = now_ms + round(interval_s * 1000)
            held = [L.text(i) for i in self.redis.zrangebyscore(due_key, f"({next_ms}", "+inf")]
            if held:
                self.redis.zadd(due_key, dict.fromkeys(held, next_ms), xx=True)
                log.warning("after the Redis restart: %d parked %s id(s) held for a check are due again in "
                            "%.1f s", len(held), namespace, interval_s)  # fmt: skip

    def _now_ms(self) -> int:
        seconds, micros = self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def _restore(self, tag: str) -> int:
        """kombu's ``restore_by_tag``: back to the front of its queue, marked redelivered, in one step."""
        with self.redis.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(L.UNACKED)  # type: ignore[no-untyped-call]
                raw = pipe.hget(L.UNACKED, tag)
                pipe.multi()
                pipe.zrem(L.UNACKED_INDEX, tag)
                pipe.hdel(L.UNACKED, tag)
                if raw:
                    message, _exchange, routing_key = json.loads(raw)
                    message.get("headers", {})["redelivered"] = True
                    message.get("properties", {}).get("delivery_info", {})["redelivered"] = True
                    pipe.rpush(routing_key, json.dumps(message))
                pipe.execute()
            except redis.WatchError:
                return 0
        return 1 if raw else 0


def _job_ids(messages: Iterable[bytes | str]) -> set[str]:
    found = set()
    for message in messages:
        data = message.encode() if isinstance(message, str) else message
        match = _ARGSREPR.search(data)
        if match:
            found.add(match.group(1).decode())
    return found


def _holds(job: JobRecord, holder: str, pool: str) -> bool:
    """Whether ``holder`` (the job, or ``<job>:<branch>``) should still hold a slot of ``pool``: until its
    job ends or the step of its graph that gives the slot back is done. A pool its graph never gives back
    is not this job's to judge: its lease lapses by itself."""
    graph: Graph = graph_for(job.kind)
    _, _, branch = holder.partition(":")
    for step in graph.applying(job):
        if pool in step.releases:
            if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
                return False
            state = job.stages.get(step.state_key(int(branch) if branch else None))
            return state is None or state.status is not StageStatus.DONE
    return True
