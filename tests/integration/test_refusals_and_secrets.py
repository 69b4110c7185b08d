"""What never reaches Redis: invalid requests, and requests over a cap (API keys:
tests/integration/test_secrets.py)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from genq.cli import main
from producers import InvalidRequest, Producer
from schemas.caps import Caps
from worker.providers.registry import PROVIDERS

pytestmark = pytest.mark.integration

GOOD = {
    "kind": "lipsync",
    "model": "lipsync-2",
    "video": "https://x.test/v.mp4",
    "audio": "https://x.test/a.wav",
}


def _queued_and_stored(client: redis.Redis) -> tuple[int, int]:
    queued = sum(client.llen(q) for q in ("default", *PROVIDERS))
    return queued, len(list(client.scan_iter("genq:job:*")))


def test_invalid_input_exits_non_zero_one_line_per_field_nothing_enqueued(
    scratch_url: str, scratch: redis.Redis, tmp_path: Path
) -> None:
    client, url = scratch, scratch_url
    bad = {**GOOD, "model": "lipsync-9", "video": "v.mp4", "options": {"temperature": 2}}
    path = tmp_path / "job.json"
    path.write_text(json.dumps(bad))

    result = CliRunner().invoke(main, ["submit", str(path), "--redis-url", url])

    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.startswith("invalid: ")]
    assert [line.split(":")[1].strip() for line in lines] == ["model", "video", "options.temperature"]
    assert _queued_and_stored(client) == (0, 0)


def test_one_bad_request_in_a_batch_refuses_the_whole_batch(scratch: redis.Redis) -> None:
    client = scratch
    producer = Producer(client=client)
    with pytest.raises(InvalidRequest) as caught:
        producer.submit_many([GOOD, GOOD, {**GOOD, "audio": None}])
    assert caught.value.problems == ["[2] request: Value error, give exactly one of audio, tts or tracks"]
    assert _queued_and_stored(client) == (0, 0)


def test_submit_from_stdin_prints_ids_and_a_repeated_key_returns_the_first(
    scratch_url: str, scratch: redis.Redis
) -> None:
    client, url = scratch, scratch_url
    args = ["submit", "-", "--redis-url", url, "--idempotency-key", "order-42"]
    first = CliRunner().invoke(main, args, input=json.dumps(GOOD))
    again = CliRunner().invoke(main, args, input=json.dumps(GOOD))
    assert first.exit_code == again.exit_code == 0
    assert first.output == again.output
    assert client.llen("syncso") == 1


# --- caps (GENQ_CAPS__…): refused at submit, one line naming the field, nothing stored ---------------


def _avatar_project(scenes: int, **project: object) -> dict[str, object]:
    scene = {
        "background": {"source_type": "color", "source_color": "rgb(0,0,0)"},
        "scripts": [{"org": "Hello.", "isTTS": False, "modelId": "M1", "clothId": "C1"}],
        "clips": [{"type": "aiModel", "model": {"ai_name": "M1", "emotion": "C1"}}],
    }
    return {
        "kind": "avatar",
        "project": {"scenes": [{**scene, "sceneIdx": i} for i in range(scenes)], **project},
    }


# Built by each test, not at collection: they are large.
OVER_CAPS: dict[str, tuple[Callable[[], dict[str, object]], str]] = {
    "20 MB dictionary": (
        lambda: _avatar_project(1, dictionary={f"entry{i}": "x" * 1_000_000 for i in range(20)}),
        "project.dictionary",
    ),
    "5,000 scenes": (lambda: _avatar_project(5_000), "project.scenes"),
    "300,000 bounding boxes": (
        lambda: {
            **GOOD,
            "options": {"active_speaker_detection": {"bounding_boxes": [[0, 0, 10, 10]] * 300_000}},
        },
        "options.active_speaker_detection.bounding_boxes",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", OVER_CAPS)
def test_requests_over_a_cap_are_refused_naming_the_field_and_nothing_is_stored(
    scratch_url: str, scratch: redis.Redis, tmp_path: Path, case: str
) -> None:
    build, field = OVER_CAPS[case]
    request_ = build()
    producer = Producer(client=scratch)
    for submit in (producer.submit, lambda r: producer.submit(r, idempotency_key="k1"),
                   lambda r: producer.submit_many([GOOD, r])):  # fmt: skip
        with pytest.raises(InvalidRequest) as caught:
            submit(request_)
        lines = [line.removeprefix("[1] ") for line in caught.value.problems]
        assert [line.split(":")[0] for line in lines] == [field, "request"], lines
        assert lines[1].endswith("bytes of JSON; at most 1000000 (GENQ_CAPS__MAX_REQUEST_BYTES)")
    path = tmp_path / "job.json"
    path.write_text(json.dumps(request_))
    result = CliRunner().invoke(main, ["submit", str(path), "--redis-url", scratch_url])
    assert result.exit_code == 2
    assert [line.split(":")[1].strip() for line in result.output.splitlines()] == [field, "request"]
    assert scratch.dbsize() == 0


def test_too_many_jobs_in_one_submit_are_refused_and_nothing_is_stored(
    scratch_url: str, scratch: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    producer = Producer(client=scratch)
    with pytest.raises(InvalidRequest) as caught:
        producer.submit_many(itertools.repeat(GOOD))  # endless: refused after the 10,000th
    assert caught.value.problems == [
        "submit: more than 10000 jobs; at most 10000 in one call (GENQ_CAPS__MAX_JOBS_PER_SUBMIT)"
    ]
    few = Producer(client=scratch, caps=Caps(max_jobs_per_submit=3, max_submit_bytes=1000))
    with pytest.raises(InvalidRequest) as caught:
        few.submit_many([GOOD] * 4)
    assert caught.value.problems == [
        "submit: more than 3 jobs; at most 3 in one call (GENQ_CAPS__MAX_JOBS_PER_SUBMIT)"
    ]
    with pytest.raises(InvalidRequest) as caught:
        few.submit_many([GOOD] * 3)  # three fit, but not their bytes
    [line] = caught.value.problems
    assert line.startswith("submit: ") and line.endswith(
        "bytes of requests; at most 1000 (GENQ_CAPS__MAX_SUBMIT_BYTES)"
    )
    assert scratch.dbsize() == 0

    monkeypatch.setenv("GENQ_CAPS__MAX_JOBS_PER_SUBMIT", "3")
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(json.dumps(GOOD) for _ in range(4)))
    result = CliRunner().invoke(main, ["submit", str(path), "--redis-url", scratch_url])
    assert (result.exit_code, result.output) == (
        2,
        "invalid: submit: more than 3 jobs; at most 3 in one call (GENQ_CAPS__MAX_JOBS_PER_SUBMIT)\n",
    )
    monkeypatch.setenv("GENQ_CAPS__MAX_SUBMIT_BYTES", "100")
    result = CliRunner().invoke(main, ["submit", str(path), "--redis-url", scratch_url])
    assert (result.exit_code, result.output) == (
        2,
        "invalid: submit: more than 100 bytes; at most 100 in one call (GENQ_CAPS__MAX_SUBMIT_BYTES)\n",
    )
    assert scratch.dbsize() == 0


def test_a_batch_over_its_cap_is_refused_before_its_jobs_are_read(scratch: redis.Redis) -> None:
    producer = Producer(client=scratch, caps=Caps(max_batch_jobs=30))
    with pytest.raises(InvalidRequest) as caught:
        producer.submit_batch([GOOD] * 31)
    assert caught.value.problems == ["batch: 31 jobs; at most 30 (GENQ_CAPS__MAX_BATCH_JOBS)"]
    assert scratch.dbsize() == 0
