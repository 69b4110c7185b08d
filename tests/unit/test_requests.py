"""The job request contract: what is accepted, and the one-line-per-field errors for what is not."""

from __future__ import annotations

from pathlib import Path

import pytest

from producers import InvalidRequest, validate
from schemas import LipsyncRequest

BASE = {
    "kind": "lipsync",
    "model": "lipsync-2",
    "video": "https://x.test/v.mp4",
    "audio": "https://x.test/a.wav",
}


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"model": "sync-3", "output_file_name": "A_b-9"},
        {"audio": None, "tts": {"voice_id": "v", "script": "hi", "stability": 0.3, "similarity_boost": 1}},
        {"options": {"sync_mode": "cut_off", "temperature": 0, "occlusion_detection_enabled": True}},
        {"options": {"active_speaker_detection": {"frame_number": 3, "coordinates": [10, 20]}}},
        {"options": {"active_speaker_detection": {"bounding_boxes": [[0, 0, 10, 10], None]}}},
        {"model": "react-1", "options": {"model_mode": "head", "prompt": "happy"}},
        {"tenant": "acme-1"},
    ],
)
def test_valid_requests(changes: dict[str, object]) -> None:
    request = validate({**BASE, **changes}, check_files=False)
    assert isinstance(request, LipsyncRequest)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"model": "lipsync-9"}, "model: Input should be 'lipsync-2'"),
        ({"video": "relative/v.mp4"}, "video: Value error, must be an http(s) URL or an absolute file path"),
        ({"video": "ftp://x/v.mp4"}, "video: Value error, must be an http(s) URL"),
        ({"audio": None}, "request: Value error, give exactly one of audio, tts or tracks"),
        ({"tts": {"voice_id": "v", "script": "hi"}}, "give exactly one of audio, tts or tracks"),
        (
            {"audio": None, "tts": {"voice_id": "v", "script": "x" * 5001}},
            "tts.script: String should have at most",
        ),
        ({"options": {"temperature": 1.5}}, "options.temperature: Input should be less than or equal to 1"),
        ({"options": {"sync_mode": "stretch"}}, "options.sync_mode: Input should be 'bounce'"),
        ({"options": {"prompt": "happy"}}, "options.prompt is only accepted by react-1"),
        ({"options": {"active_speaker_detection": {"frame_number": 1}}}, "frame_number and coordinates"),
        ({"output_file_name": "no spaces.mp4"}, "output_file_name: String should match pattern"),
        ({"output_file_name": "x" * 256}, "output_file_name: String should match pattern"),
        ({"api_key": "secret"}, "api_key: unknown field"),
        ({"kind": "karaoke"}, "kind: 'karaoke' is unknown; one of lipsync, avatar, music, pipeline"),
    ],
)
def test_invalid_requests_name_the_field(changes: dict[str, object], problem: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate({**BASE, **changes}, check_files=False)
    assert any(problem in line for line in caught.value.problems), caught.value.problems


def test_every_bad_field_gets_its_own_line() -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate({**BASE, "model": "x", "video": "v", "options": {"temperature": -1}}, check_files=False)
    assert [p.split(":")[0] for p in caught.value.problems] == ["model", "video", "options.temperature"]


def test_local_files_must_exist(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    validate({**BASE, "video": str(video)})
    with pytest.raises(InvalidRequest) as caught:
        validate({**BASE, "video": str(video), "audio": str(tmp_path / "missing.wav")})
    assert caught.value.problems == [f"audio: no such file: {tmp_path / 'missing.wav'}"]
