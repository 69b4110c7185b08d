"""The create stage's body: local files sent as parts are opened once under the input roots and checked
against the direct-upload limit when the create runs (a file may have grown since the flow was built)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas import JOB_REQUEST, JobRecord, JobStatus
from worker.handoff import Roots
from worker.providers.errors import BadRequest
from worker.providers.syncso.stages import create_body


def job(video: Path, **data: object) -> JobRecord:
    now = datetime.now(UTC)
    request = JOB_REQUEST.validate_python(
        {"kind": "lipsync", "model": "lipsync-2", "video": str(video), "audio": "https://x.test/a.wav"}
    )
    return JobRecord(id="j1", kind="lipsync", status=JobStatus.RUNNING, request=request, data=data,
                     created_at=now, updated_at=now)  # fmt: skip


def test_a_part_within_the_limit_is_sent_as_a_file(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x" * 10)
    with create_body(job(video), max_upload_bytes=10, roots=Roots((tmp_path,))) as (body, files):
        assert list(files) == ["video"]
        assert (files["video"].name, files["video"].read()) == (str(video), b"x" * 10)
        assert body["input"] == [{"type": "audio", "url": "https://x.test/a.wav"}]
    assert files["video"].closed


def test_a_part_over_the_limit_fails_naming_its_size_and_the_limit(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x" * 11)
    with (
        pytest.raises(BadRequest) as caught,
        create_body(job(video), max_upload_bytes=10, roots=Roots((tmp_path,))),
    ):
        pass
    assert (
        caught.value.message
        == "the video file is 11 bytes; direct upload takes at most 10: give a URL instead"
    )
    assert not caught.value.retryable


def test_a_file_uploaded_as_an_asset_is_sent_by_its_id_whatever_its_size(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x" * 11)
    with create_body(
        job(video, assets={"video": "asset-1"}), max_upload_bytes=10, roots=Roots((tmp_path,))
    ) as (
        body,
        files,
    ):
        assert files == {}
        assert body["input"][0] == {"type": "video", "assetId": "asset-1"}


def test_a_missing_part_fails_naming_the_field(tmp_path: Path) -> None:
    gone = tmp_path / "gone.mp4"
    with (
        pytest.raises(BadRequest) as caught,
        create_body(job(gone), max_upload_bytes=10, roots=Roots((tmp_path,))),
    ):
        pass
    assert (caught.value.message, caught.value.code) == (f"video: no such file: {gone}", "genq_input_refused")
    assert not caught.value.retryable
