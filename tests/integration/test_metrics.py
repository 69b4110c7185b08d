"""``genq metrics`` against real jobs: subprocess workers (prefork, so the pool processes' flushers run)
on a Redis of the test's own, the session simulator, and ``genq metrics`` as a subprocess, scraped over
HTTP and parsed with prometheus_client's own parser."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from genq.processes import free_port, stop, wait_http
from genq.redis_server import EmbeddedRedis
from producers import Producer
from schemas import JobStatus
from schemas.wire import task_message
from tests.conftest import Sim, until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JOB = {
    "kind": "lipsync",
    "model": "lipsync-2",
    "video": "https://x.test/v.mp4",
    "audio": "https://x.test/a.wav",
}
REFUSED = {"statusCode": 400, "message": ["input.0.url must be a URL address"], "error": "Bad Request",
           "errorCode": "generation_input_validation_failed"}  # fmt: skip
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
PASSWORD = "s3cret-metrics-pw"


class MetricsServer:
    """``genq metrics`` as a subprocess on a free port, with its output in ``log``."""

    def __init__(self, env: dict[str, str], redis_url: str, log: Path) -> None:
        self.port, self.log = free_port(), log
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "genq.cli", "metrics", "--port", str(self.port), "--redis-url",
                   redis_url]  # fmt: skip
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def samples(self) -> Samples:
        """Every sample of one scrape (which must be a 200), by name and labels."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as response:
            assert response.status == 200
            text = response.read().decode()
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def health(self) -> tuple[int, dict[str, object]]:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


@pytest.fixture
def metrics_server(env: dict[str, str], own_redis: EmbeddedRedis, tmp_path: Path) -> Iterator[MetricsServer]:
    server = MetricsServer(env, own_redis.url, tmp_path / "metrics.log")
    try:
        wait_http(f"{server.url}/metrics", timeout_s=30)
        yield server
    finally:
        stop(server.process)


@pytest.fixture
def scrape(metrics_server: MetricsServer) -> Callable[[], Samples]:
    """A function that scrapes ``genq metrics``: every sample by name and labels."""
    return metrics_server.samples


