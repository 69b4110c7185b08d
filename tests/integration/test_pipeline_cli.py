"""``genq status``, ``watch`` and ``cancel`` on pipelines that ran through real workers and the simulators:
the graph's line and one row per run of a step, read as a script reads them (stdout not a terminal)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from genq.cli import main
from producers import Producer
from producers.cli import TIMES
from schemas import JobRecord, JobStatus
from tests.conftest import Services, Sim, until
from tests.integration.test_pipeline import demo_pipeline

pytestmark = pytest.mark.integration

GRAPH = f"avatar → dub {TIMES}3 (for_each) → score {TIMES}3 (per branch of dub)"
NODES = ["avatar", "dub[0]", "dub[1]", "dub[2]", "score[0]", "score[1]", "score[2]"]
REFUSED = {"statusCode": 400, "message": "audio is not a WAV file", "error": "Bad Request",
           "errorCode": "generation_input_validation_failed"}  # fmt: skip


def rows(shown: str) -> list[tuple[str, ...]]:
    """The body rows of the view's table, each as its cells."""
    return [
        tuple(cell.strip() for cell in line.strip().strip("│").split("│"))
        for line in shown.splitlines()
        if line.startswith("│")
    ]


def status(services: Services, job_id: str, *more: str) -> str:
    result = CliRunner().invoke(main, ["status", job_id, "--redis-url", services.redis.url, *more])
    assert result.exit_code == 0, result.output
    return result.stdout


def step_jobs(producer: Producer, record: JobRecord) -> dict[str, JobRecord]:
    return {node: producer.get(job_id) for node, job_id in record.provider_ids.items()}


@pytest.mark.slow
def test_status_of_a_pipeline_that_succeeded_is_its_graph_and_a_row_per_step_run(
    services: Services, producer: Producer, sim: Sim
) -> None:
    pipeline_id = producer.submit(demo_pipeline())
    record = producer.wait(pipeline_id, timeout_s=90)
    assert record.status is JobStatus.SUCCEEDED, record.error
    jobs = step_jobs(producer, record)
    # A real process writing to a pipe, as a script reads it: 80 columns, yet no path is cut or folded.
    command = [sys.executable, "-m", "genq", "status", pipeline_id, "--redis-url", services.redis.url]
    shown = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    lines = shown.stdout.splitlines()
    counts = "7 step jobs: 7 succeeded, 0 failed, 0 running"
    assert lines[:3] == [counts, f"job {pipeline_id} (pipeline): succeeded", GRAPH]
    assert rows(shown.stdout) == [
        *((node, "succeeded", jobs[node].id, jobs[node].outputs[0].path) for node in NODES),
        *(("output", "", "", output.path) for output in record.outputs),
    ]
    assert [o.path for o in record.outputs] == [jobs[f"score[{b}]"].outputs[0].path for b in range(3)]
    assert "…" not in shown.stdout

    data = json.loads(status(services, pipeline_id, "--json"))
    assert data["steps"] == {node: {"state": "succeeded", "job": jobs[node].id} for node in NODES}
    assert data["provider_ids"] == record.provider_ids  # the record as before, with steps beside it


def test_a_failed_run_shows_its_error_and_what_it_skipped(
    services: Services, producer: Producer, sim: Sim
) -> None:
    sim.fault(route="syncso.create", status=400, times=1, body=REFUSED)
    pipeline_id = producer.submit(demo_pipeline(on_failure="continue"))
    record = producer.wait(pipeline_id, timeout_s=90)
    assert record.status is JobStatus.FAILED
    jobs = step_jobs(producer, record)
    [bad] = [b for b in range(3) if jobs[f"dub[{b}]"].status is JobStatus.FAILED]
    error = "syncso generation_input_validation_failed: audio is not a WAV file"
    skipped = f"it takes the output of dub[{bad}], which did not succeed"

    def row(node: str) -> tuple[str, ...]:
        if node == f"dub[{bad}]":
            return (node, "failed", jobs[node].id, error)
        if node == f"score[{bad}]":
            return (node, "skipped", "", skipped)
        return (node, "succeeded", jobs[node].id, jobs[node].outputs[0].path)

    shown = status(services, pipeline_id)
    assert shown.splitlines()[:3] == [
        "6 step jobs: 5 succeeded, 1 failed, 0 running",
        f"job {pipeline_id} (pipeline): failed",
        f"{GRAPH} · on_failure continue",
    ]
    message = (f"dub[{bad}] failed ({error}); score[{bad}] skipped; 2 of 3 final runs succeeded, "
               "the join needs all")  # fmt: skip
    assert rows(shown) == [
        *(row(node) for node in NODES),
        ("error", "", "", f"genq genq_pipeline_failed: {message}"),
    ]


def test_cancel_counts_the_step_jobs_it_cancelled_and_watch_ends_1(
    services: Services, producer: Producer, sim: Sim
) -> None:
    sim.configure("aistudios", render_s=5.0)
    pipeline_id = producer.submit(demo_pipeline())
    until(lambda: "avatar" in producer.get(pipeline_id).provider_ids, 30, "the avatar step's job")
    avatar = producer.get(pipeline_id).provider_ids["avatar"]
    url = services.redis.url

    cancel = CliRunner().invoke(main, ["cancel", pipeline_id, "--redis-url", url])
    assert (cancel.exit_code, cancel.stdout) == (0, f"{pipeline_id} cancelled\n")
    assert cancel.stderr == f"genq: cancelled 1 step job of pipeline {pipeline_id}\n"
    watch = CliRunner().invoke(main, ["watch", pipeline_id, "--redis-url", url, "--timeout-s", "30"])
    assert watch.exit_code == 1
    assert rows(watch.stdout) == [
        ("avatar", "cancelled", avatar, ""),
        *((node, "pending", "", "not run: the pipeline cancelled") for node in NODES[1:]),
    ]
    assert producer.get(avatar).status is JobStatus.CANCELLED


@pytest.mark.slow
def test_get_of_a_pipeline_downloads_each_final_output_under_a_name_of_its_own(
    services: Services, producer: Producer, sim: Sim, tmp_path: Path
) -> None:
    pipeline_id = producer.submit(demo_pipeline())  # the three music jobs' outputs share one file name
    record = producer.wait(pipeline_id, timeout_s=90)
    assert record.status is JobStatus.SUCCEEDED, record.error
    result = CliRunner().invoke(
        main, ["get", pipeline_id, "-o", str(tmp_path), "--redis-url", services.redis.url]
    )
    assert result.exit_code == 0, result.output
    written = [Path(line) for line in result.stdout.splitlines()]
    assert len(set(written)) == 3
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in written] == [o.sha256 for o in record.outputs]
