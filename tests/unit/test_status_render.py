"""How ``genq status`` and ``genq watch`` draw a job (``producers/cli.py``) from records built here: its
stages in the order the job runs them (its kind's step graph, a fan's branches in turn), what its provider
ids say as a person reads it, its outputs whole and its error with the provider's status and code, every
cell as plain text."""

from __future__ import annotations

import io
import random
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console, RenderableType

from producers.cli import render, show
from schemas import JobError, JobRecord, JobStatus, Output, ParkedWait, StageState, StageStatus
from tests.conftest import AVATAR, LIPSYNC
from worker.graph import clock
from worker.providers.registry import graph_for

NOW = datetime(2026, 12, 6, 12, 3, 4, tzinfo=UTC)
JOB = "019a2b3c4d5e6f708192a3b4c5d6"
BATCH = "019a2b3c4d5e0000111122223333"
GENERATION = "3f0c2a1e-6b7d-4e52-9a0f-2c41d8b7e913"
# Longer than a pipe's 80 columns on its own.
ARTIFACTS = "/srv/genq/outputs/a-directory-deep-enough-that-no-path-fits-in-eighty-columns"
DONE = StageState(status=StageStatus.DONE, attempts=1, started_at=NOW, finished_at=NOW)
PENDING = StageState()


def record(request: dict[str, Any], stages: dict[str, StageState], **fields: Any) -> JobRecord:
    """A record whose stages are shuffled, as a Redis hash may give them back."""
    shuffled = list(stages.items())
    random.Random(7).shuffle(shuffled)
    fields = {"status": JobStatus.RUNNING, **fields}
    return JobRecord(id=JOB, kind=request["kind"], request=request, stages=dict(shuffled),
                     created_at=NOW, updated_at=NOW, **fields)  # fmt: skip


def output(name: str, size: int = 1024) -> Output:
    return Output(path=f"{ARTIFACTS}/{JOB}/{name}", bytes=size, sha256="ab" * 32)


def piped(renderable: RenderableType) -> str:
    """What a pipe receives (a console 80 columns wide that is not a terminal)."""
    pipe = io.StringIO()
    show(Console(file=pipe, width=80), renderable)
    return pipe.getvalue()


def rows(text: str) -> list[tuple[str, ...]]:
    """Each row of the table: its cells, stripped of the padding around them."""
    return [
        tuple(c.strip() for c in line.strip("│").split("│"))
        for line in text.splitlines()
        if line.startswith("│")
    ]


def drawn(job: JobRecord, parked: list[ParkedWait] | None = None) -> list[tuple[str, ...]]:
    text = piped(render(job, parked))
    lines = text.splitlines()
    assert lines[0] == f"job {job.id} ({job.kind}): {job.status.value}"  # no padding after it
    assert "…" not in text
    assert len({len(line) for line in lines[1:]}) == 1  # every line of the table is whole
    return rows(text)


def test_a_lipsync_job_with_an_upload_and_an_estimate_shows_its_stages_in_run_order() -> None:
    request = {**LIPSYNC, "video": "/data/in/v.mp4", "max_cost_usd": 2.5}
    waiting = StageState(status=StageStatus.WAITING, attempts=1, detail="generation PROCESSING")
    stages = {"upload": DONE, "estimate": DONE, "create": DONE, "wait": waiting, "download": PENDING}
    data = {"assets": {"video": "a-7d1e"}, "estimate": {"usd": 0.42, "frames": 250}}
    job = record(request, stages, provider_ids={"generation": GENERATION}, data=data)
    assert list(job.stages) != list(stages)  # shuffled, as the record may hold them
    assert drawn(job) == [
        ("upload", "done", "1", ""),
        ("estimate", "done", "1", ""),
        ("create", "done", "1", ""),
        ("wait", "waiting", "1", "generation PROCESSING"),
        ("download", "pending", "0", ""),
        ("generation", "", "", GENERATION),
        ("video asset", "", "", "a-7d1e"),
        ("estimate", "", "", "$0.4200 for 250 frames, max_cost_usd $2.5000"),
    ]


