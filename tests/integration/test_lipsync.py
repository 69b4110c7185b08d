"""A lipsync job end to end: producer → Redis → real Celery worker → simulator over HTTP → file on disk."""

from __future__ import annotations

import hashlib
import itertools
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from genq.cli import main
from genq.redis_server import EmbeddedRedis
from producers import Producer
from schemas import JobStatus, StageState, StageStatus
from tests.conftest import Sim, holds, until
from worker.limits import Pool, RedisLimiter, Waiter

pytestmark = pytest.mark.integration

GENERATIONS = Pool("syncso.generations", 6, 180.0)
URLS = {"video": "https://media.example.com/a.mp4", "audio": "https://media.example.com/a.wav"}


def lipsync(**fields: object) -> dict[str, object]:
    return {"kind": "lipsync", "model": "lipsync-2", **URLS, **fields}


def test_url_inputs_produce_the_providers_file(producer: Producer, sim: Sim) -> None:
    job_id = producer.submit(lipsync(output_file_name="talk_01", options={"sync_mode": "bounce"}))
    record = producer.wait(job_id, timeout_s=30)

    assert record.status is JobStatus.SUCCEEDED, record.error
    assert [record.stages[s].status for s in ("create", "wait", "download")] == [StageStatus.DONE] * 3
    output = record.outputs[0]
    path = Path(output.path)
    assert path.name == "talk_01.mp4"
    data = path.read_bytes()
    assert len(data) == output.bytes > 0
    assert hashlib.sha256(data).hexdigest() == output.sha256
    stats = sim.stats()
    assert stats["generations_by_idempotency_key"] == {f"genq-{job_id}": [record.provider_ids["generation"]]}


def test_local_files_are_uploaded_and_tts_is_sent(
    producer: Producer, sim: Sim, media: dict[str, str]
) -> None:
    uploaded = producer.submit(lipsync(**media))
    spoken = producer.submit(lipsync(audio=None, tts={"voice_id": "v1", "script": "Hello there."}))
    for job_id in (uploaded, spoken):
        assert producer.wait(job_id, timeout_s=30).status is JobStatus.SUCCEEDED
    assert sim.stats()["generations_created"] == 2


def test_a_5xx_is_retried_and_the_job_succeeds_with_one_generation(producer: Producer, sim: Sim) -> None:
    sim.fault(route="syncso.create", status=503, times=2)
    sim.fault(route="syncso.get", status=502, times=1)
    job_id = producer.submit(lipsync())
    record = producer.wait(job_id, timeout_s=30)

    assert record.status is JobStatus.SUCCEEDED, record.error
    assert record.stages["create"].attempts == 3
    stats = sim.stats()
    assert stats["requests"]["create"] == 3
    assert stats["generations_created"] == 1


@pytest.mark.quiet
@pytest.mark.slow
def test_each_retry_of_a_5xx_waits_its_backoff(
    workers: Callable[..., subprocess.Popen[bytes]], own_redis: EmbeddedRedis, sim: Sim
) -> None:
    """Attempt n waits between half and all of base * 2**n (equal jitter): with a base of 0.5 s the gaps
    between the create requests sync.so saw are at least 0.25 s, then 0.5 s, then 1 s."""
    base_s = 0.5
    workers("backoff", GENQ_RETRY__BACKOFF_BASE_S=str(base_s), GENQ_RETRY__BACKOFF_CAP_S="8")
    sim.fault(route="syncso.create", status=503, times=3)
    producer = Producer(own_redis.url)
    record = producer.wait(producer.submit(lipsync()), timeout_s=30)
    assert record.status is JobStatus.SUCCEEDED, record.error

    sent = [e["t"] for e in sim.events() if e["route"] == "syncso.create"]
    assert len(sent) == 4
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent)]
    steps = [base_s * 2**attempt for attempt in range(3)]
    assert [gap >= step / 2 for gap, step in zip(gaps, steps, strict=True)] == [True] * 3, gaps
    assert [gap <= step + 0.5 for gap, step in zip(gaps, steps, strict=True)] == [True] * 3, gaps


