"""The reconciler's repairs (on the session Redis's scratch database): a running job with no message
anywhere gets its due runs pushed again, and only after two passes; a job whose message is somewhere is
left alone; a slot held by a job whose releasing step is done is freed; after a Redis restart, the
unacknowledged messages no worker's heartbeat renewed go back to their queues."""

from __future__ import annotations

import json
import time

import redis

from producers import Producer
from schemas import StageState, StageStatus
from schemas import layout as L
from schemas.wire import task_message
from tests.conftest import LIPSYNC
from worker.context import Context
from worker.limits import Pool, RedisLimiter, Waiter
from worker.providers.registry import specs
from worker.reconcile import Reconciler
from worker.settings import Settings
from worker.store import JobStore
from worker.waits import Waits

POOL = Pool("syncso.generations", 2, 180.0)


def reconciler(client: redis.Redis, **options: float) -> Reconciler:
    return Reconciler(client, RedisLimiter(client), [POOL], queues=["syncso"], wait_namespaces=["syncso"],
                      stale_s=options.get("stale_s", 0.0), every_s=1, lease_s=5,
                      heartbeat_s=options.get("heartbeat_s", 0.05))  # fmt: skip


def started(scratch_url: str, scratch: redis.Redis) -> str:
    """A running job whose first message (create) was lost."""
    job_id = Producer(scratch_url).submit(LIPSYNC)
    JobStore(scratch).start_once(job_id, "syncso", [], root="root-1")
    scratch.delete("syncso")
    return job_id


def queued(client: redis.Redis, queue: str = "syncso") -> list[dict[str, object]]:
    return [json.loads(m)["headers"] for m in client.lrange(queue, 0, -1)]


def test_a_running_job_with_no_message_gets_its_due_step_again_on_the_second_pass(
    scratch_url: str, scratch: redis.Redis
) -> None:
    job_id = started(scratch_url, scratch)
    rec = reconciler(scratch)
    assert rec.repush_lost() == 0  # first seen: maybe a message moving between places
    assert rec.repush_lost() == 1
    [message] = queued(scratch)
    assert (message["task"], message["argsrepr"], message["root_id"]) == (
        "genq.syncso.create",
        f"['{job_id}']",
        "root-1",
    )
    assert rec.repush_lost() == 0  # it moved: no longer stale
    assert scratch.hget(L.REPAIRS_KEY, "message") is None  # counted by a whole pass (reconcile)


def test_a_job_whose_message_is_queued_scheduled_or_taken_is_left_alone(
    scratch_url: str, scratch: redis.Redis
) -> None:
    rec = reconciler(scratch)
    in_queue, scheduled, taken = (started(scratch_url, scratch) for _ in range(3))
    scratch.lpush("syncso", task_message("genq.syncso.create", [in_queue], "syncso"))
    scratch.hset(
        L.SCHEDULE_KEY.format(queue="syncso") + ":items", f"{scheduled}:genq.syncso.create", "syncso\nm"
    )
    message = json.loads(task_message("genq.syncso.create", [taken], "syncso"))
    scratch.hset(L.UNACKED, "tag-1", json.dumps([message, "", "syncso"]))
    for _ in range(3):
        assert rec.repush_lost() == 0
    assert scratch.llen("syncso") == 1


def test_a_slot_whose_releasing_step_is_done_is_freed_and_a_live_one_kept(
    scratch_url: str, scratch: redis.Redis
) -> None:
    store, limiter = JobStore(scratch), RedisLimiter(scratch)
    finished, waiting = started(scratch_url, scratch), started(scratch_url, scratch)
    for job_id in (finished, waiting):
        assert limiter.acquire(POOL, Waiter(job_id, "", 0.0, "syncso", "m"))
    store.set_stage(finished, "wait", StageState(status=StageStatus.DONE))  # its release was lost
    store.set_stage(waiting, "wait", StageState(status=StageStatus.WAITING))
    assert reconciler(scratch).reconcile().leases == 1
    holders = {L.text(h) for h in scratch.zrange(L.POOL_KEY.format(name=POOL.name) + ":leases", 0, -1)}
    assert holders == {waiting}
    assert scratch.hget(L.REPAIRS_KEY, "lease") == b"1"


def test_after_a_restart_unacked_messages_no_heartbeat_renewed_go_back(scratch: redis.Redis) -> None:
    rec = reconciler(scratch, heartbeat_s=0.05)
    scratch.set(L.REDIS_RUN_ID_KEY, "the-run-before")  # as a Redis restarted from its AOF has it
    orphan = json.loads(task_message("genq.syncso.wait", ["j-orphan"], "syncso"))
    alive = json.loads(task_message("genq.syncso.wait", ["j-alive"], "syncso"))
    scratch.hset(L.UNACKED, mapping={"t-orphan": json.dumps([orphan, "", "syncso"]),
                                     "t-alive": json.dumps([alive, "", "syncso"])})  # fmt: skip
    scratch.zadd(L.UNACKED_INDEX, {"t-orphan": time.time() - 5, "t-alive": time.time() - 5})
    assert rec.restore_after_restart() == 0  # the restart is seen; live workers get to beat first
    time.sleep(0.15)
    scratch.zadd(L.UNACKED_INDEX, {"t-alive": time.time()}, xx=True)  # a live worker's heartbeat
    assert rec.restore_after_restart() == 1
    [back] = queued(scratch)
    assert (back["argsrepr"], back["redelivered"]) == ("['j-orphan']", True)
    assert scratch.hkeys(L.UNACKED) == [b"t-alive"]
    assert rec.restore_after_restart() == 0  # dealt with: nothing more until the next restart


