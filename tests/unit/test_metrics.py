"""What the workers record for ``genq metrics`` and how the collector reads it back: buckets, outcomes,
the per-process buffer and its flush, the response hook, the job counter in TRANSITION_LUA, queue ages."""

from __future__ import annotations

import json
import time

import httpx
import pytest
import redis
from celery import Celery
from celery.exceptions import Ignore, Reject, Retry
from kombu import Connection
from prometheus_client.core import Metric

import worker.metrics as M
from genq.metrics import GenqCollector, counters, oldest_age_s, stage_histograms
from schemas import JobStatus
from schemas import layout as L
from schemas.wire import SENT_AT_HEADER, task_message
from tests.conftest import until
from worker.context import Context
from worker.outcomes import JobFailed
from worker.providers.errors import BadRequest
from worker.providers.syncso.client import SyncSoClient
from worker.providers.syncso.settings import SyncSoSettings
from worker.settings import get_settings
from worker.store import JobStore


@pytest.fixture
def db_url(scratch_url: str) -> str:
    return scratch_url


@pytest.fixture
def client(scratch: redis.Redis) -> redis.Redis:
    return scratch


@pytest.fixture
def buffer(monkeypatch: pytest.MonkeyPatch) -> M.Buffer:
    """A buffer of the test's own, which the process's responses count into meanwhile; the session's
    in-process worker's flusher keeps flushing the buffer it was made with, so it never drains this one."""
    fresh = M.Buffer()
    monkeypatch.setattr(M, "BUFFER", fresh)
    return fresh


@pytest.mark.parametrize(
    ("duration_s", "le"),
    [(0.0, "0.01"), (0.01, "0.01"), (0.0101, "0.025"), (1.0, "1"), (599.9, "600"), (600.1, "+Inf")],
)
def test_a_duration_falls_in_the_first_bucket_at_least_as_long(duration_s: float, le: str) -> None:
    assert M.bucket(duration_s) == le


@pytest.mark.parametrize(
    ("state", "retval", "expected"),
    [
        ("SUCCESS", "done", "done"),
        ("SUCCESS", "started", "done"),
        ("SUCCESS", None, "done"),
        ("SUCCESS", "parked: waiting for a syncso.generations slot", "parked"),
        ("SUCCESS", "waiting for syncso generation g-1", "waiting"),
        ("SUCCESS", "waiting for syncso generation g-1: it had ended, run again at once", "waiting"),
        ("SUCCESS", "again in 0.84 s: syncso.create: turn in 0.84 s", "later"),
        ("SUCCESS", "skipped: the job is failed", "skipped"),
        ("SUCCESS", "stopped: the job was cancelled", "skipped"),
        ("SUCCESS", "failed: the canvas could not be built", "failed"),
        ("RETRY", Retry("backoff"), "retry"),
        ("FAILURE", JobFailed("job j failed at create"), "failed"),
        ("FAILURE", RuntimeError("a bug"), "failed"),
        ("IGNORED", Ignore("Replaced by new task"), "done"),
        ("IGNORED", Ignore(), "skipped"),
        ("REJECTED", Reject("Redis unavailable", requeue=True), "retry"),
    ],
)
def test_the_outcome_of_a_run(state: str, retval: object, expected: str) -> None:
    assert M.outcome(state, retval) == expected
    assert expected in M.OUTCOMES


@pytest.mark.parametrize(
    ("name", "stage", "labels"),
    [
        ("genq.syncso.create", "create", ("syncso", "create")),
        ("genq.aimi.upload_chunk", "upload_chunk", ("aimi", "upload_chunk")),
        ("genq.start", "", ("genq", "start")),
    ],
)
def test_stage_labels(name: str, stage: str, labels: tuple[str, str]) -> None:
    assert M.stage_labels(name, stage) == labels


def _samples(family: Metric) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}


