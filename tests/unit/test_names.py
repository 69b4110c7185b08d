"""Provider-supplied ids and names become safe file names: an id of ``../../x`` writes its output inside
the job's directory under the artifact directory, like any other id."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from schemas import JOB_REQUEST, JobRecord, JobStatus
from worker.limits import Gate, MemoryLimiter, Pool, RateBudget
from worker.names import MAX_NAME_CHARS, output_path, safe_name
from worker.providers.aistudios.settings import AIStudiosSettings
from worker.providers.aistudios.stages import AIStudios, fetch_video
from worker.providers.http import Download
from worker.providers.syncso.settings import SyncSoSettings
from worker.providers.syncso.stages import fetch_output
from worker.settings import LimitsSettings
from worker.waits import WaitResult

HOSTILE = ["../../x", "..", ".", "", "/etc/passwd", "a/../../b", ".hidden", "a\\..\\b", "x\x00y", "é" * 300,
           "~root", "a b", "C:\\x", "%2e%2e%2fx"]  # fmt: skip


@pytest.mark.parametrize("text", ["gen-123", "f3a1c9e2-77b0-4c55-9d7e-0a1b2c3d4e5f", "M000045058", "a.b_c-d"])
def test_a_documented_id_is_its_own_name(text: str) -> None:
    assert safe_name(text) == text


@pytest.mark.parametrize("text", HOSTILE)
def test_any_other_text_is_one_harmless_component(text: str, tmp_path: Path) -> None:
    name = safe_name(text)
    assert name not in ("", ".", "..")
    assert "/" not in name and "\\" not in name and "\x00" not in name and not name.startswith(".")
    assert len(name) <= MAX_NAME_CHARS
    assert (tmp_path / name).resolve().parent == tmp_path.resolve()


def test_two_different_texts_never_share_a_name() -> None:
    names = [safe_name(text) for text in [*HOSTILE, "__x", "_.._x", "a_b", "a/b", "a\\b"]]
    assert len(set(names)) == len(names)


def test_output_path_stays_in_the_jobs_directory(tmp_path: Path) -> None:
    path = output_path(tmp_path, "../j", "../../x", ".mp4")
    assert path.resolve().parent.parent == tmp_path.resolve()
    assert path.parent.is_dir() and path.name.endswith(".mp4")


class Downloads:
    """A client that records where it was told to write, and writes there."""

    def __init__(self) -> None:
        self.dests: list[Path] = []

    def download(self, url: str, dest: Path, *, max_bytes: int, budget: object = None) -> Download:
        return self._write(dest)

    def download_output(self, url: str, dest: Path, *, max_bytes: int, budget: object = None) -> Download:
        return self._write(dest)

    def _write(self, dest: Path) -> Download:
        self.dests.append(dest)
        dest.write_bytes(b"video")
        return Download(path=dest, bytes=5, sha256="0" * 64)


class Ended:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def result(self, provider: str, provider_id: str) -> WaitResult:
        return WaitResult(state="ended", body=self.body)


def record(kind: str, request: dict[str, Any], ids: dict[str, str]) -> JobRecord:
    now = datetime.now(UTC)
    return JobRecord(id="0123456789abcdef0123456789ab", kind=kind, status=JobStatus.RUNNING,
                     request=JOB_REQUEST.validate_python(request), provider_ids=ids, created_at=now,
                     updated_at=now)  # fmt: skip


def gate(job: JobRecord) -> Gate:
    return Gate(MemoryLimiter(), LimitsSettings(), job, lambda: ("q", "rerun"))


def assert_inside(path: Path, artifact_dir: Path, job: JobRecord) -> None:
    assert path.resolve().parent == (artifact_dir / job.id).resolve()


def test_an_avatar_project_id_of_dot_dot_writes_inside_the_artifact_directory(tmp_path: Path) -> None:
    simple = {"kind": "avatar", "script": "Hi.", "model": "M000045058", "clothes": "BG00002320"}
    job = record("avatar", simple, {"project": "../../x"})
    client = Downloads()
    rate = RateBudget("aistudios.requests", 1000, 60.0)
    ai = AIStudios(client, AIStudiosSettings(), Pool("aistudios.renders", 4, 60.0), rate, None)  # type: ignore[arg-type]
    output = fetch_video(job, ai, Ended({"downloadUrl": "https://cdn/x.mp4"}), gate(job), tmp_path / "art")  # type: ignore[arg-type]
    (dest,) = client.dests
    assert_inside(dest, tmp_path / "art", job)
    assert Path(output.path) == dest.resolve()
    assert not (tmp_path / "x.mp4").exists()


def test_a_lipsync_generation_id_of_dot_dot_writes_inside_the_artifact_directory(tmp_path: Path) -> None:
    lipsync = {
        "kind": "lipsync",
        "model": "lipsync-2",
        "video": "https://x/v.mp4",
        "audio": "https://x/a.wav",
    }
    job = record("lipsync", lipsync, {"generation": "../../x"})
    client = Downloads()
    sync = type("Sync", (), {"client": client, "settings": SyncSoSettings()})()
    body = {"id": "../../x", "status": "COMPLETED", "outputUrl": "https://cdn/x.mp4"}
    output = fetch_output(job, sync, Ended(body), gate(job), tmp_path / "art")  # type: ignore[arg-type]
    (dest,) = client.dests
    assert_inside(dest, tmp_path / "art", job)
    assert Path(output.path) == dest.resolve()
