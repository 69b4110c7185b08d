"""A running stage has a heartbeat: a stage that runs three times longer than the visibility timeout is
not handed to a second worker while its worker lives, and a SIGKILLed worker's stage runs again within
a minute (here, seconds: the test's workers have a 4 s visibility timeout and a 1 s heartbeat; the first
test's a 2 s one and a 0.5 s heartbeat)."""

from __future__ import annotations

import time

import pytest

from genq.processes import stop
from genq.redis_server import EmbeddedRedis
from producers import Producer
from schemas import JobStatus
from tests.conftest import LIPSYNC, Sim, until
from tests.integration.conftest import Workers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DOWNLOAD = "syncso.download"


def downloads(sim: Sim, since: float) -> int:
    return sum(e["route"] == DOWNLOAD for e in sim.events(since))


@pytest.mark.quiet  # a heartbeat late by the visibility timeout on a busy machine would be a false alarm
def test_a_stage_longer_than_the_visibility_timeout_runs_once_while_its_worker_lives(
    workers: Workers, own_redis: EmbeddedRedis, sim: Sim
) -> None:
    producer = Producer(own_redis.url)
    short = {"GENQ_VISIBILITY_TIMEOUT_S": "2", "GENQ_RUNS__HEARTBEAT_S": "0.5"}
    workers("a", concurrency=1, **short)
    sim.fault(route=DOWNLOAD, hold_s=6.0, times=1)  # 3 x the visibility timeout
    since = time.time()
    job_id = producer.submit(LIPSYNC)
    until(lambda: downloads(sim, since) == 1, 30, "the download to reach the simulator")
    workers("b", concurrency=1, **short)  # idle, and would take the message if it came back to the queue
    record = producer.wait(job_id, timeout_s=30)
    assert record.status is JobStatus.SUCCEEDED, record.error
    assert downloads(sim, since) == 1
    assert workers.took_part("b", "genq.syncso.download") == 0


def test_a_sigkilled_workers_stage_runs_again_on_another_worker_within_a_minute(
    workers: Workers, own_redis: EmbeddedRedis, sim: Sim
) -> None:
    producer = Producer(own_redis.url)
    first = workers("a", concurrency=1)
    sim.fault(route=DOWNLOAD, hold_s=60.0, times=1)  # the first download never answers in time
    since = time.time()
    job_id = producer.submit(LIPSYNC)
    until(lambda: downloads(sim, since) == 1, 30, "the download to reach the simulator")
    workers("b", concurrency=1)
    stop(first, kill=True)
    killed_at = time.monotonic()
    until(lambda: downloads(sim, since) == 2, 60, "the download to run again")
    again_s = time.monotonic() - killed_at
    record = producer.wait(job_id, timeout_s=30)
    assert record.status is JobStatus.SUCCEEDED, record.error
    assert workers.took_part("b", "genq.syncso.download") == 1
    assert again_s < 60, again_s