def test_stage_runs_flush_to_redis_and_read_back_as_a_histogram(
    buffer: M.Buffer, client: redis.Redis
) -> None:
    for duration_s in (0.005, 0.3, 0.3, 700.0):
        M.record_stage_run("genq.syncso.create", "create", "SUCCESS", "done", duration_s)
    M.record_stage_run("genq.syncso.create", "create", "RETRY", Retry(), 0.2)
    assert buffer.flush(client) == 6  # three buckets and a sum of done, one bucket and a sum of retry
    assert buffer.flush(client) == 0  # nothing new
    M.record_stage_run("genq.syncso.create", "create", "SUCCESS", "done", 0.3)
    buffer.flush(client)  # counters grow

    raw = client.hgetall(L.METRICS_STAGES_KEY)
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    assert fields["syncso|create|done|0.5"] == "3"
    samples = _samples(stage_histograms(fields))
    done = (("outcome", "done"), ("provider", "syncso"), ("stage", "create"))
    assert samples[("genq_stage_duration_seconds_count", done)] == 5
    assert samples[("genq_stage_duration_seconds_sum", done)] == pytest.approx(700.905)
    bucket = "genq_stage_duration_seconds_bucket"
    assert samples[(bucket, (("le", "0.01"), *done))] == 1
    assert samples[(bucket, (("le", "0.25"), *done))] == 1
    assert samples[(bucket, (("le", "0.5"), *done))] == 4
    assert samples[(bucket, (("le", "600.0"), *done))] == 4
    assert samples[(bucket, (("le", "+Inf"), *done))] == 5
    retry = (("outcome", "retry"), ("provider", "syncso"), ("stage", "create"))
    assert samples[("genq_stage_duration_seconds_count", retry)] == 1


@pytest.mark.slow
def test_a_failed_flush_keeps_the_counts_for_the_next(buffer: M.Buffer, client: redis.Redis) -> None:
    M.record_response("syncso", 200, "")
    M.record_stage_run("genq.start", "", "SUCCESS", "started", 0.01)
    unreachable = redis.Redis(port=1, socket_connect_timeout=0.2)
    with pytest.raises(redis.ConnectionError):
        buffer.flush(unreachable)
    M.record_response("syncso", 200, "")
    assert buffer.flush(client) == 3
    assert client.hget(L.METRICS_RESPONSES_KEY, "syncso|200|") == b"2"


def test_the_flusher_flushes_each_interval_and_once_more_when_stopped(
    buffer: M.Buffer, client: redis.Redis
) -> None:
    flusher = M.Flusher(client, interval_s=0.05, buffer=buffer)
    flusher.start()
    M.record_response("aimi", 200, "")
    until(lambda: client.hget(L.METRICS_RESPONSES_KEY, "aimi|200|") == b"1", 5, "a flush")
    M.record_response("aimi", 200, "")
    flusher.stop()
    assert client.hget(L.METRICS_RESPONSES_KEY, "aimi|200|") == b"2"
    assert buffer.pending() == ({}, {})


def test_counters_read_label_values_back_from_fields() -> None:
    fields = {"syncso|400|invalid_input": "2", "aimi|200|": "7", "broken": "1"}
    family = counters("genq_provider_responses", "h", ["provider", "status", "code"], fields)
    assert {(s.name, tuple(s.labels.values()), s.value) for s in family.samples} == {
        ("genq_provider_responses_total", ("syncso", "400", "invalid_input"), 2),
        ("genq_provider_responses_total", ("aimi", "200", ""), 7),
    }


def test_every_response_a_provider_client_gets_is_counted_with_its_error_code(buffer: M.Buffer) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/bad"):
            return httpx.Response(
                400, json={"statusCode": 400, "message": "no", "errorCode": "invalid|input"}
            )
        if request.url.path.endswith("/gone"):
            return httpx.Response(404, text="<html>not here</html>", headers={"content-type": "text/html"})
        return httpx.Response(200, json={"id": "g-1", "status": "PENDING"})

    settings = SyncSoSettings(base_url="https://api.test")
    with SyncSoClient.from_settings(settings, transport=httpx.MockTransport(handler)) as client:
        client.get_generation("ok")
        with pytest.raises(BadRequest) as bad:
            client.get_generation("bad")
        with pytest.raises(Exception, match="not here"):
            client.get_generation("gone")
    assert bad.value.code == "invalid|input"  # the client still reads the body the hook read first
    counts, _ = buffer.pending()
    assert counts == {
        (L.METRICS_RESPONSES_KEY, "syncso|200|"): 1,
        (L.METRICS_RESPONSES_KEY, "syncso|400|invalid_input"): 1,  # the separator cannot appear in a value
        (L.METRICS_RESPONSES_KEY, "syncso|404|"): 1,  # not JSON: its body is not read for a code
    }


