"""The baseline of ``bench/overhead.py``: a sync.so lipsync job as a user would write it by hand with
Celery alone, a chain of four tasks on the Redis broker:

    create(job_id, request) | wait() | download() | record()

- ``create``: ``POST /v2/generate`` (JSON, ``x-api-key``, an ``Idempotency-Key`` per job, as genq sends);
- ``wait``: ``GET /v2/generate/{id}``; while the generation runs, ``self.retry(countdown=BARE_POLL_S)``;
- ``download``: ``GET`` the output URL, streamed into ``BARE_ARTIFACT_DIR/<job id>/<generation id>.mp4``
  (hashed while written, as genq does);
- ``record``: one ``HSET`` of a small result hash (status, generation, path, bytes, sha256, end time) and
  its ``EXPIRE``, in one round trip.

Each task hands the next a dict (the chain's callback message carries it), so there is no result
backend. Celery's defaults, but for what a user who cannot lose a job sets, as genq does: JSON, late
acks (a killed worker's task runs again), a prefetch of one. No task events unless ``BARE_EVENTS=1``
(genq sends them, for Flower). Each worker process keeps one HTTP client and one Redis client.

    BARE_REDIS_URL=... BARE_SYNCSO_URL=... BARE_SYNCSO_KEY=... BARE_ARTIFACT_DIR=... \\
        celery -A bench.bare_chain worker -c 4
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import httpx
import redis
from celery import Celery, Task

RECORD_KEY = "bare:job:{job_id}"
RECORD_TTL_S = 7 * 24 * 3600
TERMINAL = frozenset({"COMPLETED", "FAILED", "REJECTED", "CANCELED", "TIMED_OUT"})
EVENTS = os.environ.get("BARE_EVENTS") == "1"

app = Celery("bare_chain", broker=os.environ.get("BARE_REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    worker_send_task_events=EVENTS,
    task_send_sent_event=EVENTS,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@functools.cache
def _http() -> httpx.Client:
    """This process's client (made after the fork, on first use)."""
    headers = {"x-api-key": os.environ["BARE_SYNCSO_KEY"], "accept": "application/json"}
    return httpx.Client(base_url=os.environ["BARE_SYNCSO_URL"], headers=headers, timeout=30)


@functools.cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["BARE_REDIS_URL"])


def chain_for(job_id: str, request: dict[str, Any]) -> Any:
    """The job's chain, ready for ``apply_async()``."""
    return create.s(job_id, request) | wait.s() | download.s() | record.s()


@app.task(name="bare.create")
def create(job_id: str, request: dict[str, Any]) -> dict[str, Any]:
    body = {
        "model": request["model"],
        "input": [{"type": "video", "url": request["video"]}, {"type": "audio", "url": request["audio"]}],
    }
    response = _http().post("/v2/generate", json=body, headers={"Idempotency-Key": f"bare-{job_id}"})
    response.raise_for_status()
    return {"job": job_id, "generation": response.json()["id"]}


@app.task(name="bare.wait", bind=True, max_retries=None)
def wait(self: Task, job: dict[str, Any]) -> dict[str, Any]:  # type: ignore[type-arg]
    response = _http().get(f"/v2/generate/{job['generation']}")
    response.raise_for_status()
    generation = response.json()
    if generation["status"] not in TERMINAL:
        raise self.retry(countdown=float(os.environ.get("BARE_POLL_S", "0.1")))
    if generation["status"] != "COMPLETED":
        raise RuntimeError(f"generation {job['generation']} ended {generation['status']}")
    return {**job, "output_url": generation["outputUrl"]}


@app.task(name="bare.download")
def download(job: dict[str, Any]) -> dict[str, Any]:
    dest = Path(os.environ["BARE_ARTIFACT_DIR"]) / job["job"] / f"{job['generation']}.mp4"
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    with _http().stream("GET", job["output_url"]) as response, dest.open("wb") as out:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
    return {**job, "path": str(dest), "bytes": size, "sha256": digest.hexdigest()}


@app.task(name="bare.record")
def record(job: dict[str, Any]) -> None:
    key = RECORD_KEY.format(job_id=job["job"])
    fields: dict[Any, Any] = {  # redis-py types the keys as a union, and Mapping keys are invariant
        "status": "succeeded", "generation": job["generation"], "path": job["path"], "bytes": job["bytes"],
        "sha256": job["sha256"], "finished_at": time.time(),
    }  # fmt: skip
    with _redis().pipeline(transaction=False) as pipe:
        pipe.hset(key, mapping=fields)
        pipe.expire(key, RECORD_TTL_S)
        pipe.execute()
