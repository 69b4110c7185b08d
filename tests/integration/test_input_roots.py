"""Input roots in the worker: a job whose local file is not under the workers' roots, including
through a symlink, even one swapped after the stage's check, fails before anything is sent to a
provider."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from genq.cli import main
from genq.redis_server import EmbeddedRedis
from producers import Producer
from schemas import JobRecord, JobStatus
from tests.conftest import Sim

pytestmark = pytest.mark.integration


@pytest.mark.slow
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


# Each place a worker reads a local input: the stage that reads it, and the request that makes it read
# there. A lipsync file under GENQ_SYNCSO__MAX_UPLOAD_BYTES (64 KiB in the tests) goes with the create
# call; a larger one through the media library (`upload`); a music video in chunks (`upload_chunk`).
def _lipsync(video: str) -> dict[str, str]:
    return {
        "kind": "lipsync",
        "model": "lipsync-2",
        "video": video,
        "audio": "https://media.example.com/a.wav",
    }


READS: dict[str, tuple[str, int, Callable[[str], dict[str, str]]]] = {
    "lipsync part at create": ("create", 4096, _lipsync),
    "lipsync media library upload": ("upload", 100_000, _lipsync),
    "music chunk": ("upload_chunk[0]", 4096, lambda video: {"kind": "music", "video": video}),
}


@pytest.mark.parametrize("read", READS)
def test_a_link_swapped_right_after_the_stages_check_is_never_read(
    producer: Producer, sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read: str
) -> None:
    """The worker checks a job's inputs before each stage; here the link is swapped to a file outside the
    roots right after that check, in the stage that reads the file. The stage refuses what it opened,
    and nothing of the file outside reaches the provider (before, the stage read it by its name again
    and sent it; the next stage's check failed the job, too late)."""
    from worker.context import get_context  # noqa: PLC0415 (the in-process worker's own context)
    from worker.stage import Stage  # noqa: PLC0415

    stage, size, request = READS[read]
    inputs, other = tmp_path / "inputs", tmp_path / "other"
    inputs.mkdir()
    other.mkdir()
    (inputs / "v.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"v" * (size - 12))
    (other / "secret.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"s" * (size - 12))  # same size
    link = inputs / "link.mp4"
    link.symlink_to(inputs / "v.mp4")
    # The producer's roots (the tests' temporary directory) hold both; the worker's only `inputs`.
    monkeypatch.setattr(get_context().settings, "input_roots", str(inputs))
    check = Stage._check_inputs

    def check_then_swap(self: Stage, job: JobRecord) -> None:
        check(self, job)
        if self.state_key == stage and str(link) in job.request.local_files().values():
            swapped = inputs / "link.new"
            swapped.symlink_to(other / "secret.mp4")
            swapped.replace(link)

    monkeypatch.setattr(Stage, "_check_inputs", check_then_swap)
    record = producer.wait(producer.submit(request(str(link))), timeout_s=60)

    assert record.status is JobStatus.FAILED
    assert record.error is not None
    assert (record.error.stage, record.error.code) == (stage, "genq_input_refused")
    assert record.error.message == f"video: {link} is outside the input roots ({inputs})"
    syncso, aimi = sim.stats(), sim.stats("aimi")
    assert (syncso["generations_created"], syncso["uploads_completed"], syncso["assets_created"]) == (0, 0, 0)
    assert aimi["chunks_received"] == 0
