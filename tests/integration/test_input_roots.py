"""Input roots in the worker: a job whose local file is not under the workers' roots, including
through a symlink, fails before anything is sent to a provider."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from genq.cli import main
from genq.redis_server import EmbeddedRedis
from producers import Producer
from schemas import JobStatus
from tests.conftest import Sim

pytestmark = pytest.mark.integration


def test_the_worker_refuses_a_file_outside_its_roots_even_through_a_symlink(
    workers: Callable[..., subprocess.Popen[bytes]], own_redis: EmbeddedRedis, sim: Sim, tmp_path: Path
) -> None:
    inputs, other = tmp_path / "inputs", tmp_path / "other"
    inputs.mkdir()
    other.mkdir()
    (inputs / "v.mp4").write_bytes(b"\x00" * 1024)
    (other / "secret.mp4").write_bytes(b"\x00" * 1024)
    (inputs / "link.mp4").symlink_to(other / "secret.mp4")
    # The producer's roots (the tests' temporary directory) hold both; the workers' only `inputs`.
    workers("narrow", GENQ_INPUT_ROOTS=str(inputs))
    producer = Producer(own_redis.url)
    audio = "https://media.example.com/a.wav"
    ok = producer.submit(
        {"kind": "lipsync", "model": "lipsync-2", "video": str(inputs / "v.mp4"), "audio": audio}
    )
    linked = producer.submit(
        {"kind": "lipsync", "model": "lipsync-2", "video": str(inputs / "link.mp4"), "audio": audio}
    )

    assert producer.wait(ok, timeout_s=60).status is JobStatus.SUCCEEDED
    refused = producer.wait(linked, timeout_s=60)
    assert refused.status is JobStatus.FAILED
    assert refused.error is not None
    assert (refused.error.stage, refused.error.code) == ("create", "genq_input_refused")
    assert refused.error.message == f"video: {inputs / 'link.mp4'} is outside the input roots ({inputs})"
    assert sim.stats()["generations_created"] == 1


def test_genq_submit_refuses_a_file_outside_the_roots_with_exit_2(sim: Sim) -> None:
    request = (
        '{"kind": "lipsync", "model": "lipsync-2", "video": "/etc/shadow", "audio": "https://x.test/a.wav"}'
    )
    result = CliRunner().invoke(main, ["submit", "-"], input=request)
    assert result.exit_code == 2
    assert "invalid: video: /etc/shadow is outside the input roots" in result.output
