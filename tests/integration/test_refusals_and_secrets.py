"""What never reaches Redis: invalid requests (API keys: tests/integration/test_secrets.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from genq.cli import main
from producers import InvalidRequest, Producer
from worker.providers.registry import PROVIDERS

pytestmark = pytest.mark.integration

GOOD = {
    "kind": "lipsync",
    "model": "lipsync-2",
    "video": "https://x.test/v.mp4",
    "audio": "https://x.test/a.wav",
}
AVATAR = {"kind": "avatar", "script": "Hello.", "model": "M000045058", "clothes": "BG00002320"}


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
