"""Pipelines across worker processes (subprocess workers on a Redis of their own).

A pipeline survives its worker: SIGKILLed with a provider call held at each step boundary (the last
call of a step's job, before its end hands the output on, and the first call of the next step's job,
right after the pipeline made it), every time a new worker takes over, and the pipeline still ends with
one provider job per step run. One language: one provider call in flight at a time, so no kill lands in
the instant between Aimi's answer to an execute and its record, which would start one more execution
(Aimi has no idempotency key; see the README's guarantees). And on an S3 output store, with workers on
disks of their own, each step takes the previous step's output by a presigned URL."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from genq.redis_server import EmbeddedRedis
from genq.s3_server import S3Server
from producers import Producer
from schemas import JobStatus
from tests.conftest import Sim, until
from tests.integration.conftest import Workers
from tests.integration.test_pipeline import demo_pipeline

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Each held once, in the order the pipeline reaches them.
# Aimi's first call (upload_init) is left out: Aimi has no idempotency key, so a worker killed between its
# answer and the record of its taskid leaves one unused upload task behind (README, guarantees); the
# music job's first chunk is held instead.
KILL_POINTS = ("aistudios.download", "syncso.create", "syncso.download", "aimi.upload_chunk", "aimi.download")
HOLD_S = 3.0


@pytest.mark.timeout(240)
def test_a_worker_sigkilled_at_each_step_boundary_the_pipeline_ends_with_one_provider_job_per_step(
    workers: Workers, own_redis: EmbeddedRedis, sim: Sim
) -> None:
    for route in KILL_POINTS:
        sim.fault(route=route, hold_s=HOLD_S, times=1)
    producer = Producer(own_redis.url)
    current = workers("w0")
    since = time.time()
    pipeline_id = producer.submit(demo_pipeline(("fr",)))
    for n, route in enumerate(KILL_POINTS, start=1):
        # The simulator records a request once it has processed it, before holding its answer.
        until(lambda: any(e["route"] == route for e in sim.events(since)), 60, f"{route} held")  # noqa: B023
        workers.stop(current, kill=True)
        since = time.time()
        current = workers(f"w{n}")
    record = producer.wait(pipeline_id, timeout_s=120)

    assert record.status is JobStatus.SUCCEEDED, record.error
    assert len(record.outputs) == 1
    assert sim.stats("aistudios")["projects_created"] == 1
    syncso = sim.stats("syncso")
    assert syncso["generations_created"] == 1
    assert [len(ids) for ids in syncso["generations_by_idempotency_key"].values()] == [1]
    aimi = sim.stats("aimi")
    assert (aimi["uploads"], aimi["executions_started"]) == (1, 1)


def test_on_an_s3_store_each_step_takes_the_previous_output_by_a_url_presigned_for_its_run(  # noqa: PLR0917
    workers: Workers, own_redis: EmbeddedRedis, sim: Sim, s3: S3Server, media: dict[str, str], tmp_path: Path
) -> None:
    """Two workers with disks of their own and one S3 store: an output is handed on as ``output:s3://…``
    and each run presigns it, so sync.so fetches it by URL and Aimi reads it by range, from any host."""
    sim.configure("syncso", fetch_input_urls=True)  # the simulator fetches URL inputs, to record their bytes
    prefix = f"pipeline-{uuid.uuid4().hex[:8]}"
    workers("one", 4, GENQ_ARTIFACT_DIR=str(tmp_path / "disk-one"), **s3.env(prefix))
    workers("two", 4, GENQ_ARTIFACT_DIR=str(tmp_path / "disk-two"), **s3.env(prefix))
    producer = Producer(own_redis.url)
    request = demo_pipeline(("fr", "de"))
    for item in request["steps"]["dub"]["for_each"]:  # a local track (the simulator fetches URL inputs)
        item["audio"] = media["audio"]
    record = producer.wait(producer.submit(request), timeout_s=120)

    assert record.status is JobStatus.SUCCEEDED, record.error
    jobs = {key: producer.get(job_id, presign=False) for key, job_id in record.provider_ids.items()}
    [avatar] = jobs["avatar"].outputs
    generations = sim.http.get("/_sim/syncso/inputs").raise_for_status().json()
    for b in range(2):
        dub = jobs[f"dub[{b}]"]
        assert dub.request.video == f"output:{avatar.store_url}"
        assert jobs[f"score[{b}]"].request.video == f"output:{dub.outputs[0].store_url}"
        video = generations[dub.provider_ids["generation"]]["inputs"]["video"]
        assert video["sha256"] == avatar.sha256
        assert video["url"].startswith(s3.endpoint_url) and "X-Amz-Signature=" in video["url"]
    assert all(o.store_url and o.store_url.startswith("s3://") for o in record.outputs)