def test_a_music_job_shows_each_chunk_then_each_execution_through_its_steps() -> None:
    stages = {
        "upload_init": DONE,
        "upload_chunk[0]": DONE,
        "upload_chunk[1]": DONE,
        "upload_complete": DONE,
        "analyze_video": DONE,
        "generate_plan": DONE,
        **{f"{step}[{n}]": DONE for n in (0, 1) for step in ("execute", "wait", "download")},
        "execute[2]": DONE,
        "wait[2]": StageState(status=StageStatus.WAITING, attempts=2, detail="execution processing"),
        "download[2]": PENDING,
    }
    ids = {"task": "t-1", "chunk[1]": "acknowledged", "chunk[0]": "acknowledged",
           "exec[2]": "e-2", "exec[0]": "e-0", "exec[1]": "e-1"}  # fmt: skip
    request = {"kind": "music", "video": "https://x.test/v.mp4", "executions": 3}
    outputs = [output("music_0.mp4"), output("music_1.mp4")]
    job = record(request, stages, provider_ids=ids, data={"upload": {"chunks": 2}}, outputs=outputs)
    assert [r[:3] for r in drawn(job)] == [
        ("upload_init", "done", "1"),
        ("upload_chunk[0]", "done", "1"),
        ("upload_chunk[1]", "done", "1"),
        ("upload_complete", "done", "1"),
        ("analyze_video", "done", "1"),
        ("generate_plan", "done", "1"),
        ("execute[0]", "done", "1"),
        ("wait[0]", "done", "1"),
        ("download[0]", "done", "1"),
        ("execute[1]", "done", "1"),
        ("wait[1]", "done", "1"),
        ("download[1]", "done", "1"),
        ("execute[2]", "done", "1"),
        ("wait[2]", "waiting", "2"),
        ("download[2]", "pending", "0"),
        ("task", "", ""),
        ("upload", "", ""),
        ("execution[0]", "", ""),
        ("execution[1]", "", ""),
        ("execution[2]", "", ""),
        ("output", "", ""),
        ("output", "", ""),
    ]
    details = [r[3] for r in drawn(job)[15:]]
    assert details == [
        "t-1",
        "2 of 2 chunks acknowledged",
        "e-0",
        "e-1",
        "e-2",
        f"{outputs[0].path} (1024 bytes, sha256 {'ab' * 32})",
        f"{outputs[1].path} (1024 bytes, sha256 {'ab' * 32})",
    ]


def test_an_avatar_job_says_its_project_and_how_far_its_export_got() -> None:
    accepted = record(
        AVATAR,
        {"create": DONE, "wait": DONE, "download": DONE},
        status=JobStatus.SUCCEEDED,
        provider_ids={"project": "66f2a0c1", "export": "accepted"},
        outputs=[output("avatar.mp4", 5_242_880)],
    )
    assert drawn(accepted) == [
        ("create", "done", "1", ""),
        ("wait", "done", "1", ""),
        ("download", "done", "1", ""),
        ("project", "", "", "66f2a0c1"),
        ("export", "", "", f"accepted at {clock(NOW)}"),
        ("output", "", "", f"{ARTIFACTS}/{JOB}/avatar.mp4 (5242880 bytes, sha256 {'ab' * 32})"),
    ]
    running = StageState(status=StageStatus.RETRYING, attempts=2, detail="[aistudios 503] busy")
    asked = record(AVATAR, {"create": running}, provider_ids={"project": "66f2a0c1", "export": "requested"})
    assert drawn(asked) == [
        ("create", "retrying", "2", "[aistudios 503] busy"),  # as recorded: not console markup
        ("project", "", "", "66f2a0c1"),
        ("export", "", "", "requested; not yet known to have reached AI Studios (the next run asks)"),
    ]


def test_a_batch_member_names_its_batch_and_the_batch_its_steps() -> None:
    member = record(
        LIPSYNC,
        {"download": DONE, "batch": DONE.model_copy(update={"detail": f"generation {GENERATION} COMPLETED"})},
        status=JobStatus.SUCCEEDED,
        provider_ids={"generation": GENERATION},
        data={"batch": {"id": BATCH, "request_id": "order-17"}},
        outputs=[output("out.mp4")],
    )
    assert drawn(member) == [
        ("batch", "done", "1", f"generation {GENERATION} COMPLETED"),
        ("download", "done", "1", ""),
        ("generation", "", "", GENERATION),
        ("batch", "", "", f"{BATCH} (its request_id: order-17)"),
        ("output", "", "", f"{ARTIFACTS}/{JOB}/out.mp4 (1024 bytes, sha256 {'ab' * 32})"),
    ]
    batch = record(
        {"kind": "lipsync_batch", "jobs": [JOB] * 20, "request_ids": [str(i) for i in range(20)]},
        {"collect": PENDING, "wait": DONE, "create": DONE},
        provider_ids={
            "batch_validated": "2026-12-06T12:03:01+00:00",
            "batch_requested": NOW.isoformat(),
            "batch": "b-9c1",
        },
    )
    validated = datetime(2026, 12, 6, 12, 3, 1, tzinfo=UTC)
    assert drawn(batch) == [
        ("create", "done", "1", ""),
        ("wait", "done", "1", ""),
        ("collect", "pending", "0", ""),
        ("batch", "", "", f"b-9c1 (file validated at {clock(validated)}, create requested at {clock(NOW)})"),
    ]


