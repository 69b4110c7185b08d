"""``genq metrics`` against real jobs: subprocess workers (prefork, so the pool processes' flushers run)
on a Redis of the test's own, the session simulator, and ``genq metrics`` as a subprocess, scraped over
HTTP and parsed with prometheus_client's own parser."""

from __future__ import annotations

import subprocess
import sys
import time
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


@pytest.fixture
def scrape(env: dict[str, str], own_redis: EmbeddedRedis, tmp_path: Path) -> Iterator[Callable[[], Samples]]:
    """``genq metrics`` on a free port, and a function that scrapes it: every sample by name and labels."""
    port = free_port()
    command = [sys.executable, "-m", "genq.cli", "metrics", "--port", str(port), "--redis-url", own_redis.url]
    with open(tmp_path / "metrics.log", "ab") as log:
        server = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}/metrics"

    def samples() -> Samples:
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    try:
        wait_http(url, timeout_s=30)
        yield samples
    finally:
        stop(server)


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
