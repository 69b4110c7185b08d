"""A pipeline's step graph: what starts it, what follows a done run (each later step's run once all it
waits for is done, and the end once every run is), what a pipeline that lost its messages runs again, and
whether its join can still hold."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from schemas import JOB_REQUEST, JobRecord, JobStatus, StageState, StageStatus
from schemas.pipeline import OUTCOME_PREFIX
from tests.conftest import AVATAR
from tests.unit.test_pipeline_request import DEMO, DUB, pipeline
from worker.graph import Run
from worker.pipeline import GRAPH, can_succeed, failure_message, step_job_id
from worker.providers.registry import graph_for

DONE = StageState(status=StageStatus.DONE)


def record(request: dict[str, Any], outcomes: dict[str, str] | None = None) -> JobRecord:
    """A running pipeline whose runs in ``outcomes`` ended as given (their states done)."""
    outcomes = outcomes or {}
    now = datetime.now(UTC)
    data = {OUTCOME_PREFIX + key: {"status": status} for key, status in outcomes.items()}
    parsed = JOB_REQUEST.validate_python(request)
    return JobRecord(id="p1", kind="pipeline", status=JobStatus.RUNNING, request=parsed,
                     stages=dict.fromkeys(outcomes, DONE), data=data, created_at=now,
                     updated_at=now)  # fmt: skip


def keys(runs: list[Run] | tuple[Run, ...]) -> list[str]:
    return [run.state_key for run in runs]


def test_the_pipeline_kind_has_its_graph_and_each_run_takes_its_node() -> None:
    assert graph_for("pipeline") is GRAPH
    [first] = GRAPH.first(record(DEMO))
    assert (first.step.task, first.args) == ("genq.pipeline", ("avatar",))


def test_a_done_run_pushes_each_later_run_waiting_on_it_and_the_end_once_all_are_done() -> None:
    job = record(DEMO)
    every = ("avatar", "dub[0]", "dub[1]", "dub[2]", "score[0]", "score[1]", "score[2]")
    after_avatar = GRAPH.after(job, "avatar", None)
    assert (keys(after_avatar.runs), after_avatar.join) == (["end"], every)
    assert [(keys(t.runs), t.join) for t in after_avatar.more] == [
        (["dub[0]"], ("avatar",)),
        (["dub[1]"], ("avatar",)),
        (["dub[2]"], ("avatar",)),
    ]
    after_dub = GRAPH.after(job, "dub", 1)
    assert [(keys(t.runs), t.join) for t in after_dub.more] == [(["score[1]"], ("dub[1]",))]
    end = GRAPH.after(job, "end", None)
    assert (end.end, end.join) == (True, every)


def test_a_step_after_two_steps_waits_for_both() -> None:
    both = pipeline({"a": {"request": AVATAR}, "b": {"request": AVATAR},
                     "c": {"request": {**DUB, "video": {"from": "a"}, "audio": "https://x.test/a.wav"},
                           "after": ["b"]}})  # fmt: skip
    job = record(both)
    assert keys(GRAPH.first(job)) == ["a", "b"]
    assert [(keys(t.runs), t.join) for t in GRAPH.after(job, "b", None).more] == [(["c"], ("a", "b"))]


def test_a_pipeline_that_lost_its_messages_runs_what_is_due_and_keeps_what_is_done() -> None:
    job = record(DEMO, {"avatar": "succeeded", "dub[0]": "succeeded", "dub[2]": "failed"})
    assert keys(GRAPH.frontier(job)) == ["dub[1]", "score[0]", "score[2]"]
    every = {
        key: "succeeded"
        for key in ("avatar", "dub[0]", "dub[1]", "dub[2]", "score[0]", "score[1]", "score[2]")
    }
    assert keys(GRAPH.frontier(record(DEMO, every))) == ["end"]


def test_one_failed_branch_leaves_at_least_two_possible_but_not_all() -> None:
    failed = {"avatar": "succeeded", "dub[1]": "failed"}
    assert can_succeed(record(DEMO, failed))
    assert not can_succeed(record({**DEMO, "join": "all"}, failed))
    assert not can_succeed(record(DEMO, {**failed, "score[0]": "failed"}))
    assert not can_succeed(record(DEMO, {"avatar": "failed"}))


def test_the_failure_names_each_run_that_did_not_succeed() -> None:
    job = record({**DEMO, "join": "all"}, {"avatar": "succeeded", "dub[1]": "failed", "score[1]": "skipped"})
    assert (
        failure_message(job)
        == "dub[1] failed; score[1] skipped; 0 of 3 final runs succeeded, the join needs all"
    )


def test_a_runs_job_id_is_the_same_for_a_run_made_again_and_new_for_a_replay() -> None:
    pipeline_id = "0193a1b2c3d4e5f60718293a4b5c"
    first = step_job_id(pipeline_id, "dub[1]", 0)
    assert first == step_job_id(pipeline_id, "dub[1]", 0)
    assert len(first) == 28 and first[:12] == pipeline_id[:12]
    assert step_job_id(pipeline_id, "dub[1]", 1) != first
    assert step_job_id(pipeline_id, "dub[2]", 0) != first