def test_a_job_is_counted_once_when_it_reaches_a_terminal_status(client: redis.Redis) -> None:
    store = JobStore(client)
    for job_id, kind in (("j1", "lipsync"), ("j2", "lipsync"), ("j3", "avatar")):
        client.hset(L.job_key(job_id), mapping={"kind": kind, "status": "queued"})
        store.transition(job_id, JobStatus.RUNNING)
    assert client.hgetall(L.METRICS_JOBS_KEY) == {}
    store.transition("j1", JobStatus.SUCCEEDED)
    store.transition("j1", JobStatus.FAILED)  # it had ended: nothing changes
    store.transition("j2", JobStatus.FAILED)
    store.transition("j3", JobStatus.CANCELLED)
    assert client.hgetall(L.METRICS_JOBS_KEY) == {
        b"lipsync|succeeded": b"1",
        b"lipsync|failed": b"1",
        b"avatar|cancelled": b"1",
    }


def test_queue_depth_and_the_age_of_its_oldest_message(client: redis.Redis, db_url: str) -> None:
    now = time.time()
    first, second = task_message("genq.start", ["a"], "aimi"), task_message("genq.start", ["b"], "aimi")
    client.lpush("aimi", first, second)  # first is at the tail: the next to be taken, and the oldest
    kept = json.loads(task_message("genq.start", ["c"], "aimi"))
    del kept["headers"][SENT_AT_HEADER]  # a woken stage's message, pushed to the tail without one
    client.rpush("aimi", json.dumps(kept))
    client.rpush("aistudios", json.dumps(kept))
    ctx = Context(get_settings().with_redis_url(db_url))
    collector = GenqCollector(ctx, ["default", "aimi", "aistudios"], clock=lambda: now + 30.0)
    families = {family.name: _samples(family) for family in collector.collect()}

    assert families["genq_queue_depth"] == {
        ("genq_queue_depth", (("queue", "default"),)): 0,
        ("genq_queue_depth", (("queue", "aimi"),)): 3,
        ("genq_queue_depth", (("queue", "aistudios"),)): 1,
    }
    ages = families["genq_queue_oldest_age_seconds"]
    assert ages[("genq_queue_oldest_age_seconds", (("queue", "default"),))] == 0  # empty
    assert ages[("genq_queue_oldest_age_seconds", (("queue", "aimi"),))] == pytest.approx(30.0, abs=0.5)
    assert ("genq_queue_oldest_age_seconds", (("queue", "aistudios"),)) not in ages  # unknown
    assert {"genq_budget_limit", "genq_parked", "genq_scheduled", "genq_stage_duration_seconds",
            "genq_provider_responses", "genq_jobs"} <= set(families)  # fmt: skip


def test_oldest_age_without_messages_or_send_times() -> None:
    assert oldest_age_s([], 100.0) == 0.0
    assert oldest_age_s([b"not json", b'{"headers": {}}'], 100.0) is None
    assert oldest_age_s([json.dumps({"headers": {SENT_AT_HEADER: 130.0}})], 100.0) == 0.0  # clock skew


def test_messages_celery_publishes_carry_a_send_time() -> None:
    M.install(get_settings())  # as the worker app does; connecting again changes nothing
    app = Celery("t", broker="memory://")
    app.conf.update(task_serializer="json", accept_content=["json"], task_ignore_result=True)
    before = time.time()
    with Connection("memory://") as conn:
        app.send_task("genq.syncso.wait", args=["j1"], queue="syncso", connection=conn)
        sent = conn.default_channel._get("syncso")
    assert before <= sent["headers"][SENT_AT_HEADER] <= time.time()