def test_a_400_fails_the_job_at_once_with_the_providers_message(producer: Producer, sim: Sim) -> None:
    body = {"statusCode": 400, "message": ["input.0.url must be a URL address"], "error": "Bad Request",
            "errorCode": "generation_input_validation_failed"}  # fmt: skip
    sim.fault(route="syncso.create", status=400, times=1, body=body)
    job_id = producer.submit(lipsync())
    record = producer.wait(job_id, timeout_s=30)

    assert record.status is JobStatus.FAILED
    assert record.error is not None
    assert (record.error.stage, record.error.status_code, record.error.code) == (
        "create",
        400,
        "generation_input_validation_failed",
    )
    assert "input.0.url must be a URL address" in record.error.message
    assert record.stages["create"].attempts == 1
    assert sim.stats()["requests"]["create"] == 1

    shown = CliRunner().invoke(main, ["status", job_id, "--redis-url", _url(producer)])
    assert shown.exit_code == 0
    assert "input.0.url must be a URL address" in shown.output
    assert "failed" in shown.output


def test_a_failed_job_gives_back_its_providers_slots_and_no_other_providers(
    producer: Producer, sim: Sim
) -> None:
    limiter = RedisLimiter(producer.redis)
    renders = Pool("aistudios.renders", 8, 180.0)
    sim.fault(route="syncso.create", status=400, times=1, body={"statusCode": 400, "message": "bad"})
    job_id = producer.submit(lipsync())
    # A slot of another provider's pool under the same holder: a sync.so stage must not touch it.
    limiter.acquire(renders, Waiter(job_id, "", 0.0, "nowhere", "m"))
    try:
        assert producer.wait(job_id, timeout_s=30).status is JobStatus.FAILED
        assert not holds(producer.redis, GENERATIONS, job_id)
        assert holds(producer.redis, renders, job_id)
    finally:
        limiter.release(renders, job_id)


def test_a_rejected_generation_fails_the_job_with_its_code(producer: Producer, sim: Sim) -> None:
    sim.fault(route="syncso.outcome", status="REJECTED", error_code="generation_input_face_selection_invalid",
              error="No face found in the selected frame", times=1)  # fmt: skip
    job_id = producer.submit(lipsync())
    record = producer.wait(job_id, timeout_s=30)

    assert record.status is JobStatus.FAILED
    assert record.error is not None
    assert record.error.code == "generation_input_face_selection_invalid"
    assert record.error.message == "No face found in the selected frame"
    assert record.stages["wait"].status is StageStatus.FAILED
    assert "download" not in record.stages


@pytest.mark.slow
def test_cancel_follows_the_generation_to_its_end_then_frees_the_slot(
    producer: Producer, sim: Sim, redis_client: redis.Redis
) -> None:
    """sync.so has no cancel call: the generation runs on and counts against the account, so genq keeps
    its slot until the generation ends, then gives it back; nothing is downloaded."""
    sim.configure(processing_s=1.5)
    job_id = producer.submit(lipsync())
    until(lambda: "generation" in producer.get(job_id).provider_ids)
    assert producer.cancel(job_id).status is JobStatus.CANCELLED
    assert producer.cancel(job_id).status is JobStatus.CANCELLED  # cancelling again changes nothing
    until(lambda: "ended" in (producer.get(job_id).stages["wait"].detail or ""), timeout_s=10)

    record = producer.get(job_id)
    assert record.status is JobStatus.CANCELLED
    assert record.stages["wait"].detail == "job cancelled; its generation ended COMPLETED"
    assert "download" not in record.stages
    assert not holds(redis_client, GENERATIONS, job_id)
    ended_at = time.time()
    # Another job's whole life, status sweeps included, shows the sweeps ran after the cancelled one's end.
    assert producer.wait(producer.submit(lipsync()), timeout_s=30).status is JobStatus.SUCCEEDED
    generation = record.provider_ids["generation"]
    after = [e for e in sim.events(since=ended_at) if e["generation_id"] == generation]
    assert after == []  # no more status checks of the cancelled job's generation


