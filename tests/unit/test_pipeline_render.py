"""How ``genq status`` draws a pipeline (``producers/cli.py``) from records built here: the graph's line,
each node's state, job and detail, and a view that a pipe receives whole; the README's example and what
``genq demo --kind pipeline`` runs of it."""

from __future__ import annotations

import hashlib
import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from genq.demo import SAMPLES, pipeline_requests, step_runs
from producers import validate
from producers.cli import TIMES, NodeView, graph_line, node_views, render_pipeline, show
from schemas import SUBMITTABLE, JobError, JobRecord, JobStatus, Output, StageState, StageStatus
from schemas.pipeline import MEMBER_KINDS, PipelineRequest
from schemas.records import StepOutcome
from tests.conftest import AVATAR, LIPSYNC

NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)
PIPELINE = "01a24901a5cf5b47ff4a944d86cd"
# Longer than a pipe's 80 columns on its own.
ARTIFACTS = "/srv/genq/outputs/a-directory-deep-enough-that-no-path-fits-in-eighty-columns"
GRAPH = f"avatar → dub {TIMES}3 (for_each) → score {TIMES}3 (per branch of dub)"


def pipeline(width: int = 3, **changes: Any) -> dict[str, Any]:
    """The demo's shape: an avatar, dubbed ``width`` times, music on each dub."""
    dubs = [{"audio": f"https://x.test/{n}.wav", "output_file_name": f"dub_{n}"} for n in range(width)]
    return {
        "kind": "pipeline",
        "steps": {
            "avatar": {"request": AVATAR},
            "dub": {
                "request": {"kind": "lipsync", "model": "lipsync-2", "video": {"from": "avatar"}},
                "for_each": dubs,
            },
            "score": {"request": {"kind": "music", "video": {"from": "dub"}}},
        },
        **changes,
    }


def job_id(node: str) -> str:
    return PIPELINE[:12] + hashlib.sha256(node.encode()).hexdigest()[:16]


def output(node: str, name: str = "out.mp4") -> Output:
    return Output(path=f"{ARTIFACTS}/{job_id(node)}/{name}", bytes=1024, sha256="ab" * 32)


def outcome(node: str, status: str, **fields: Any) -> dict[str, Any]:
    job = None if status == "skipped" else job_id(node)
    return StepOutcome.model_validate({"status": status, "job": job, **fields}).model_dump(mode="json")


def record(request: dict[str, Any], status: JobStatus = JobStatus.RUNNING, **fields: Any) -> JobRecord:
    return JobRecord(
        id=PIPELINE,
        kind=request["kind"],
        status=status,
        request=request,
        created_at=NOW,
        updated_at=NOW,
        **fields,
    )


def step(node: str, request: dict[str, Any], status: JobStatus, **fields: Any) -> JobRecord:
    return JobRecord(
        id=job_id(node),
        kind=request["kind"],
        status=status,
        request=request,
        created_at=NOW,
        updated_at=NOW,
        **fields,
    )


REFUSED = JobError(
    stage="create",
    message="audio is not a WAV file",
    provider="syncso",
    code="generation_input_validation_failed",
)
SKIPPED = "it takes the output of dub[0], which did not succeed"
WAITING = StageState(status=StageStatus.WAITING, detail="waiting for syncso generation 3f0c2a1e")


def midway() -> tuple[JobRecord, dict[str, JobRecord | None]]:
    """A pipeline of five dubs with a node in every state it can show while it runs."""
    record_ = record(
        pipeline(5, on_failure="continue"),
        provider_ids={n: job_id(n) for n in ("avatar", "dub[0]", "dub[1]", "dub[2]", "dub[3]", "dub[4]")},
        data={
            "step:avatar": outcome("avatar", "succeeded", outputs=[output("avatar")]),
            "step:dub[0]": outcome("dub[0]", "failed", error=REFUSED),
            "step:score[0]": outcome("score[0]", "skipped", reason=SKIPPED),
        },
        stages={"score[3]": StageState(status=StageStatus.RUNNING)},  # making its job, after dub[3]'s end
    )
    jobs: dict[str, JobRecord | None] = {
        "dub[1]": step(
            "dub[1]",
            LIPSYNC,
            JobStatus.RUNNING,
            stages={"create": StageState(status=StageStatus.DONE), "wait": WAITING},
        ),
        "dub[2]": step("dub[2]", LIPSYNC, JobStatus.QUEUED),
        # Its job ended, and the node has not recorded it yet.
        "dub[3]": step("dub[3]", LIPSYNC, JobStatus.SUCCEEDED, outputs=[output("dub[3]")]),
        "dub[4]": None,  # its record expired
    }
    return record_, jobs


