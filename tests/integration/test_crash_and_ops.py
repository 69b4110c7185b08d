"""Subprocess workers on a Redis of their own: SIGKILL mid-job, `celery inspect ping`, Flower."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from genq.processes import free_port, start_flower, start_worker, stop, wait_http
from genq.redis_server import EmbeddedRedis
from producers import Producer
from schemas import JobStatus, StageStatus
from tests.conftest import SIM_KEY, Sim, until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JOB = {
    "kind": "lipsync",
    "model": "lipsync-2",
    "video": "https://x.test/v.mp4",
    "audio": "https://x.test/a.wav",
}


def test_sigkilled_worker_mid_job_the_job_succeeds_with_one_generation(
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
