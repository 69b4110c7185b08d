"""A pipeline's step job is made in one Redis step with its start message, its notice and its id in the
pipeline, only while the pipeline runs; a run made again finds it (on the session Redis's scratch
database)."""

from __future__ import annotations

import json

import redis

from producers import Producer
from schemas import JobStatus
from schemas import layout as L
from tests.unit.test_pipeline_request import DEMO
from worker.store import JobStore


def made(store: JobStore, pipeline_id: str, child: str) -> tuple[str, str, dict[str, str]]:
    fields = L.new_job_fields(child, '{"kind": "avatar"}', "avatar", None, L.now_iso())
    return "aistudios", f"start {child}", fields


def running_pipeline(scratch_url: str, store: JobStore) -> str:
    pipeline_id = Producer(scratch_url).submit(DEMO)
    assert store.start_once(pipeline_id, "q-start", ["first"], root="root-1") is True
    return pipeline_id


def test_a_step_job_is_made_once_with_its_notice_and_a_run_made_again_waits_for_it(
    scratch_url: str, scratch: redis.Redis
) -> None:
    store = JobStore(scratch)
    pipeline_id = running_pipeline(scratch_url, store)
    notice = json.dumps({"pipeline": pipeline_id, "queue": "default", "message": "node run"})
    child = "c" * 28
    assert store.step_job(pipeline_id, "avatar", child, notice, made=made(store, pipeline_id, child)) == [
        "created"
    ]
    assert store.step_job(pipeline_id, "avatar", child, notice, made=made(store, pipeline_id, child)) == [
        "waiting"
    ]
    assert store.step_job(pipeline_id, "avatar", child, notice) == ["waiting"]
    assert scratch.lrange("aistudios", 0, -1) == [f"start {child}".encode()]  # one start message
    assert store.get(pipeline_id).provider_ids == {"avatar": child}
    assert scratch.hget(L.PIPELINE_NOTIFY_KEY, child) == notice.encode()
    # The job ends: its notice is pushed in that step, and a run made again finds it ended.
    store.transition(child, JobStatus.FAILED)
    assert scratch.lindex("default", 0) == b"node run"  # after the pipeline's own start message
    assert store.step_job(pipeline_id, "avatar", child, notice) == ["ended", "failed"]
    assert not scratch.hexists(L.PIPELINE_NOTIFY_KEY, child)


def test_no_step_job_is_made_for_a_pipeline_that_ended(scratch_url: str, scratch: redis.Redis) -> None:
    store = JobStore(scratch)
    pipeline_id = running_pipeline(scratch_url, store)
    store.transition(pipeline_id, JobStatus.CANCELLED)
    child = "d" * 28
    answer = store.step_job(pipeline_id, "avatar", child, "{}", made=made(store, pipeline_id, child))
    assert answer == ["stopped", "cancelled"]
    assert not scratch.exists(L.job_key(child))
    assert scratch.llen("aistudios") == 0
