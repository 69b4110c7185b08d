"""The jobs index (``layout.JOBS_KEY``) follows every job through every step that stores it or changes its
status: each job is in the set of its status and no other, scored by its creation time; entries older
than the records' lifetime leave, and ``Producer.jobs`` lists from it (on the session Redis's scratch
database)."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
import redis

from producers import Producer
from schemas import JobError, JobStatus, Output, StageState, StageStatus
from schemas import layout as L
from tests.conftest import AVATAR, LIPSYNC
from tests.unit.test_pipeline_request import DEMO
from worker.store import JobStore

DONE = StageState(status=StageStatus.DONE)
ERROR = JobError(stage="create", message="no", provider="syncso", code="bad_input")
DAY_MS = 24 * 3600 * 1000


def index(client: redis.Redis) -> dict[str, tuple[JobStatus, int]]:
    """Every indexed job: its status set and score. A job found in two sets fails the test."""
    found: dict[str, tuple[JobStatus, int]] = {}
    for status in JobStatus:
        for member, score in client.zrange(L.jobs_key(status), 0, -1, withscores=True):
            job_id = L.text(member)
            assert job_id not in found, f"{job_id} is in {found[job_id][0]} and {status}"
            found[job_id] = (status, int(score))
    return found


def indexed(client: redis.Redis, job_id: str, status: JobStatus) -> None:
    """``job_id`` is in the set of ``status``, scored by its record's creation time."""
    created = L.epoch_ms(L.record_from_fields(job_id, client.hgetall(L.job_key(job_id))).created_at)
    assert index(client).get(job_id) == (status, created)


def test_every_way_of_submitting_enters_the_queued_set_with_the_creation_time(
    scratch_url: str, scratch: redis.Redis
) -> None:
    producer = Producer(scratch_url)
    one = producer.submit(LIPSYNC)
    many = producer.submit_many([LIPSYNC, AVATAR, {**LIPSYNC, "tenant": "t1"}])
    keyed = producer.submit(LIPSYNC, idempotency_key="k1")
    assert producer.submit(LIPSYNC, idempotency_key="k1") == keyed  # a repeat stores nothing
    batch = producer.submit_batch([LIPSYNC] * 20)
    everything = [one, *many, keyed, batch.batch_id, *batch.job_ids]
    for job_id in everything:
        indexed(scratch, job_id, JobStatus.QUEUED)
    assert len(index(scratch)) == len(everything)


def test_a_start_and_a_first_run_move_a_job_to_running_keeping_its_score(
    scratch_url: str, scratch: redis.Redis
) -> None:
    producer, store = Producer(scratch_url), JobStore(scratch)
    started, begun = producer.submit(LIPSYNC), producer.submit(LIPSYNC)
    assert store.start_once(started, "q", ["first"], root="r") is True
    assert store.begin(begun, "create", task_id="t1", holder="t1 h:1", lease_s=30,
                       follows_cancelled=False).outcome == "run"  # fmt: skip
    indexed(scratch, started, JobStatus.RUNNING)
    indexed(scratch, begun, JobStatus.RUNNING)
    assert store.transition(started, JobStatus.RUNNING) is JobStatus.RUNNING  # running again: no move
    indexed(scratch, started, JobStatus.RUNNING)


def test_ends_move_a_job_to_its_ended_status_and_a_replay_back_to_queued(
    scratch_url: str, scratch: redis.Redis
) -> None:
    producer, store = Producer(scratch_url), JobStore(scratch)
    succeeded, failed, cancelled = (producer.submit(LIPSYNC) for _ in range(3))
    for job_id in (succeeded, failed):
        assert store.start_once(job_id, "q", ["first"], root="r") is True
    output = Output(path="/o/v.mp4", bytes=3, sha256="ab")
    assert store.advance(succeeded, "download", DONE, outputs=[output]) == "ended"
    store.fail(failed, ERROR, dead_letter=True)
    producer.cancel(cancelled)  # from queued
    indexed(scratch, succeeded, JobStatus.SUCCEEDED)
    indexed(scratch, failed, JobStatus.FAILED)
    indexed(scratch, cancelled, JobStatus.CANCELLED)
    store.fail(cancelled, ERROR)  # an ended job does not move
    indexed(scratch, cancelled, JobStatus.CANCELLED)

    assert producer.replay(failed).status is JobStatus.QUEUED
    indexed(scratch, failed, JobStatus.QUEUED)


def test_a_pipeline_replay_and_its_step_jobs_keep_the_index(scratch_url: str, scratch: redis.Redis) -> None:
    producer, store = Producer(scratch_url), JobStore(scratch)
    pipeline_id = producer.submit(DEMO)
    assert store.start_once(pipeline_id, "q", ["first"], root="r") is True
    child = "c" * 28
    fields = L.new_job_fields(child, json.dumps(AVATAR), "avatar", None, L.now_iso())
    notice = json.dumps({"pipeline": pipeline_id, "queue": "q", "message": "node run"})
    assert store.step_job(pipeline_id, "avatar", child, notice, made=("aistudios", "start", fields)) == [
        "created"
    ]
    indexed(scratch, child, JobStatus.QUEUED)
    assert store.step_job(pipeline_id, "avatar", child, notice) == ["waiting"]  # made once
    store.fail(child, ERROR)
    store.fail(pipeline_id, ERROR)
    indexed(scratch, pipeline_id, JobStatus.FAILED)
    assert producer.replay(pipeline_id).status is JobStatus.QUEUED
    indexed(scratch, pipeline_id, JobStatus.QUEUED)
    indexed(scratch, child, JobStatus.FAILED)


