"""Subprocess workers on a Redis of their own: SIGKILL mid-job, `celery inspect ping`, Flower."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from genq.processes import free_port, start_flower, start_worker, stop, wait_http
from genq.redis_server import EmbeddedRedis
from producers import Producer
from schemas import JobStatus, StageStatus
from tests.conftest import SIM_KEY, Sim, holds, until
from tests.integration.conftest import Workers
from worker.limits import Pool

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FINAL_STATES = {"SUCCESS", "FAILURE", "RETRY"}
GENERATIONS = Pool("syncso.generations", 6, 180.0)
JOB = {
    "kind": "lipsync",
    "model": "lipsync-2",
    "video": "https://x.test/v.mp4",
    "audio": "https://x.test/a.wav",
}


def test_a_worker_sigkilled_holding_the_slot_and_a_create_in_flight_leaves_one_generation(
    workers: Workers, own_redis: EmbeddedRedis, sim: Sim
) -> None:
    """The worker dies after sync.so made the generation and before its answer came back: the slot is
    held and the create is in hand. The create runs again on another worker with the same Idempotency-Key,
    and sync.so answers it with the first generation."""
    sim.configure(pending_s=0.3, processing_s=0.5)
    sim.fault(route="syncso.create", hold_s=20.0, times=1)  # processed, its answer held
    producer = Producer(own_redis.url)
    doomed = workers("doomed")
    job_id = producer.submit(JOB)
    until(lambda: sim.stats()["generations_created"] == 1, 30, "the generation to exist at sync.so")
    assert holds(producer.redis, GENERATIONS, job_id)
    assert "generation" not in producer.get(job_id).provider_ids  # its answer has not come back
    stop(doomed, kill=True)

    workers("survivor")
    record = producer.wait(job_id, timeout_s=60)
    assert record.status is JobStatus.SUCCEEDED, record.error
    stats = sim.stats()
    assert stats["requests"]["create"] == 2  # sent again after the kill ...
    assert stats["idempotency_replays"] == 1  # ... with the first one's key: sync.so answered it
    assert stats["generations_created"] == 1
    assert stats["generations_by_idempotency_key"] == {f"genq-{job_id}": [record.provider_ids["generation"]]}
    assert workers.took_part("survivor", "genq.syncso.create") == 1


def test_a_worker_sigkilled_once_the_job_is_parked_leaves_it_to_another_with_one_generation(
    env: dict[str, str], own_redis: EmbeddedRedis, sim: Sim, tmp_path: Path
) -> None:
    sim.configure(pending_s=1.0, processing_s=2.0)
    producer = Producer(own_redis.url)
    first = start_worker(env, name="doomed", concurrency=2, log_path=tmp_path / "doomed.log")
    try:
        job_id = producer.submit(JOB)

        def waiting() -> bool:
            stages = producer.get(job_id).stages
            return "wait" in stages and stages["wait"].status is StageStatus.WAITING

        until(waiting, 30, "the job to be waiting on the provider")
        # Parked in Redis: nothing of the job is left in the worker about to die.
        until(lambda: bool(producer.parked(producer.get(job_id))), 10, "the wait to park")
    finally:
        stop(first, kill=True)  # SIGKILL the whole worker: no warm shutdown, no ack, no requeue

    second = start_worker(env, name="survivor", concurrency=2, log_path=tmp_path / "survivor.log")
    try:
        record = producer.wait(job_id, timeout_s=60)
    finally:
        stop(second)

    assert record.status is JobStatus.SUCCEEDED, (
        record.error,
        (tmp_path / "survivor.log").read_text()[-3000:],
    )
    stats = sim.stats()
    assert stats["generations_by_idempotency_key"] == {f"genq-{job_id}": [record.provider_ids["generation"]]}
    assert stats["generations_created"] == 1


def test_inspect_ping_answers_and_flower_lists_the_tasks_by_name(
    env: dict[str, str], own_redis: EmbeddedRedis, sim: Sim, tmp_path: Path
) -> None:
    port = free_port()
    flower = start_flower(env, port=port, log_path=tmp_path / "flower.log")
    worker = start_worker(env, name="ops", concurrency=2, log_path=tmp_path / "worker.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/healthcheck", timeout_s=30)
        ping = subprocess.run(
            [sys.executable, "-m", "celery", "-A", "worker", "inspect", "ping", "--timeout", "5"],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert "pong" in ping.stdout

        producer = Producer(own_redis.url)
        job_id = producer.submit(JOB)
        assert producer.wait(job_id, timeout_s=60).status is JobStatus.SUCCEEDED

        def tasks() -> dict[str, Any]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/tasks", timeout=5) as response:
                return dict(json.load(response))

        wanted = {"genq.start", "genq.syncso.create", "genq.syncso.wait", "genq.syncso.download"}
        until(lambda: wanted <= {t["name"] for t in tasks().values()}, 20, "Flower to list the tasks")
        listed = [t for t in tasks().values() if t["name"] == "genq.syncso.create"]
        assert job_id in listed[0]["args"]
        assert SIM_KEY not in json.dumps(tasks())
    finally:
        stop(worker)
        stop(flower)


def test_flower_shows_every_stage_run_of_a_job_once_in_a_final_state(
    env: dict[str, str], own_redis: EmbeddedRedis, sim: Sim, tmp_path: Path
) -> None:
    # One slot for two jobs (one parks in the limiter), a 503 on the first create (a retry), and waits
    # that park until the sweep finds the generation ended: every kind of re-run.
    sim.configure(pending_s=0.3, processing_s=0.6)
    sim.fault(route="syncso.create", status=503, times=1)
    port = free_port()
    flower = start_flower(env, port=port, log_path=tmp_path / "flower.log")
    worker = start_worker({**env, "GENQ_SYNCSO__CONCURRENCY": "1", "GENQ_SYNCSO__CHECK_INTERVAL_S": "0.3"},
                          name="rows", concurrency=2, log_path=tmp_path / "worker.log")  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/healthcheck", timeout_s=30)
        time.sleep(1.0)  # Flower subscribes to events once it runs
        producer = Producer(own_redis.url)
        ids = producer.submit_many([JOB, JOB])
        records = {job_id: producer.wait(job_id, timeout_s=60) for job_id in ids}
        assert all(r.status is JobStatus.SUCCEEDED for r in records.values()), records

        def rows(job_id: str) -> list[dict[str, Any]]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/tasks", timeout=5) as response:
                tasks = json.load(response)
            return [t | {"id": i} for i, t in tasks.items() if job_id in (t.get("args") or "")]

        def settled() -> bool:
            return all(
                sum(1 for row in rows(job_id) if row["name"] != "genq.start") == record.attempts
                and all(row["state"] in FINAL_STATES for row in rows(job_id))
                for job_id, record in records.items()
            )

        until(settled, 20, "Flower to show every run in a final state")
        for job_id, record in records.items():
            job_rows = rows(job_id)
            by_stage = Counter(
                row["name"].rsplit(".", 1)[1] for row in job_rows if row["name"] != "genq.start"
            )
            assert by_stage == {name: stage.attempts for name, stage in record.stages.items()}
            ids_of_job = {row["id"] for row in job_rows}
            roots = [row for row in job_rows if row["parent_id"] is None]
            assert [row["name"] for row in roots] == ["genq.start"]
            assert all(row["parent_id"] in ids_of_job for row in job_rows if row not in roots)
            assert {row["root_id"] for row in job_rows} == {roots[0]["id"]}
        states = Counter(row["state"] for job_id in ids for row in rows(job_id))
        assert states["RETRY"] == 1  # the 503
        assert states["FAILURE"] == 0
    finally:
        stop(worker)
        stop(flower)
