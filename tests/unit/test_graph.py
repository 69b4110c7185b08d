"""Each kind's step graph: what starts a job, what follows a done step (per branch, and once at a join),
and what a job that lost its messages runs again."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from schemas import JOB_REQUEST, JobRecord, JobStatus, StageState, StageStatus
from worker.graph import Run
from worker.providers.aimi.graph import MUSIC
from worker.providers.aistudios.graph import AVATAR
from worker.providers.registry import all_graphs, graph_for
from worker.providers.syncso.graph import LIPSYNC, LIPSYNC_BATCH

DONE = StageState(status=StageStatus.DONE)


def record(
    request: dict[str, Any], *, done: tuple[str, ...] = (), data: dict[str, Any] | None = None
) -> JobRecord:
    now = datetime.now(UTC)
    return JobRecord(id="j1", kind=request["kind"], status=JobStatus.RUNNING,
                     request=JOB_REQUEST.validate_python(request), stages=dict.fromkeys(done, DONE),
                     data=data or {}, created_at=now, updated_at=now)  # fmt: skip


def names(runs: list[Run] | tuple[Run, ...]) -> list[str]:
    return [run.state_key for run in runs]


LIPSYNC_JOB = {
    "kind": "lipsync",
    "model": "lipsync-2",
    "video": "https://x/v.mp4",
    "audio": "https://x/a.wav",
}
MUSIC_JOB = {"kind": "music", "video": "https://x/v.mp4", "executions": 3}
UPLOADED = {"upload": {"chunks": 2, "size": 10, "chunk_bytes": 5}}


def test_every_kind_has_one_graph_and_each_step_names_a_task_of_its_provider() -> None:
    graphs = all_graphs()
    assert sorted(g.kind for g in graphs) == ["avatar", "lipsync", "lipsync_batch", "music"]
    for graph in graphs:
        assert graph_for(graph.kind) is graph
        provider = graph.steps[0].task.split(".")[1]
        assert all(step.task.startswith(f"genq.{provider}.") for step in graph.steps)


def test_a_lipsync_job_runs_create_wait_download_and_ends() -> None:
    job = record(LIPSYNC_JOB)
    assert names(LIPSYNC.first(job)) == ["create"]
    assert names(LIPSYNC.after(job, "create", None).runs) == ["wait"]
    assert names(LIPSYNC.after(job, "wait", None).runs) == ["download"]
    end = LIPSYNC.after(job, "download", None)
    assert (end.runs, end.join, end.end) == ((), (), True)


def test_a_cost_cap_puts_the_estimate_first() -> None:
    job = record({**LIPSYNC_JOB, "max_cost_usd": 1.0})
    assert names(LIPSYNC.first(job)) == ["estimate"]
    assert names(LIPSYNC.after(job, "estimate", None).runs) == ["create"]


def test_a_batch_job_waits_in_its_batch_and_only_downloads_itself() -> None:
    job = record(LIPSYNC_JOB, data={"batch": {"id": "b1", "request_id": "r1"}})
    assert [s.name for s in LIPSYNC.applying(job)] == ["batch", "download"]
    assert LIPSYNC.frontier(job) == []  # the batch record carries it
    assert names(LIPSYNC.frontier(record(LIPSYNC_JOB, done=("batch",), data=job.data))) == ["download"]
    assert names(LIPSYNC_BATCH.first(record(LIPSYNC_JOB))) == ["create"]


def test_music_fans_out_per_chunk_from_what_upload_init_recorded_and_joins_them() -> None:
    job = record(MUSIC_JOB, data=UPLOADED)
    assert names(MUSIC.after(job, "upload_init", None).runs) == ["upload_chunk[0]", "upload_chunk[1]"]
    after_chunk = MUSIC.after(job, "upload_chunk", 1)
    assert names(after_chunk.runs) == ["upload_complete"]
    assert after_chunk.join == ("upload_chunk[0]", "upload_chunk[1]")


def test_each_execution_goes_on_by_itself_and_collect_joins_all_three() -> None:
    job = record(MUSIC_JOB, data=UPLOADED)
    assert names(MUSIC.after(job, "generate_plan", None).runs) == ["execute[0]", "execute[1]", "execute[2]"]
    assert names(MUSIC.after(job, "execute", 2).runs) == ["wait[2]"]
    assert MUSIC.after(job, "execute", 2).join == ()
    assert names(MUSIC.after(job, "wait", 1).runs) == ["download[1]"]
    to_collect = MUSIC.after(job, "download", 0)
    assert names(to_collect.runs) == ["collect"]
    assert to_collect.join == ("download[0]", "download[1]", "download[2]")
    assert MUSIC.after(job, "collect", None).end


def test_audio_analysis_runs_only_when_the_original_audio_is_kept() -> None:
    assert names(MUSIC.after(record(MUSIC_JOB), "analyze_video", None).runs) == ["generate_plan"]
    kept = record({**MUSIC_JOB, "keep_original_audio": True})
    assert names(MUSIC.after(kept, "analyze_video", None).runs) == ["analyze_audio"]


def test_the_frontier_is_every_run_whose_step_before_is_done() -> None:
    before_plan = ("upload_init", "upload_chunk[0]", "upload_chunk[1]", "upload_complete", "analyze_video")
    assert names(MUSIC.frontier(record(MUSIC_JOB))) == ["upload_init"]
    # A chunk not yet done: its join cannot run, nor anything after it.
    assert names(
        MUSIC.frontier(record(MUSIC_JOB, done=("upload_init", "upload_chunk[1]"), data=UPLOADED))
    ) == ["upload_chunk[0]"]
    assert names(MUSIC.frontier(record(MUSIC_JOB, done=before_plan, data=UPLOADED))) == ["generate_plan"]
    # Branches at different steps: each goes on from where it is.
    branches = (*before_plan, "generate_plan", "execute[0]", "wait[0]", "execute[1]", "execute[2]")
    assert names(MUSIC.frontier(record(MUSIC_JOB, done=branches, data=UPLOADED))) == [
        "wait[1]", "wait[2]", "download[0]"
    ]  # fmt: skip
    every = (*branches, "wait[1]", "wait[2]", "download[0]", "download[1]", "download[2]")
    assert names(MUSIC.frontier(record(MUSIC_JOB, done=every, data=UPLOADED))) == ["collect"]
    assert MUSIC.frontier(record(MUSIC_JOB, done=(*every, "collect"), data=UPLOADED)) == []


def test_the_steps_that_give_a_slot_back_name_their_pool() -> None:
    assert AVATAR.step("wait").releases == ("aistudios.renders",)
    assert MUSIC.step("wait").releases == ("aimi.executions",)
    assert LIPSYNC.step("wait").releases == ("syncso.generations",)