def test_a_job_stored_before_the_index_enters_it_at_its_next_move(
    scratch_url: str, scratch: redis.Redis
) -> None:
    job_id = Producer(scratch_url).submit(LIPSYNC)
    scratch.delete(L.jobs_key(JobStatus.QUEUED))
    before_ms = float(scratch.time()[0]) * 1000
    assert JobStore(scratch).start_once(job_id, "q", ["first"], root="r") is True
    status, score = index(scratch)[job_id]
    assert status is JobStatus.RUNNING and score >= before_ms  # scored by the time it moved


def test_a_job_that_ends_trims_its_status_of_entries_older_than_the_records_lifetime(
    scratch_url: str, scratch: redis.Redis
) -> None:
    producer, store = Producer(scratch_url), JobStore(scratch)
    now_ms = int(time.time() * 1000)
    old_ms, young_ms = now_ms - L.JOB_TTL_S * 1000 - DAY_MS, now_ms - L.JOB_TTL_S * 1000 + DAY_MS
    scratch.zadd(L.jobs_key(JobStatus.FAILED), {"old": old_ms, "young": young_ms})
    scratch.zadd(L.jobs_key(JobStatus.RUNNING), {"old-but-running": old_ms})
    job_id = producer.submit(LIPSYNC)
    store.fail(job_id, ERROR)
    assert set(index(scratch)) == {"young", "old-but-running", job_id}  # a live job's entry stays


def test_a_listing_trims_expired_entries_and_drops_those_whose_record_is_gone(
    scratch_url: str, scratch: redis.Redis
) -> None:
    producer = Producer(scratch_url)
    kept, gone = producer.submit(LIPSYNC), producer.submit(LIPSYNC)
    for job_id in (kept, gone):
        producer.cancel(job_id)
    scratch.delete(L.job_key(gone))
    old_ms = int(time.time() * 1000) - L.JOB_TTL_S * 1000 - DAY_MS
    scratch.zadd(L.jobs_key(JobStatus.SUCCEEDED), {"expired": old_ms})
    listing = producer.jobs()
    assert [r.id for r in listing.jobs] == [kept]
    assert set(index(scratch)) == {kept}
    assert producer.jobs(tenant="nobody").jobs == []  # the filtered walk drops gone records too


def test_jobs_are_listed_newest_first_with_filters_and_counts(scratch_url: str, scratch: redis.Redis) -> None:
    producer, store = Producer(scratch_url), JobStore(scratch)
    ids = []
    for request in (LIPSYNC, AVATAR, {**LIPSYNC, "tenant": "acme"}, {**AVATAR, "tenant": "acme"}, LIPSYNC):
        ids.append(producer.submit(request))
        time.sleep(0.002)  # distinct creation times
    lip, avatar, lip_acme, avatar_acme, newest = ids
    store.fail(avatar, ERROR)
    store.fail(lip_acme, ERROR)
    assert store.start_once(avatar_acme, "q", ["first"], root="r") is True

    def listed(**filters: object) -> list[str]:
        return [r.id for r in producer.jobs(**filters).jobs]  # type: ignore[arg-type]

    assert listed() == [newest, avatar_acme, lip_acme, avatar, lip]
    assert listed(limit=2) == [newest, avatar_acme]
    assert listed(status="failed") == [lip_acme, avatar]
    assert listed(status=JobStatus.FAILED, kind="avatar") == [avatar]
    assert listed(tenant="acme") == [avatar_acme, lip_acme]
    assert listed(kind="lipsync", limit=2) == [newest, lip_acme]
    assert listed(kind="music") == []
    counts = producer.jobs(kind="avatar").counts  # counts ignore kind and tenant
    assert counts == {JobStatus.QUEUED: 2, JobStatus.RUNNING: 1, JobStatus.SUCCEEDED: 0,
                      JobStatus.FAILED: 2, JobStatus.CANCELLED: 0}  # fmt: skip
    created = producer.get(avatar_acme).created_at
    assert listed(since=created) == [newest, avatar_acme]
    assert sum(producer.jobs(since=created).counts.values()) == 2
    assert len(listed(since=timedelta(minutes=1))) == 5
    with pytest.raises(ValueError, match="limit"):
        producer.jobs(limit=0)


def test_a_filter_walks_past_a_page_of_jobs_that_do_not_match(
    scratch_url: str, scratch: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("producers.jobs.PAGE", 7)
    producer = Producer(scratch_url)
    rare = producer.submit({**AVATAR, "tenant": "rare"})
    time.sleep(0.002)
    many = producer.submit_many([LIPSYNC] * 30)
    assert [r.id for r in producer.jobs(tenant="rare").jobs] == [rare]
    assert [r.id for r in producer.jobs(kind="lipsync", limit=12).jobs] == sorted(many, reverse=True)[:12]