def test_cancel_of_an_ended_job_changes_nothing(producer: Producer, sim: Sim) -> None:
    job_id = producer.submit(lipsync())
    assert producer.wait(job_id, timeout_s=30).status is JobStatus.SUCCEEDED
    assert producer.cancel(job_id).status is JobStatus.SUCCEEDED
    result = CliRunner().invoke(main, ["cancel", job_id, "--redis-url", _url(producer)])
    assert result.exit_code == 1
    assert "succeeded" in result.output


def _url(producer: Producer) -> str:
    kwargs = producer.redis.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"


def test_a_job_whose_retries_ran_out_is_dead_lettered_and_can_be_replayed(
    producer: Producer, sim: Sim
) -> None:
    sim.fault(route="syncso.create", status=503, times=5)  # the session's workers retry 4 times
    job_id = producer.submit(lipsync())
    record = producer.wait(job_id, timeout_s=30)
    assert record.status is JobStatus.FAILED
    assert record.error is not None and record.error.retryable and record.error.status_code == 503
    assert job_id in [r.id for r in producer.dead_letters()]
    listed = CliRunner().invoke(main, ["dead", "--redis-url", _url(producer)])
    assert job_id in listed.output

    replayed = CliRunner().invoke(main, ["replay", job_id, "--redis-url", _url(producer)])
    assert replayed.exit_code == 0, replayed.output
    record = producer.wait(job_id, timeout_s=30)
    assert record.status is JobStatus.SUCCEEDED, record.error
    assert record.error is None
    assert job_id not in [r.id for r in producer.dead_letters()]
    assert sim.stats()["generations_created"] == 1
    again = CliRunner().invoke(main, ["replay", job_id, "--redis-url", _url(producer)])
    assert again.exit_code == 1
    assert "only a failed job can be replayed" in again.output


@pytest.mark.slow
def test_a_job_cancelled_while_its_create_waits_for_a_slot_never_creates_and_gives_the_slot_back(
    workers: Callable[..., subprocess.Popen[bytes]], own_redis: EmbeddedRedis, sim: Sim
) -> None:
    """The cancelled-stage branch: the parked create of a cancelled job is woken with the slot granted,
    finds the job cancelled, skips, and releases the slot."""
    sim.configure(processing_s=1.5)
    workers("one-slot", GENQ_SYNCSO__CONCURRENCY="1")
    producer = Producer(own_redis.url)
    ids = producer.submit_many([lipsync(), lipsync()])

    def parked() -> list[str]:  # the job whose create waits for the slot the other one took
        stages = {job_id: producer.get(job_id).stages.get("create", StageState()) for job_id in ids}
        return [job_id for job_id, stage in stages.items() if stage.status is StageStatus.THROTTLED]

    until(lambda: len(parked()) == 1, 30, "one create to park for the slot")
    [second] = parked()
    [first] = [job_id for job_id in ids if job_id != second]
    assert producer.cancel(second).status is JobStatus.CANCELLED

    assert producer.wait(first, timeout_s=30).status is JobStatus.SUCCEEDED
    limiter = RedisLimiter(producer.redis)
    until(lambda: limiter.state(Pool("syncso.generations", 1, 180.0)).in_use == 0, 10, "the slot to be free")
    record = producer.get(second)
    assert record.status is JobStatus.CANCELLED
    assert "generation" not in record.provider_ids
    assert sim.stats()["generations_created"] == 1


def test_a_failed_jobs_error_keeps_the_providers_request_id(producer: Producer, sim: Sim) -> None:
    body = {"statusCode": 400, "message": "input.0.url must be a URL address", "requestId": "req-7f3a"}
    sim.fault(route="syncso.create", status=400, body=body, times=1)
    record = producer.wait(producer.submit(lipsync()), timeout_s=30)
    assert record.status is JobStatus.FAILED
    assert record.error is not None
    assert (record.error.status_code, record.error.request_id) == (400, "req-7f3a")