def test_a_reconciler_without_a_providers_credentials_still_sees_its_parked_jobs(
    scratch_url: str, scratch: redis.Redis
) -> None:
    """In compose each worker holds only its own provider's keys, and any of them may lead the
    reconciler: an AI Studios worker must not take a lipsync job parked with sync.so (a wait, or a full
    pool) for lost and push its steps again."""
    settings = Settings(syncso={"api_key": ""}, aimi={"api_key": ""}).with_redis_url(scratch_url)
    assert [s.name for s in specs(settings, configured_only=True)] == ["aistudios"]
    ctx = Context(settings)
    waiting, throttled = started(scratch_url, scratch), started(scratch_url, scratch)
    Waits(scratch).park("syncso", settings.syncso.account, "gen-1", job=waiting, stage="wait",
                        queue="syncso", message="m", check_in_s=60, deadline_in_s=600)  # fmt: skip
    [pool] = [p for p in ctx.budgets.pools_of("syncso") if p.name == "syncso.generations"]
    for n in range(pool.size):
        assert ctx.limiter.acquire(pool, Waiter(f"other-{n}", "", 0.0, "syncso", "m"))
    assert not ctx.limiter.acquire(pool, Waiter(throttled, "", 0.0, "syncso", "m"))  # parked for a slot
    rec = Reconciler.of(ctx, ["default", "syncso", "aistudios", "aimi"])
    rec.stale_s = 0.0
    for _ in range(3):
        assert rec.repush_lost() == 0
    assert scratch.llen("syncso") == 0


def test_after_a_restart_a_job_not_moved_since_is_repaired_without_waiting_out_stale_s(
    scratch_url: str, scratch: redis.Redis
) -> None:
    job_id = started(scratch_url, scratch)  # its message was among the writes the restart lost
    rec = reconciler(scratch, stale_s=3600.0)
    assert (rec.repush_lost(), rec.repush_lost()) == (0, 0)  # not stale for an hour: left alone
    scratch.set(L.REDIS_RUN_ID_KEY, "the-run-before")  # as a Redis restarted from its AOF has it
    time.sleep(0.01)
    assert rec.reconcile().messages == 0  # the restart is seen; first sighting of the job
    assert rec.reconcile().messages == 1  # the second: pushed again, though it is not stale_s old
    [message] = queued(scratch)
    assert message["argsrepr"] == f"['{job_id}']"


def test_after_a_restart_ids_a_sweep_held_for_a_check_are_due_again_within_one_interval(
    scratch: redis.Redis,
) -> None:
    waits = Waits(scratch)
    for pid in ("held", "parked"):
        waits.park("syncso", "acct", pid, job=f"j-{pid}", stage="wait", queue="syncso", message="m",
                   check_in_s=0.0 if pid == "held" else 5.0, deadline_in_s=600)  # fmt: skip
    assert waits.claim_due("syncso", "acct", 1, hold_s=30.0) == ["held"]  # then Redis went away
    due_key = L.wait_keys("syncso")[2] + "acct"
    parked_due = scratch.zscore(due_key, "parked")
    rec = Reconciler(scratch, RedisLimiter(scratch), [POOL], queues=["syncso"], wait_namespaces=["syncso"],
                     stale_s=30, every_s=1, lease_s=5, heartbeat_s=0.05,
                     sweeps=[("syncso", "acct", 10.0)])  # fmt: skip
    scratch.set(L.REDIS_RUN_ID_KEY, "the-run-before")
    rec.restore_after_restart()
    seconds, _ = scratch.time()
    held_in_s = (scratch.zscore(due_key, "held") or 0) / 1000 - seconds
    assert 9 <= held_in_s <= 11  # one check interval, not the 30 s hold
    assert scratch.zscore(due_key, "parked") == parked_due  # due sooner already: left as it was


def test_after_a_restart_a_sweep_this_worker_has_no_credentials_for_is_found_by_its_registered_account(
    scratch: redis.Redis,
) -> None:
    """A worker without sync.so's key leads the reconciler: the account sync.so's workers registered
    names the due set whose held ids are made due again."""
    waits = Waits(scratch)
    waits.park("syncso", "acct", "held", job="j-held", stage="wait", queue="syncso", message="m",
               check_in_s=0.0, deadline_in_s=600)  # fmt: skip
    assert waits.claim_due("syncso", "acct", 1, hold_s=30.0) == ["held"]
    scratch.hset(L.ACCOUNTS_KEY, "syncso", "acct")  # as sync.so's workers' sweeps do
    rec = Reconciler(scratch, RedisLimiter(scratch), [POOL], queues=["syncso"], wait_namespaces=["syncso"],
                     stale_s=30, every_s=1, lease_s=5, heartbeat_s=0.05,
                     sweeps=[("syncso", "", 10.0), ("aimi", "", 5.0)])  # fmt: skip
    scratch.set(L.REDIS_RUN_ID_KEY, "the-run-before")
    rec.restore_after_restart()
    seconds, _ = scratch.time()
    held_in_s = (scratch.zscore(L.wait_keys("syncso")[2] + "acct", "held") or 0) / 1000 - seconds
    assert 9 <= held_in_s <= 11
