"""A Redis with a password (``requirepass``): every genq process works with it, and none shows it: not
`genq demo`'s output, not the worker's banner or log, not Flower's log, pages or API (which shows each
worker's configuration), not `celery inspect conf`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from genq.processes import free_port, start_flower, stop, wait_http, worker_env
from genq.redis_server import EmbeddedRedis
from producers import Producer
from schemas import JobStatus
from tests.conftest import LIPSYNC, WORKER_ENV, Services, Sim, until
from tests.integration.conftest import Workers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "pw-0f9c2b7e41d84a6b-redis"


@pytest.fixture
def locked_redis() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(password=PASSWORD) as server:
        yield server


def _clean_env(**extra: str) -> dict[str, str]:
    """A user's environment (no GENQ_ setting of this session), running this checkout's code from any
    directory (the demo's workers too)."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("GENQ_")}, "PYTHONPATH": str(ROOT),
            **extra}  # fmt: skip


def test_genq_demo_shows_a_given_redis_url_without_its_password(
    locked_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "genq.cli", "demo", "--kind", "avatar", "--jobs", "1", "--workers", "1",
         "--concurrency", "2", "--timeout-s", "90"],
        cwd=tmp_path, env=_clean_env(GENQ_REDIS_URL=locked_redis.url), capture_output=True, text=True,
        timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "1/1 succeeded" in result.stdout  # workers, receiver and Flower all worked with the password
    assert f"redis      redis://***@127.0.0.1:{locked_redis.port}/0" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr
    logs = {p.name: p.read_text() for p in tmp_path.glob("artifacts/demo-*/*.log")}
    assert {"worker0.log", "flower.log", "webhooks.log"} <= set(logs)
    assert [name for name, text in logs.items() if PASSWORD in text] == []
    assert f"redis://:**@127.0.0.1:{locked_redis.port}/0" in logs["worker0.log"]  # Celery's banner


def test_no_banner_log_flower_page_or_inspect_shows_the_redis_password(
    locked_redis: EmbeddedRedis, services: Services, sim: Sim, tmp_path: Path
) -> None:
    sim_urls = {f"GENQ_{name}__BASE_URL": sim.base_url for name in ("SYNCSO", "AISTUDIOS", "AIMI")}
    env = worker_env(locked_redis.url, artifact_dir=tmp_path / "artifacts", extra={**WORKER_ENV, **sim_urls})
    workers = Workers(env, tmp_path)
    port = free_port()
    flower = start_flower(env, port=port, log_path=tmp_path / "flower.log")
    try:
        workers("locked", concurrency=2)
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthcheck", timeout_s=30)
        time.sleep(1.0)  # Flower subscribes to events once it runs
        producer = Producer(locked_redis.url)
        job_id = producer.submit(LIPSYNC)
        assert producer.wait(job_id, timeout_s=60).status is JobStatus.SUCCEEDED

        def page(path: str) -> str:
            with urllib.request.urlopen(f"{base}{path}", timeout=20) as response:
                return str(response.read().decode())

        until(lambda: job_id in page("/api/tasks"), 20, "Flower to list the job's runs")
        pages = {path: page(path) for path in ("/api/tasks", "/api/workers?refresh=1", "/workers", "/broker",
                                               "/api/queues/length")}  # fmt: skip
        inspect = subprocess.run(
            [sys.executable, "-m", "celery", "-A", "worker", "inspect", "conf", "--timeout", "5"],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        stop(flower)
        workers.stop_all()
    assert '"broker_url": "redis://:********@127.0.0.1' in inspect.stdout, inspect.stdout[-2000:]
    assert "broker_url" in pages["/api/workers?refresh=1"]  # each worker's configuration, censored
    log = (tmp_path / "locked.log").read_text()
    assert f"transport:   redis://:**@127.0.0.1:{locked_redis.port}/0" in log
    shown = {"worker log": log, "flower log": (tmp_path / "flower.log").read_text(),
             "inspect conf": inspect.stdout + inspect.stderr, **pages}  # fmt: skip
    assert [where for where, text in shown.items() if PASSWORD in text] == []
