"""Every stage run has a time limit: a run past it (the simulator holds its answer, well inside the HTTP
read timeout, so nothing else would stop it) is stopped, retried like a network error, and the job
ends, succeeded on a later attempt or failed with ``genq_stage_timeout``; never ``running`` for ever.
Subprocess workers (the prefork pool: Celery's time limits need it) with a 2 s limit for API stages."""

from __future__ import annotations

import time

import pytest

from genq.redis_server import EmbeddedRedis
from producers import Producer
from schemas import JobStatus, StageStatus
from tests.conftest import LIPSYNC, Sim
from tests.integration.conftest import Workers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CREATE = "syncso.create"
# Calls may take 60 s before the client gives up: only the time limit can stop a 20 s hold.
LIMITS = {"GENQ_TIME_LIMITS__API_S": "2", "GENQ_TIME_LIMITS__GRACE_S": "10",
          "GENQ_SYNCSO__HTTP__READ_TIMEOUT_S": "60"}  # fmt: skip


def creates(sim: Sim, since: float) -> int:
    return sum(e["route"] == CREATE for e in sim.events(since))


def test_a_run_past_its_time_limit_is_stopped_and_retried(
    workers: Workers, own_redis: EmbeddedRedis, sim: Sim
) -> None:
    workers("limited", concurrency=1, **LIMITS)
    sim.fault(route=CREATE, hold_s=20.0, times=1)
    since, started = time.time(), time.monotonic()
    job_id = Producer(own_redis.url).submit(LIPSYNC)
    record = Producer(own_redis.url).wait(job_id, timeout_s=30)
    assert record.status is JobStatus.SUCCEEDED, record.error
    assert time.monotonic() - started < 15  # not after the 20 s hold
    assert record.stages["create"].attempts == 2
    assert creates(sim, since) == 2  # sent again with the same Idempotency-Key:
    assert sim.stats()["generations_created"] == 1  # one generation


def test_a_stage_that_keeps_running_past_its_limit_fails_the_job(
    workers: Workers, own_redis: EmbeddedRedis, sim: Sim
) -> None:
    workers("limited", concurrency=1, GENQ_RETRY__MAX_RETRIES="1", **LIMITS)
    sim.fault(route=CREATE, hold_s=20.0, times=5)
    started = time.monotonic()
    producer = Producer(own_redis.url)
    job_id = producer.submit(LIPSYNC)
    record = producer.wait(job_id, timeout_s=30)
    assert record.status is JobStatus.FAILED
    assert time.monotonic() - started < 15
    assert record.error is not None
    assert (record.error.code, record.error.provider, record.error.retryable) == (
        "genq_stage_timeout", "genq", True
    )  # fmt: skip
    assert record.error.message == "the stage ran past its time limit of 2 s"
    assert record.stages["create"].status is StageStatus.FAILED
    assert record.stages["create"].attempts == 2  # the run and its one retry
    assert job_id in [r.id for r in producer.dead_letters()]  # `genq replay` can run it again
