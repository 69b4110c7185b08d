"""What never reaches Redis: invalid requests, and API keys."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from genq.cli import main
from producers import InvalidRequest, Producer
from schemas import JobStatus
from tests.conftest import AISTUDIOS_APP, AISTUDIOS_KEY, SIM_KEY, Services, Sim
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
    services: Services, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(
        f"redis://127.0.0.1:{services.redis.port}/3"
    )  # a database no worker consumes
    url = f"redis://127.0.0.1:{services.redis.port}/3"
    bad = {**GOOD, "model": "lipsync-9", "video": "v.mp4", "options": {"temperature": 2}}
    path = tmp_path / "job.json"
    path.write_text(json.dumps(bad))

    result = CliRunner().invoke(main, ["submit", str(path), "--redis-url", url])

    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.startswith("invalid: ")]
    assert [line.split(":")[1].strip() for line in lines] == ["model", "video", "options.temperature"]
    assert _queued_and_stored(client) == (0, 0)


def test_one_bad_request_in_a_batch_refuses_the_whole_batch(services: Services) -> None:
    client = redis.Redis.from_url(f"redis://127.0.0.1:{services.redis.port}/3")
    producer = Producer(client=client)
    with pytest.raises(InvalidRequest) as caught:
        producer.submit_many([GOOD, GOOD, {**GOOD, "audio": None}])
    assert caught.value.problems == ["[2] request: Value error, give exactly one of audio, tts or tracks"]
    assert _queued_and_stored(client) == (0, 0)


def test_submit_from_stdin_prints_ids_and_a_repeated_key_returns_the_first(services: Services) -> None:
    client = redis.Redis.from_url(f"redis://127.0.0.1:{services.redis.port}/3")
    url = f"redis://127.0.0.1:{services.redis.port}/3"
    args = ["submit", "-", "--redis-url", url, "--idempotency-key", "order-42"]
    first = CliRunner().invoke(main, args, input=json.dumps(GOOD))
    again = CliRunner().invoke(main, args, input=json.dumps(GOOD))
    assert first.exit_code == again.exit_code == 0
    assert first.output == again.output
    assert client.llen("syncso") == 1
    client.flushdb()


def test_no_provider_credential_in_any_broker_message_or_stored_value(
    producer: Producer, sim: Sim, services: Services
) -> None:
    """Record every command Redis receives while a job runs (MONITOR), then look for the key."""
    seen: list[str] = []
    monitor_client = redis.Redis.from_url(services.redis.url)
    ready, stop = threading.Event(), threading.Event()

    def record() -> None:
        with monitor_client.monitor() as monitor:
            ready.set()
            for command in monitor.listen():
                seen.append(command["command"])
                if stop.is_set():
                    return

    thread = threading.Thread(target=record, daemon=True)
    thread.start()
    ready.wait(5)
    job_id = producer.submit(GOOD)
    avatar = producer.submit(AVATAR)
    assert producer.wait(job_id, timeout_s=30).status is JobStatus.SUCCEEDED
    assert producer.wait(avatar, timeout_s=30).status is JobStatus.SUCCEEDED
    stop.set()
    producer.redis.ping()  # one more command so the monitor loop wakes and ends
    thread.join(5)

    assert any(job_id in c for c in seen)  # the monitor did see the job's traffic
    assert any("genq.syncso.create" in c or "genq.start" in c for c in seen)
    assert any("genq.aistudios.create" in c for c in seen)
    credentials = (SIM_KEY, AISTUDIOS_APP, AISTUDIOS_KEY)
    assert not [c for c in seen if any(secret in c for secret in credentials)]
    stored = [producer.redis.dump(k) or b"" for k in producer.redis.scan_iter("*")]
    assert not [v for v in stored if any(secret.encode() in v for secret in credentials)]