def test_each_node_shows_how_it_ended_else_its_jobs_status_else_pending() -> None:
    assert node_views(*midway()) == [
        NodeView("avatar", "succeeded", job_id("avatar"), output("avatar").path),
        NodeView(
            "dub[0]",
            "failed",
            job_id("dub[0]"),
            "syncso generation_input_validation_failed: audio is not a WAV file",
        ),
        NodeView("dub[1]", "running", job_id("dub[1]"), "wait: waiting for syncso generation 3f0c2a1e"),
        NodeView("dub[2]", "waiting", job_id("dub[2]"), "queued"),
        NodeView("dub[3]", "succeeded", job_id("dub[3]"), output("dub[3]").path),
        NodeView("dub[4]", "pending", job_id("dub[4]"), "its job's record is gone"),
        NodeView("score[0]", "skipped", None, SKIPPED),
        NodeView("score[1]", "pending", None, "waits for dub[1]"),
        NodeView("score[2]", "pending", None, "waits for dub[2]"),
        NodeView("score[3]", "running", None, ""),
        NodeView("score[4]", "pending", None, "waits for dub[4]"),
    ]


def test_a_node_that_ended_shows_each_output_and_one_never_run_says_so() -> None:
    executions = {**pipeline(1), "steps": {**pipeline(1)["steps"]}}
    executions["steps"]["score"] = {"request": {"kind": "music", "video": {"from": "dub"}, "executions": 2}}
    two = [output("score[0]", "music_0.mp4"), output("score[0]", "music_1.mp4")]
    data = {
        "step:avatar": outcome("avatar", "succeeded", outputs=[output("avatar")]),
        "step:dub[0]": outcome("dub[0]", "cancelled"),
        "step:score[0]": outcome("score[0]", "succeeded", outputs=two),
    }
    views = node_views(record(executions, JobStatus.SUCCEEDED, data=data), {})
    assert views[2] == NodeView("score[0]", "succeeded", job_id("score[0]"), f"{two[0].path}\n{two[1].path}")
    assert views[1] == NodeView("dub[0]", "cancelled", job_id("dub[0]"), "")

    cancelled = record(pipeline(2), JobStatus.CANCELLED, data={"step:avatar": outcome("avatar", "cancelled")})
    assert [(v.node, v.state, v.detail) for v in node_views(cancelled, {})] == [
        ("avatar", "cancelled", ""),
        *(
            (n, "pending", "not run: the pipeline cancelled")
            for n in ("dub[0]", "dub[1]", "score[0]", "score[1]")
        ),
    ]


@pytest.mark.parametrize(
    ("request_", "line"),
    [
        (pipeline(), GRAPH),
        (
            pipeline(join={"at_least": 2}, on_failure="continue"),
            f"{GRAPH} · join at_least 2 · on_failure continue",
        ),
        (
            {
                "kind": "pipeline",
                "join": {"at_least": 1},
                "steps": {
                    "intro": {"request": AVATAR},
                    "outro": {"request": AVATAR},
                    "dub": {"request": {**LIPSYNC, "video": {"from": "intro"}}, "for_each": [{}, {}]},
                    "score": {"request": {"kind": "music", "video": {"from": "dub"}}},
                    "final": {
                        "request": {**LIPSYNC, "video": {"from": "outro"}},
                        "after": ["score"],
                        "join": {"at_least": 1},
                    },
                },
            },
            f"intro; outro; intro → dub {TIMES}2 (for_each) → score {TIMES}2 (per branch of dub); "
            "outro, score → final (join at_least 1) · join at_least 1",
        ),
        (
            {
                "kind": "pipeline",
                "steps": {"a": {"request": AVATAR}, "b": {"request": AVATAR, "after": ["a"]}},
            },
            "a → b",
        ),
    ],
)
def test_the_graph_line_says_the_steps_in_order_and_how_they_depend(
    request_: dict[str, Any], line: str
) -> None:
    parsed = PipelineRequest.model_validate(request_)
    assert parsed.shape().problems == []
    assert graph_line(parsed, parsed.shape()) == line


def cells(text: str) -> list[tuple[str, ...]]:
    return [
        tuple(c.strip() for c in line.strip("│").split("│"))
        for line in text.splitlines()
        if line.startswith("│")
    ]


