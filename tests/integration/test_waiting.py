"""Waiting at scale: the Redis-side schedule, parked waits, the status sweep and its lease, webhooks."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from click.testing import CliRunner

from genq.cli import main
from genq.processes import stop
from genq.redis_server import EmbeddedRedis
from producers import Producer
from schemas import JobStatus
from schemas import layout as L
from schemas.wire import task_message
from tests.conftest import AIMI_KEY, SIM_KEY, Services, Sim, until
from tests.integration.conftest import AppServer
from worker.limits import RateBudget, RedisLimiter
from worker.providers.aimi.settings import AimiSettings
from worker.providers.aimi.spec import REQUESTS
from worker.providers.syncso.webhook import sign as sync_sign
from worker.schedule import Schedule
from worker.settings import Settings
from worker.waits import Waits
from worker.webhooks import create_app

pytestmark = [pytest.mark.integration]

StartWorker = Callable[..., subprocess.Popen[bytes]]
SECRET = "whsec_test_0123456789abcdef"
JOB = {
    "kind": "lipsync",
    "model": "lipsync-2",
    "video": "https://x.test/v.mp4",
    "audio": "https://x.test/a.wav",
}
# A queue every worker's mover knows but the movers' workers here do not consume (they are started with
# -Q default,syncso): what the movers push stays there to be counted.
IDLE_QUEUE = "aistudios"
MOVER_QUEUES = ("default", "syncso")


def _ids_in(client: redis.Redis, queue: str) -> list[str]:
    return [json.loads(raw)["headers"]["id"] for raw in client.lrange(queue, 0, -1)]


def _schedule_items(client: redis.Redis, queue: str) -> int:
    return int(client.zcard(L.SCHEDULE_KEY.format(queue=queue)))


@pytest.mark.quiet
def test_a_scheduled_run_is_pushed_when_due_and_not_before(
    workers: StartWorker, own_redis: EmbeddedRedis
) -> None:
    workers("mover", concurrency=1, queues=MOVER_QUEUES)  # ready: its mover runs before anything is added
    redis_client = redis.Redis.from_url(own_redis.url)
    schedule = Schedule(redis_client)
    queue, delay_s = IDLE_QUEUE, 1.0
    redis_client.delete(queue)
    message = task_message("genq.start", ["job-later"], queue, task_id="later-1")
    added_at = _server_time(redis_client)
    schedule.add("job-later:genq.start", queue, message, delay_s)
    assert _schedule_items(redis_client, queue) == 1
    while redis_client.llen(queue) == 0:  # seen within 10 ms of the push, by the clock the schedule uses
        assert _server_time(redis_client) < added_at + delay_s + 10, "never pushed"
        time.sleep(0.01)
    pushed_at = _server_time(redis_client)
    assert pushed_at >= added_at + delay_s  # not before it is due ...
    assert pushed_at <= added_at + delay_s + 0.5  # ... and soon after (movers sleep at most 0.1 s)
    assert _ids_in(redis_client, queue) == ["later-1"]
    assert _schedule_items(redis_client, queue) == 0
    redis_client.delete(queue)


def _server_time(client: redis.Redis) -> float:
    seconds, microseconds = client.time()
    return seconds + microseconds / 1e6


@pytest.mark.slow
def test_scheduling_a_run_again_replaces_its_entry(workers: StartWorker, own_redis: EmbeddedRedis) -> None:
    redis_client = redis.Redis.from_url(own_redis.url)
    schedule = Schedule(redis_client)
    queue = IDLE_QUEUE
    redis_client.delete(queue)
    for task_id in ("first", "second"):
        schedule.add(
            "job-twice:genq.start", queue, task_message("genq.start", ["j"], queue, task_id=task_id), 0.3
        )
    workers("mover", concurrency=1, queues=MOVER_QUEUES)
    # A mover pushes an entry in the same Lua step that removes it: once none is left, all are pushed.
    until(lambda: _schedule_items(redis_client, queue) == 0, 30, "the entry to be moved")
    assert _ids_in(redis_client, queue) == ["second"]
    redis_client.delete(queue)


@pytest.mark.slow
def test_four_workers_movers_push_every_scheduled_message_exactly_once(
    workers: StartWorker, own_redis: EmbeddedRedis
) -> None:
    client = redis.Redis.from_url(own_redis.url)
    for n in range(4):
        workers(f"mover{n}", concurrency=1, queues=MOVER_QUEUES, GENQ_WAITS__MOVER_MAX_SLEEP_S="0.05")
    schedule = Schedule(client)
    count = 2000
    for i in range(count):
        message = task_message("genq.start", [f"j{i}"], IDLE_QUEUE, task_id=f"m{i}")
        schedule.add(f"j{i}:genq.start", IDLE_QUEUE, message, 1.0 + (i % 200) / 100)
    until(lambda: _schedule_items(client, IDLE_QUEUE) == 0, 60, "the movers to push everything")
    pushed = Counter(_ids_in(client, IDLE_QUEUE))
    assert len(pushed) == count
    assert set(pushed.values()) == {1}
    client.close()


def _lease_holder(client: redis.Redis) -> str | None:
    keys = client.keys(L.SWEEP_LEASE_KEY.format(provider="syncso", account="*"))
    value = client.get(keys[0]) if keys else None
    return value.decode() if value else None


@pytest.mark.slow
@pytest.mark.quiet  # measures a time
def test_a_sigkilled_sweep_holder_is_replaced_within_the_lease_and_its_parked_jobs_end(
    workers: StartWorker, own_redis: EmbeddedRedis, sim: Sim, tmp_path: Path
) -> None:
    sim.configure(pending_s=1.0, processing_s=3.0)
    lease = {"GENQ_WAITS__SWEEP_LEASE_S": "2", "GENQ_SYNCSO__CHECK_INTERVAL_S": "0.5"}
    first, second = workers("sweep-a", **lease), workers("sweep-b", **lease)
    client = redis.Redis.from_url(own_redis.url)
    producer = Producer(own_redis.url)
    ids = producer.submit_many([JOB for _ in range(3)])
    entries = L.wait_keys("syncso")[0]
    until(lambda: client.hlen(entries) == 3, 30, "three parked waits")
    until(lambda: _lease_holder(client) is not None, 10, "a sweep lease holder")
    holder = _lease_holder(client)
    assert holder is not None
    doomed, survivor = (first, second) if f":{first.pid}:" in holder else (second, first)
    assert f":{doomed.pid}:" in holder
    stop(doomed, kill=True)
    killed_at = time.monotonic()
    until(lambda: f":{survivor.pid}:" in (_lease_holder(client) or ""), 10, "the survivor to take the lease")
    assert time.monotonic() - killed_at <= 2.0 + 1.0  # the lease, plus one attempt of the survivor

    for job_id in ids:
        record = producer.wait(job_id, timeout_s=60)
        assert record.status is JobStatus.SUCCEEDED, record.error
    assert sim.stats()["generations_created"] == 3
    client.close()


@pytest.mark.slow
def test_an_account_whose_sweep_waits_for_its_budget_does_not_delay_another_accounts_checks(
    workers: StartWorker, own_redis: EmbeddedRedis, services: Services, sim: Sim
) -> None:
    # An Aimi execution due for a check while Aimi's budget is paused for a minute (another worker's
    # 429): the Aimi sweep waits out the pause. The sync.so sweep has a thread of its own, so a lipsync
    # job ends as fast as ever.
    client = redis.Redis.from_url(own_redis.url)
    aimi = AimiSettings(base_url=services.sim.base_url, api_key=AIMI_KEY)
    Waits(client).park("aimi", aimi.account, "exec-held", job="held", stage="wait[0]", queue=IDLE_QUEUE,
                       message="m", check_in_s=0.0, deadline_in_s=600)  # fmt: skip
    RedisLimiter(client).pause(RateBudget.of(REQUESTS, aimi.rate), 60.0)
    workers("sweeps")
    producer = Producer(own_redis.url)
    started = time.monotonic()
    record = producer.wait(producer.submit(JOB), timeout_s=30)

    assert record.status is JobStatus.SUCCEEDED, record.error
    assert time.monotonic() - started < 15  # not after the Aimi pause (60 s)
    assert sum(sim.stats("aimi")["requests"].values()) == 0  # the Aimi sweep did wait out the pause
    client.close()


@pytest.mark.slow
def test_a_wait_past_its_deadline_fails_the_job_with_genq_wait_timeout(
    workers: StartWorker, own_redis: EmbeddedRedis, sim: Sim
) -> None:
    sim.configure(pending_s=0.5, processing_s=30.0)
    workers("deadline", GENQ_SYNCSO__MAX_WAIT_S="1.5", GENQ_SYNCSO__CHECK_INTERVAL_S="0.3")
    producer = Producer(own_redis.url)
    record = producer.wait(producer.submit(JOB), timeout_s=30)
    assert record.status is JobStatus.FAILED
    assert record.error is not None
    assert (record.error.stage, record.error.code) == ("wait", "genq_wait_timeout")


@pytest.mark.slow
def test_a_job_that_timed_out_and_is_replayed_after_its_generation_ended_downloads_it_without_another(
    workers: StartWorker, own_redis: EmbeddedRedis, sim: Sim
) -> None:
    sim.configure(pending_s=0.5, processing_s=4.0)
    workers("deadline", GENQ_SYNCSO__MAX_WAIT_S="1.5", GENQ_SYNCSO__CHECK_INTERVAL_S="0.3")
    producer, client = Producer(own_redis.url), redis.Redis.from_url(own_redis.url)
    waits = Waits(client)
    job_id = producer.submit(JOB)
    failed = producer.wait(job_id, timeout_s=30)
    assert failed.error is not None and failed.error.code == "genq_wait_timeout"
    generation_id = failed.provider_ids["generation"]
    timed_out = waits.result("syncso", generation_id)
    assert timed_out is not None and timed_out.state == "timeout"  # what the replayed wait read before
    with httpx.Client(base_url=sim.base_url, headers={"x-api-key": SIM_KEY}, timeout=10) as api:
        until(lambda: api.get(f"/v2/generate/{generation_id}").json()["status"] == "COMPLETED", 30,
              "the generation to end at sync.so")  # fmt: skip

    producer.replay(job_id)
    record = producer.wait(job_id, timeout_s=30)
    assert record.status is JobStatus.SUCCEEDED, record.error
    assert record.provider_ids["generation"] == generation_id and len(record.outputs) == 1
    assert sim.stats()["generations_created"] == 1
    ended = waits.result("syncso", generation_id)
    assert ended is not None and ended.state == "ended"  # the replayed wait parked and the sweep saw the end
    producer.close()
    client.close()


@pytest.mark.slow
def test_status_shows_what_a_parked_stage_waits_for_and_when_it_is_checked_next(
    workers: StartWorker, own_redis: EmbeddedRedis, sim: Sim
) -> None:
    sim.configure(pending_s=30.0, processing_s=30.0)
    workers("parked", GENQ_SYNCSO__CHECK_INTERVAL_S="20")
    producer = Producer(own_redis.url)
    job_id = producer.submit(JOB)
    until(lambda: bool(producer.parked(producer.get(job_id))), 30, "the wait to park")
    generation = producer.get(job_id).provider_ids["generation"]
    result = CliRunner().invoke(
        main, ["status", job_id, "--redis-url", own_redis.url], env={"COLUMNS": "250"}
    )
    assert result.exit_code == 0, result.output
    assert f"parked: waiting for syncso {generation} since" in result.output
    assert "next check" in result.output
    as_json = json.loads(
        CliRunner().invoke(main, ["status", job_id, "--json", "--redis-url", own_redis.url]).output
    )
    assert [(w["stage"], w["provider_id"]) for w in as_json["parked"]] == [("wait", generation)]


# Webhooks: deliveries verified by the receiver, over the worker settings' Redis.


def _webhook_workers(workers: StartWorker, receiver_url: str, **extra: str) -> None:
    workers("hooks", GENQ_WEBHOOKS__BASE_URL=receiver_url, GENQ_SYNCSO__WEBHOOK_SECRET=SECRET, **extra)


@pytest.mark.slow
@pytest.mark.quiet  # measures a time
def test_a_signed_delivery_finishes_its_job_within_a_second(
    workers: StartWorker, own_redis: EmbeddedRedis, sim: Sim
) -> None:
    sim.configure(pending_s=0.5, processing_s=1.0, webhook_secret=SECRET)
    settings = Settings(redis_url=own_redis.url, syncso={"webhook_secret": SECRET})
    with AppServer(create_app(settings)) as receiver:
        # Sweeps every 60 s only: nothing but the webhook can end the wait in time.
        _webhook_workers(workers, receiver.base_url, GENQ_SYNCSO__CHECK_INTERVAL_S="60")
        producer = Producer(own_redis.url)
        job_id = producer.submit(JOB)
        record = producer.wait(job_id, timeout_s=30)
    assert record.status is JobStatus.SUCCEEDED, record.error
    ended = {g["id"]: g for g in sim.http.get("/_sim/syncso/generations").json()}
    terminal_at = ended[record.provider_ids["generation"]]["terminal_at"]
    assert record.finished_at is not None
    assert record.finished_at.timestamp() - terminal_at <= 1.0
    stats = sim.stats()
    assert stats["webhooks"]["delivered"] == 1
    assert stats["requests"]["list"] == 0  # the sweep never had to look


@pytest.mark.slow
def test_a_delivery_that_never_comes_still_ends_the_job_through_the_sweep(
    workers: StartWorker, own_redis: EmbeddedRedis, sim: Sim
) -> None:
    sim.configure(pending_s=0.3, processing_s=0.5, webhook_secret=SECRET, webhook_loss_share=1.0)
    settings = Settings(redis_url=own_redis.url, syncso={"webhook_secret": SECRET})
    with AppServer(create_app(settings)) as receiver:
        _webhook_workers(workers, receiver.base_url, GENQ_SYNCSO__CHECK_INTERVAL_S="0.5")
        producer = Producer(own_redis.url)
        record = producer.wait(producer.submit(JOB), timeout_s=30)
    assert record.status is JobStatus.SUCCEEDED, record.error
    stats = sim.stats()
    assert stats["webhooks"]["lost"] == 1
    assert stats["webhooks"]["delivered"] == 0
    assert stats["requests"]["list"] >= 1


class _Parked:
    """A wait parked by hand on the session Redis, and what a delivery may change of it."""

    def __init__(self, client: redis.Redis, generation_id: str) -> None:
        from worker.waits import Waits  # noqa: PLC0415

        self.client, self.id = client, generation_id
        self.queue = f"webhook-test-{generation_id}"
        Waits(client).park("syncso", "acct", generation_id, job="job-x", stage="wait", queue=self.queue,
                           message="next-run", check_in_s=600, deadline_in_s=600)  # fmt: skip

    def untouched(self) -> bool:
        entries, _, _ = L.wait_keys("syncso")
        result = L.WAIT_RESULT_KEY.format(provider="syncso", provider_id=self.id)
        return (
            self.client.hexists(entries, self.id)
            and not self.client.exists(result)
            and self.client.llen(self.queue) == 0
        )


def _delivery(
    generation_id: str, *, secret: str = SECRET, age_s: float = 0.0
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {"id": generation_id, "status": "COMPLETED", "outputUrl": "https://x.test/o.mp4"}
    ).encode()
    t = int(time.time() - age_s)
    return body, {
        "Sync-Signature": f"t={t},v1={sync_sign(secret, t, body)}",
        "content-type": "application/json",
    }


@pytest.fixture
def receiver_client(services: Services, redis_client: redis.Redis) -> Iterator[httpx.Client]:
    """The receiver over the session Redis, over real HTTP on loopback."""
    settings = Settings(redis_url=services.redis.url, syncso={"webhook_secret": SECRET})
    with (
        AppServer(create_app(settings, redis_client)) as server,
        httpx.Client(base_url=server.base_url) as client,
    ):
        yield client


@pytest.mark.parametrize(
    ("case", "make"),
    [
        ("forged", lambda gid: _delivery(gid, secret="whsec_someone_else")),
        ("stale", lambda gid: _delivery(gid, age_s=301)),
        ("tampered", lambda gid: (_delivery(gid)[0].replace(b"COMPLETED", b"FAILED"), _delivery(gid)[1])),
        ("unsigned", lambda gid: (_delivery(gid)[0], {"content-type": "application/json"})),
    ],
)
def test_a_forged_stale_or_unsigned_delivery_is_refused_and_changes_nothing(
    receiver_client: httpx.Client,
    redis_client: redis.Redis,
    case: str,
    make: Callable[[str], tuple[bytes, dict[str, str]]],
) -> None:
    parked = _Parked(redis_client, f"gen-{case}-{time.time_ns()}")
    body, headers = make(parked.id)
    response = receiver_client.post("/syncso", content=body, headers=headers)
    assert response.status_code == 401
    assert parked.untouched()


def test_a_replayed_delivery_is_refused_and_changes_nothing(
    receiver_client: httpx.Client, redis_client: redis.Redis
) -> None:
    parked = _Parked(redis_client, f"gen-replay-{time.time_ns()}")
    body, headers = _delivery(parked.id)
    first = receiver_client.post("/syncso", content=body, headers=headers)
    assert (first.status_code, first.json()) == (200, {"woken": True})
    assert redis_client.lrange(parked.queue, 0, -1) == [b"next-run"]
    again = receiver_client.post("/syncso", content=body, headers=headers)
    assert again.status_code == 401
    assert redis_client.lrange(parked.queue, 0, -1) == [b"next-run"]
    redis_client.delete(parked.queue)


def test_a_due_check_takes_along_the_ids_due_within_half_an_interval_and_nothing_before(
    redis_client: redis.Redis,
) -> None:
    from worker.waits import Waits  # noqa: PLC0415

    waits, account = Waits(redis_client), f"claim-{time.time_ns()}"
    for pid, check_in_s in (("due-now", 0.0), ("due-soon", 2.0), ("due-later", 20.0)):
        waits.park("syncso", account, f"{account}-{pid}", job="j", stage="wait", queue="nowhere",
                   message="m", check_in_s=check_in_s, deadline_in_s=600)  # fmt: skip
    time.sleep(0.01)
    claimed = waits.claim_due("syncso", account, 100, hold_s=30, ahead_s=5)
    assert claimed == [f"{account}-due-now", f"{account}-due-soon"]
    assert waits.claim_due("syncso", account, 100, hold_s=30, ahead_s=30) == []  # nothing due now
