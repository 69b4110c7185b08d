"""What ``genq jobs`` accepts and shows, and the member counts ``genq status`` prints above a batch's or a
pipeline's table (on the session Redis's scratch database)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import redis
from click.testing import CliRunner

from genq.cli import main
from producers import Producer
from producers.listing import parse_since, span
from schemas import JobError, JobStatus, StageStatus
from schemas import layout as L
from tests.conftest import AVATAR, LIPSYNC
from tests.unit.test_pipeline_request import DEMO
from worker.store import JobStore

ERROR = JobError(stage="create", message="no", provider="syncso", code="bad_input")


@pytest.mark.parametrize(
    ("text", "since"),
    [
        ("30s", timedelta(seconds=30)),
        ("10m", timedelta(minutes=10)),
        ("2h", timedelta(hours=2)),
        ("1.5h", timedelta(minutes=90)),
        ("1d", timedelta(days=1)),
        ("1w", timedelta(days=7)),
        ("2025-03-01T12:00:00+00:00", datetime(2025, 3, 1, 12, tzinfo=UTC)),
        ("2025-03-01T12:00:00Z", datetime(2025, 3, 1, 12, tzinfo=UTC)),
    ],
)
def test_since_is_a_time_ago_or_an_iso_time(text: str, since: datetime | timedelta) -> None:
    assert parse_since(text) == since


def test_since_without_an_offset_is_local_time() -> None:
    since = parse_since("2025-03-01 12:00")
    assert isinstance(since, datetime)
    assert since == datetime(2025, 3, 1, 12).astimezone()


@pytest.mark.parametrize("text", ["yesterday", "10", "5 minutes", "-1h", ""])
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="neither a time ago"):
        parse_since(text)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.04, "0.0s"),
        (4.25, "4.2s"),
        (59.9, "59.9s"),
        (312, "5m12s"),
        (3 * 3600 + 300, "3h05m"),
        (2 * 86400 + 4 * 3600 + 59, "2d04h"),
    ],
)
def test_spans_are_short(seconds: float, shown: str) -> None:
    assert span(seconds) == shown


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--since", "yesterday"], "invalid: --since: 'yesterday' is neither a time ago"),
        (["--limit", "0"], "Invalid value for '--limit'"),
        (["--status", "lost"], "Invalid value for '--status'"),
        (["--kind", "dub"], "Invalid value for '--kind'"),
    ],
)
def test_bad_options_exit_2(scratch_url: str, args: list[str], problem: str) -> None:
    result = CliRunner().invoke(main, ["jobs", *args, "--redis-url", scratch_url])
    assert result.exit_code == 2
    assert problem in result.stderr


def test_jobs_prints_the_counts_then_a_row_per_job(scratch_url: str, scratch: redis.Redis) -> None:
    producer, store = Producer(scratch_url), JobStore(scratch)
    failed, running = producer.submit(AVATAR), producer.submit({**LIPSYNC, "tenant": "acme"})
    store.fail(failed, ERROR)
    assert store.start_once(running, "q", ["first"], root="r") is True
    store.update_stage(running, "create", StageStatus.RUNNING)
    result = CliRunner().invoke(main, ["jobs", "--since", "1h", "--redis-url", scratch_url])
    assert result.exit_code == 0, result.output
    heading, header, first, second = result.output.splitlines()
    assert heading == "jobs created in the last 1h: 0 queued, 1 running, 0 succeeded, 1 failed, 0 cancelled"
    assert header.split() == ["job", "kind", "status", "tenant", "created", "time", "detail"]
    assert first.split()[:4] + first.split()[6:] == [running, "lipsync", "running", "acme", "for",
                                                      first.split()[7], "create", "(running)"]  # fmt: skip
    assert second.split()[:4] == [failed, "avatar", "failed", "-"]
    assert second.split()[6] == "took" and second.split()[8:] == ["syncso", "bad_input", "at", "create"]
    nothing = CliRunner().invoke(main, ["jobs", "--kind", "music", "--redis-url", scratch_url])
    assert nothing.output.splitlines() == [
        "all jobs: 0 queued, 1 running, 0 succeeded, 1 failed, 0 cancelled (counts of every kind and tenant)",
        "no job matches",
    ]


def test_status_counts_a_batchs_jobs_and_a_pipelines_step_jobs(
    scratch_url: str, scratch: redis.Redis
) -> None:
    producer, store = Producer(scratch_url), JobStore(scratch)
    batch = producer.submit_batch([LIPSYNC] * 20)
    for job_id in batch.job_ids[:2]:
        store.fail(job_id, ERROR)
    assert store.start_once(batch.job_ids[2], "q", ["first"], root="r") is True
    shown = CliRunner().invoke(main, ["status", batch.batch_id, "--redis-url", scratch_url])
    assert shown.exit_code == 0, shown.output
    assert shown.output.splitlines()[0] == "20 jobs: 0 succeeded, 2 failed, 1 running, 17 queued"

    pipeline_id = producer.submit(DEMO)
    assert store.start_once(pipeline_id, "q", ["first"], root="r") is True
    child = "c" * 28
    fields = L.new_job_fields(child, json.dumps(AVATAR), "avatar", None, L.now_iso())
    notice = json.dumps({"pipeline": pipeline_id, "queue": "q", "message": "node run"})
    store.step_job(pipeline_id, "avatar", child, notice, made=("aistudios", "start", fields))
    store.transition(child, JobStatus.CANCELLED)
    shown = CliRunner().invoke(main, ["status", pipeline_id, "--redis-url", scratch_url])
    assert shown.output.splitlines()[0] == "1 step jobs: 0 succeeded, 0 failed, 0 running, 1 cancelled"
    single = CliRunner().invoke(main, ["status", child, "--redis-url", scratch_url])
    assert single.output.startswith("job ")  # a job without members: no line