def test_to_a_pipe_the_view_is_as_wide_as_it_needs_and_no_path_is_cut() -> None:
    done = record(
        pipeline(1),
        JobStatus.FAILED,
        provider_ids={"avatar": job_id("avatar")},
        error=JobError(stage="end", message="dub[0] failed", provider="genq", code="genq_pipeline_failed"),
        data={
            "step:avatar": outcome("avatar", "succeeded", outputs=[output("avatar")]),
            "step:dub[0]": outcome("dub[0]", "failed", error=REFUSED),
            "step:score[0]": outcome("score[0]", "skipped", reason=SKIPPED),
        },
    )
    pipe = io.StringIO()
    show(Console(file=pipe, width=80), render_pipeline(done, {}))
    text = pipe.getvalue()
    lines = text.splitlines()
    assert lines[:2] == [
        f"job {PIPELINE} (pipeline): failed",
        f"avatar → dub {TIMES}1 (for_each) → score {TIMES}1 (per branch of dub)",
    ]
    assert cells(text) == [
        ("avatar", "succeeded", job_id("avatar"), output("avatar").path),
        (
            "dub[0]",
            "failed",
            job_id("dub[0]"),
            "syncso generation_input_validation_failed: audio is not a WAV file",
        ),
        ("score[0]", "skipped", "", SKIPPED),
        ("error", "", "", "genq genq_pipeline_failed: dub[0] failed"),
    ]
    assert "…" not in text
    assert len({len(line) for line in lines[2:]}) == 1  # every line of the table is whole


def test_on_a_narrow_terminal_a_long_path_folds_and_the_job_id_stays_whole() -> None:
    done = record(
        pipeline(1), data={"step:avatar": outcome("avatar", "succeeded", outputs=[output("avatar")])}
    )
    terminal = io.StringIO()
    Console(file=terminal, width=90, force_terminal=True, color_system=None).print(render_pipeline(done, {}))
    rows = cells(terminal.getvalue())
    assert rows[0][:3] == ("avatar", "succeeded", job_id("avatar"))
    folded = [row[3] for row in rows[: next(i for i, r in enumerate(rows) if r[0] == "dub[0]")]]
    assert len(folded) > 1 and "".join(folded) == output("avatar").path
    assert "…" not in terminal.getvalue()


def readme_pipeline() -> dict[str, Any]:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("### Pipelines (`pipeline`)") :]
    found = re.search(r"```json\n(.*?)```", section, re.DOTALL)
    assert found is not None
    parsed: dict[str, Any] = json.loads(found.group(1))
    return parsed


def test_the_readmes_example_is_a_valid_request_and_what_the_demo_runs(tmp_path: Path) -> None:
    example = readme_pipeline()
    parsed = validate(example)
    assert isinstance(parsed, PipelineRequest)
    assert graph_line(parsed, parsed.shape()) == GRAPH
    named = json.loads(json.dumps(example).replace('"promo', '"promo_001'))
    del named["join"], named["on_failure"]  # the defaults
    assert pipeline_requests(2, tmp_path)[1] == named


def test_the_demo_runs_every_kind_and_a_pipeline_on_the_stand_ins_of_its_steps() -> None:
    assert set(SAMPLES) == set(SUBMITTABLE)  # --kind all
    assert sorted(d.kind for d in SAMPLES["pipeline"].stand_ins) == sorted(MEMBER_KINDS)
    assert (SAMPLES["pipeline"].count, SAMPLES["music"].count) == (1, 20)


def test_the_demos_step_bars_count_each_steps_runs_ended_across_the_pipelines() -> None:
    first = record(
        pipeline(),
        data={
            "step:avatar": outcome("avatar", "succeeded"),
            "step:dub[0]": outcome("dub[0]", "failed", error=REFUSED),
            "step:dub[1]": outcome("dub[1]", "succeeded"),
            "step:score[0]": outcome("score[0]", "skipped", reason=SKIPPED),
        },
    )
    second = record(pipeline(2), data={"step:avatar": outcome("avatar", "succeeded")})
    lipsync = step("x", LIPSYNC, JobStatus.SUCCEEDED)
    assert step_runs([first, lipsync, second]) == {"avatar": (2, 0, 2), "dub": (2, 1, 5), "score": (1, 1, 5)}


def test_a_running_step_job_shows_its_active_stages_in_run_order_as_plain_text() -> None:
    retrying = StageState(status=StageStatus.RETRYING, detail="[aimi 503] Service Unavailable")
    stages = {"wait[1]": WAITING, "download[0]": retrying, "execute[0]": StageState(status=StageStatus.DONE)}
    music = {"kind": "music", "video": "https://x.test/v.mp4", "executions": 2}
    job = step("score[0]", music, JobStatus.RUNNING, stages=stages)
    running = record(pipeline(1), provider_ids={"score[0]": job_id("score[0]")})
    detail = f"download[0]: [aimi 503] Service Unavailable; wait[1]: {WAITING.detail}"
    assert node_views(running, {"score[0]": job})[-1] == NodeView(
        "score[0]", "running", job_id("score[0]"), detail
    )
    pipe = io.StringIO()
    show(Console(file=pipe, width=80), render_pipeline(running, {"score[0]": job}))
    assert cells(pipe.getvalue())[-1] == ("score[0]", "running", job_id("score[0]"), detail)