def test_a_failed_job_shows_the_providers_status_and_error_code() -> None:
    message = "Batch processing requires the Scale plan or higher"
    failed = StageState(
        status=StageStatus.FAILED, attempts=1, detail=f"[syncso 402 batch_plan_required] {message}"
    )
    batch = record(
        {"kind": "lipsync_batch", "jobs": [JOB] * 20, "request_ids": [str(i) for i in range(20)]},
        {"create": failed},
        status=JobStatus.FAILED,
        provider_ids={"batch_requested": NOW.isoformat()},
        error=JobError(
            stage="create",
            message=message,
            provider="syncso",
            code="batch_plan_required",
            status_code=402,
            request_id="req_8c1f",
        ),
    )
    assert drawn(batch) == [
        ("create", "failed", "1", f"[syncso 402 batch_plan_required] {message}"),
        ("batch", "", "", f"create requested at {clock(NOW)}"),
        (
            "error",
            "",
            "",
            f"syncso 402 batch_plan_required: {message} (at create; the provider's request id req_8c1f)",
        ),
    ]
    own = JobError(stage="download", message="no space left", provider="genq", code="genq_infrastructure")
    lipsync = record(LIPSYNC, {"download": PENDING}, status=JobStatus.FAILED, error=own)
    assert drawn(lipsync)[-1] == ("error", "", "", "genq genq_infrastructure: no space left (at download)")


def test_a_parked_stage_says_what_it_waits_for_and_the_view_folds_on_a_narrow_terminal() -> None:
    waiting = StageState(status=StageStatus.WAITING, attempts=1, detail="waiting for syncso generation")
    job = record(LIPSYNC, {"create": DONE, "wait": waiting}, provider_ids={"generation": GENERATION},
                 outputs=[output("out.mp4")])  # fmt: skip
    parked = ParkedWait(provider="syncso", provider_id=GENERATION, stage="wait", since=NOW, deadline=NOW,
                        next_check=NOW)  # fmt: skip
    said = f"parked: waiting for syncso {GENERATION} since {clock(NOW)}, next check {clock(NOW)}"
    assert drawn(job, [parked])[1] == ("wait", "waiting", "1", said)
    terminal = io.StringIO()
    Console(file=terminal, width=70, force_terminal=True, color_system=None).print(render(job, [parked]))
    text = terminal.getvalue()
    assert "…" not in text
    drawn_rows = rows(text)
    at = next(i for i, r in enumerate(drawn_rows) if r[0] == "output")
    folded = "".join(r[3] for r in drawn_rows[at:])
    assert len(drawn_rows) - at > 1 and folded.startswith(output("out.mp4").path)  # whole, over lines


@pytest.mark.parametrize("kind", ["lipsync", "lipsync_batch", "avatar", "music"])
def test_a_kinds_stages_come_in_its_graphs_order_whatever_order_they_are_given(kind: str) -> None:
    graph = graph_for(kind)
    keys = [
        key
        for step in graph.steps
        for key in ([f"{step.name}[0]", f"{step.name}[1]"] if step.fan else [step.name])
    ]
    by_branch = graph.ordered(keys)
    for _ in range(5):
        assert graph.ordered(random.sample(keys, len(keys))) == by_branch
    assert graph.ordered([*keys, "unknown"]) == [*by_branch, "unknown"]


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process's local time is UTC for the test (the README example's times of day)."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def at(second: int) -> datetime:
    return datetime(2026, 12, 6, 12, 0, second, tzinfo=UTC)


@pytest.mark.usefixtures("utc")
def test_the_readmes_example_is_what_genq_status_prints() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("## The job record") :]
    found = re.search(r"```\n(job .*?)```", section, re.DOTALL)
    assert found is not None
    done = [
        StageState(status=StageStatus.DONE, attempts=1, started_at=at(s), finished_at=at(s)) for s in (0, 1)
    ]
    waiting = StageState(
        status=StageStatus.WAITING, attempts=1, detail=f"waiting for syncso generation {GENERATION}"
    )
    job = JobRecord(
        id="01a24901a5cf7b92d8200413da06",
        kind="lipsync",
        status=JobStatus.RUNNING,
        request={**LIPSYNC, "video": "/data/inputs/promo.mp4", "max_cost_usd": 1.0},
        stages={
            "wait": waiting,
            "create": done[1],
            "upload": done[0],
            "estimate": done[1],
            "download": PENDING,
        },
        provider_ids={"generation": GENERATION},
        data={
            "assets": {"video": "a1d4e0c2-9f3b-4c57-8e21-5b6a7c8d9e0f"},
            "estimate": {"usd": 0.25, "frames": 250},
        },
        created_at=at(0),
        updated_at=at(1),
    )
    parked = ParkedWait(provider="syncso", provider_id=GENERATION, stage="wait", since=at(1), deadline=at(59),
                        next_check=at(11))  # fmt: skip
    shown = "\n".join(line.rstrip() for line in piped(render(job, [parked])).splitlines())
    assert shown + "\n" == found.group(1)