def _get(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def _stage(samples: Samples, suffix: str, provider: str, stage: str, outcome: str) -> float:
    value = _get(
        samples, f"genq_stage_duration_seconds_{suffix}", provider=provider, stage=stage, outcome=outcome
    )
    return value or 0.0


def test_metrics_show_what_real_jobs_did(
    own_redis: EmbeddedRedis,
    workers: Callable[..., subprocess.Popen[bytes]],
    sim: Sim,
    scrape: Callable[[], Samples],
) -> None:
    producer = Producer(own_redis.url)
    workers("metrics", concurrency=2, queues=("default", "syncso"))  # no worker takes the aimi queue
    done = producer.wait(producer.submit(JOB), timeout_s=60)
    assert done.status is JobStatus.SUCCEEDED, done.error
    sim.fault(route="syncso.create", status=400, times=1, body=REFUSED)
    refused = producer.wait(producer.submit(JOB), timeout_s=60)
    assert refused.status is JobStatus.FAILED, refused.status

    client = redis.Redis.from_url(own_redis.url)
    pushed_at = time.time()
    client.lpush(
        "aimi", task_message("genq.start", ["m1"], "aimi"), task_message("genq.start", ["m2"], "aimi")
    )
    client.close()
    time.sleep(1.5)

    def counted() -> bool:  # the pool processes flush what they counted within a second
        s = scrape()
        code = "generation_input_validation_failed"
        refusals = _get(s, "genq_provider_responses_total", provider="syncso", status="400", code=code)
        return refusals == 1 and _stage(s, "count", "syncso", "create", "failed") == 1

    until(counted, 15, "the workers' counts to reach Redis")
    samples = scrape()
    waited_s = time.time() - pushed_at

    assert _get(samples, "genq_jobs_total", kind="lipsync", status="succeeded") == 1
    assert _get(samples, "genq_jobs_total", kind="lipsync", status="failed") == 1
    assert _get(samples, "genq_jobs_total", kind="lipsync", status="cancelled") is None
    assert _stage(samples, "count", "syncso", "create", "done") == 1
    assert _stage(samples, "sum", "syncso", "create", "done") > 0
    inf = _get(samples, "genq_stage_duration_seconds_bucket", provider="syncso", stage="create",
               outcome="done", le="+Inf")  # fmt: skip
    assert inf == 1
    assert _stage(samples, "count", "genq", "start", "done") == 2
    assert _stage(samples, "count", "syncso", "download", "done") == 1
    responses: Counter[str] = Counter()
    for (name, labels), value in samples.items():
        if name == "genq_provider_responses_total" and ("provider", "syncso") in labels:
            responses[dict(labels)["status"]] += int(value)
    assert responses["400"] == 1
    # The first job's create, at least one status check of its generation, and its download.
    assert sum(value for status, value in responses.items() if status.startswith("2")) >= 3

    assert _get(samples, "genq_queue_depth", queue="aimi") == 2
    age = _get(samples, "genq_queue_oldest_age_seconds", queue="aimi")
    assert age is not None
    assert 1.5 <= age <= waited_s + 1.0
    assert _get(samples, "genq_queue_depth", queue="syncso") == 0
    assert _get(samples, "genq_queue_oldest_age_seconds", queue="syncso") == 0
    assert _get(samples, "genq_budget_limit", budget="syncso.create", kind="rate") == 1000
    assert _get(samples, "genq_scheduled", queue="syncso") == 0


def test_every_scrape_is_answered_while_redis_is_down_and_health_says_why(
    own_redis: EmbeddedRedis, metrics_server: MetricsServer
) -> None:
    before = time.time()
    up = metrics_server.samples()
    assert _get(up, "genq_up") == 1
    read_at = _get(up, "genq_last_successful_read_timestamp_seconds")
    assert read_at is not None and before - 1 <= read_at <= time.time()
    assert _get(up, "genq_queue_depth", queue="syncso") == 0
    assert metrics_server.health() == (200, {"ok": True})

    own_redis.kill()
    for _ in range(3):  # every scrape, not just the first
        down = metrics_server.samples()
        assert _get(down, "genq_up") == 0
        assert _get(down, "genq_last_successful_read_timestamp_seconds") == read_at
        assert _get(down, "genq_queue_depth", queue="syncso") is None  # no figure rather than a stale one
    problem = f"redis: connection refused at 127.0.0.1:{own_redis.port}"
    assert metrics_server.health() == (503, {"ok": False, "error": problem})

    own_redis.restart()
    again = metrics_server.samples()
    assert _get(again, "genq_up") == 1
    assert (_get(again, "genq_last_successful_read_timestamp_seconds") or 0) > read_at
    assert metrics_server.health() == (200, {"ok": True})
    log = metrics_server.log.read_text()
    assert "Traceback" not in log
    assert log.splitlines() == [
        f"genq metrics: cannot read Redis ({problem}); answering genq_up 0",
        "genq metrics: Redis answers again",
    ]


def test_metrics_start_without_redis_and_never_show_its_password(env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    server = MetricsServer(env, f"redis://:{PASSWORD}@127.0.0.1:{port}/0", tmp_path / "metrics.log")
    try:
        wait_http(f"{server.url}/metrics", timeout_s=30)
        samples = server.samples()
        assert _get(samples, "genq_up") == 0
        assert _get(samples, "genq_last_successful_read_timestamp_seconds") == 0
        problem = f"redis: connection refused at 127.0.0.1:{port}"
        assert server.health() == (503, {"ok": False, "error": problem})
    finally:
        stop(server.process)
    assert server.log.read_text().splitlines() == [
        f"genq metrics: {problem}; scrapes answer genq_up 0 until it answers",
        f"genq metrics: cannot read Redis ({problem}); answering genq_up 0",
    ]
