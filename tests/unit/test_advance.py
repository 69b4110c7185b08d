"""A stage run begins and ends in one Redis step each (on the session Redis's scratch database): the end
records the stage and pushes what follows once, counts a join in the job record, ends the job with its
outputs; a copy of a message whose run advanced, or that another live process runs, does nothing."""

from __future__ import annotations

import json

import redis

from producers import Producer
from schemas import JobStatus, Output, StageState, StageStatus
from schemas import layout as L
from tests.conftest import LIPSYNC
from worker.store import JobStore

MUSIC = {"kind": "music", "video": "https://x.test/v.mp4", "executions": 2}
DONE = StageState(status=StageStatus.DONE)


def running(scratch_url: str, scratch: redis.Redis, request: dict[str, object]) -> str:
    job_id = Producer(scratch_url).submit(request)
    assert JobStore(scratch).start_once(job_id, "q-start", ["first"], root="root-1") is True
    return job_id


def begin(store: JobStore, job_id: str, stage: str, task_id: str = "t1", process: str = "h:1") -> str:
    return store.begin(job_id, stage, task_id=task_id, holder=f"{task_id} {process}", lease_s=30,
                       follows_cancelled=False).outcome  # fmt: skip


def test_an_advance_records_the_stage_and_pushes_the_next_run_once(
    scratch_url: str, scratch: redis.Redis
) -> None:
    job_id = running(scratch_url, scratch, LIPSYNC)
    store = JobStore(scratch)
    assert begin(store, job_id, "create") == "run"
    assert store.advance(job_id, "create", DONE, pushes=[("q", "wait-message")]) == "advanced"
    assert store.advance(job_id, "create", DONE, pushes=[("q", "wait-message")]) == "again"
    assert [L.text(m) for m in scratch.lrange("q", 0, -1)] == ["wait-message"]
    assert store.get(job_id).stages["create"].status is StageStatus.DONE
    assert begin(store, job_id, "create", task_id="t-copy") == "done"  # a copy of its message: skipped


def test_a_join_pushes_what_follows_once_every_branch_is_done_whatever_their_order(
    scratch_url: str, scratch: redis.Redis
) -> None:
    job_id = running(scratch_url, scratch, MUSIC)
    store = JobStore(scratch)
    join = ("download[0]", "download[1]")
    assert store.advance(job_id, "download[1]", DONE, join=join, pushes=[("q", "collect")]) == "joined"
    assert scratch.llen("q") == 0
    assert store.advance(job_id, "download[0]", DONE, join=join, pushes=[("q", "collect")]) == "advanced"
    assert store.advance(job_id, "download[0]", DONE, join=join, pushes=[("q", "collect")]) == "again"
    assert [L.text(m) for m in scratch.lrange("q", 0, -1)] == ["collect"]
    assert scratch.ttl(L.job_key(job_id)) == -1  # the join's count lives as long as the running job


def test_the_last_step_ends_the_job_with_its_outputs_in_the_same_step(
    scratch_url: str, scratch: redis.Redis
) -> None:
    job_id = running(scratch_url, scratch, LIPSYNC)
    store = JobStore(scratch)
    output = Output(path="/o/v.mp4", bytes=3, sha256="ab")
    assert scratch.zscore(L.RUNNING_KEY, job_id) is not None
    assert store.advance(job_id, "download", DONE, outputs=[output]) == "ended"
    record = store.get(job_id)
    assert (record.status, record.outputs) == (JobStatus.SUCCEEDED, [output])
    assert scratch.zscore(L.RUNNING_KEY, job_id) is None
    assert 0 < scratch.ttl(L.job_key(job_id)) <= L.JOB_TTL_S


def test_a_cancelled_job_records_its_stage_and_pushes_nothing(scratch_url: str, scratch: redis.Redis) -> None:
    job_id = running(scratch_url, scratch, LIPSYNC)
    Producer(scratch_url).cancel(job_id)
    store = JobStore(scratch)
    assert store.advance(job_id, "create", DONE, pushes=[("q", "wait-message")]) == "cancelled"
    assert scratch.llen("q") == 0
    assert store.get(job_id).stages["create"].status is StageStatus.DONE


def test_a_copy_of_a_message_another_process_runs_is_not_run_beside_it(
    scratch_url: str, scratch: redis.Redis
) -> None:
    job_id = running(scratch_url, scratch, LIPSYNC)
    store = JobStore(scratch)
    assert begin(store, job_id, "create", task_id="t1", process="host-a:1") == "run"
    assert begin(store, job_id, "create", task_id="t1", process="host-b:2") == "busy"
    # A re-run is a message of its own (another task id): it takes the stage over.
    assert begin(store, job_id, "create", task_id="t2", process="host-b:2") == "run"
    assert store.get(job_id).stages["create"].attempts == 2


def test_a_begin_records_the_run_and_skips_an_ended_job(scratch_url: str, scratch: redis.Redis) -> None:
    job_id = running(scratch_url, scratch, LIPSYNC)
    store = JobStore(scratch)
    begun = store.begin(job_id, "create", task_id="t1", holder="t1 h:1", lease_s=30, follows_cancelled=False)
    assert begun.job is not None
    state = begun.job.stages["create"]
    assert (state.status, state.attempts) == (StageStatus.RUNNING, 1)
    assert scratch.pttl(L.run_key(job_id, "create")) > 25_000
    Producer(scratch_url).cancel(job_id)
    assert begin(store, job_id, "wait", task_id="t3") == "ended"
    follows = store.begin(job_id, "wait", task_id="t4", holder="t4 h:1", lease_s=30, follows_cancelled=True)
    assert follows.outcome == "run"  # a stage that follows a cancelled job's provider job to its end
    assert begin(store, "no-such-job", "create") == "missing"


def test_an_advance_pushes_each_group_whose_join_is_done_and_only_once(
    scratch_url: str, scratch: redis.Redis
) -> None:
    job_id = running(scratch_url, scratch, LIPSYNC)
    store = JobStore(scratch)
    for stage in ("a", "b"):
        assert begin(store, job_id, stage) == "run"
    # a's end: c waits for a alone, d for a and b.
    more = [(("a",), [("q", "c")]), (("a", "b"), [("q", "d")])]
    assert store.advance(job_id, "a", DONE, join=("a", "b"), pushes=[], more=more) == "advanced"
    assert scratch.lrange("q", 0, -1) == [b"c"]
    assert store.advance(job_id, "b", DONE, more=[(("a", "b"), [("q", "d")])]) == "advanced"
    assert scratch.lrange("q", 0, -1) == [b"d", b"c"]
    assert store.advance(job_id, "b", DONE, more=[(("a", "b"), [("q", "d")])]) == "again"
    assert scratch.llen("q") == 2


def test_the_end_of_a_pipelines_step_job_pushes_its_notice_in_the_same_step(
    scratch_url: str, scratch: redis.Redis
) -> None:
    ended, failed = running(scratch_url, scratch, LIPSYNC), running(scratch_url, scratch, LIPSYNC)
    store = JobStore(scratch)
    for job_id in (ended, failed):
        notice = json.dumps({"pipeline": "p1", "queue": "pq", "message": f"run after {job_id}"})
        scratch.hset(L.PIPELINE_NOTIFY_KEY, job_id, notice)
    assert begin(store, ended, "download") == "run"
    assert store.advance(ended, "download", DONE, outputs=[]) == "ended"
    store.transition(failed, JobStatus.FAILED)
    assert scratch.lrange("pq", 0, -1) == [f"run after {failed}".encode(), f"run after {ended}".encode()]
    assert scratch.hlen(L.PIPELINE_NOTIFY_KEY) == 0
