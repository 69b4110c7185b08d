"""Caps at submit (``GENQ_CAPS__…``): a request whose JSON or whose lists are larger than a cap is refused
with one line naming the field and the setting (what a refusal leaves in Redis, nothing:
tests/integration/test_refusals_and_secrets.py)."""

from __future__ import annotations

from typing import Any

import pytest

from producers import InvalidRequest, validate
from schemas.caps import Caps
from worker.settings import Settings

LIPSYNC: dict[str, Any] = {
    "kind": "lipsync",
    "model": "lipsync-2",
    "video": "https://x.test/v.mp4",
    "audio": "https://x.test/a.wav",
}


def scene(index: int, extra_clips: int = 0) -> dict[str, Any]:
    avatar = {"type": "aiModel", "model": {"ai_name": "M1", "emotion": "C1"}}
    texts = [{"type": "textImage", "fontSize": 12, "text": f"t{i}"} for i in range(extra_clips)]
    return {
        "sceneIdx": index,
        "background": {"source_type": "color", "source_color": "rgb(0,0,0)"},
        "scripts": [{"org": "Hello.", "isTTS": False, "modelId": "M1", "clothId": "C1"}],
        "clips": [avatar, *texts],
    }


def avatar(scenes: int = 1, **project: Any) -> dict[str, Any]:
    return {"kind": "avatar", "project": {"scenes": [scene(i) for i in range(scenes)], **project}}


def refusal(request: dict[str, Any], caps: Caps | None = None) -> list[str]:
    with pytest.raises(InvalidRequest) as caught:
        validate(request, caps=caps or Caps())
    return caught.value.problems


def test_the_defaults() -> None:
    assert Caps().model_dump() == {
        "max_request_bytes": 1_000_000,
        "max_jobs_per_submit": 10_000,
        "max_submit_bytes": 100_000_000,
        "max_batch_jobs": 500,
        "max_scenes": 100,
        "max_clips": 50,
        "max_dictionary_bytes": 100_000,
        "max_bounding_boxes": 30_000,
        "max_segments": 256,
        "max_pipeline_steps": 20,
        "max_pipeline_jobs": 200,
        "max_job_output_bytes": 10 * 1024**3,
    }


def test_producers_and_workers_read_the_same_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {
        "GENQ_CAPS__MAX_SCENES": "5",
        "genq_caps__max_clips": "6",
        "GENQ_CAPS": '{"max_scenes": 9, "max_segments": 7}',
    }
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    caps = Caps.from_env()
    assert (caps.max_scenes, caps.max_clips, caps.max_segments) == (5, 6, 7)  # a variable beats the JSON
    assert Settings().caps == caps


def test_a_cap_must_be_positive() -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        Caps.from_env({"GENQ_CAPS__MAX_REQUEST_BYTES": "0"})


def test_requests_within_every_cap_pass() -> None:
    validate(LIPSYNC, caps=Caps())
    validate(avatar(scenes=100, dictionary={"genq": "gen queue"}), caps=Caps())
    boxes = {"active_speaker_detection": {"bounding_boxes": [[0, 0, 10, 10]] * 30_000}}
    validate({**LIPSYNC, "options": boxes}, caps=Caps())


def test_too_many_scenes() -> None:
    assert refusal(avatar(scenes=101)) == ["project.scenes: 101 scenes; at most 100 (GENQ_CAPS__MAX_SCENES)"]


def test_too_many_clips_in_a_scene() -> None:
    request = avatar(scenes=2)
    request["project"]["scenes"][1] = scene(1, extra_clips=50)
    assert refusal(request) == ["project.scenes.1.clips: 51 clips; at most 50 (GENQ_CAPS__MAX_CLIPS)"]


def test_too_large_a_dictionary() -> None:
    dictionary = {f"word{i}": "x" * 1000 for i in range(100)}  # 100 entries of about 1 kB: over 100 kB
    [line] = refusal(avatar(dictionary=dictionary))
    assert line.startswith("project.dictionary: 10")
    assert line.endswith(" bytes of JSON; at most 100000 (GENQ_CAPS__MAX_DICTIONARY_BYTES)")


def test_too_many_bounding_boxes() -> None:
    options = {"active_speaker_detection": {"bounding_boxes": [[0, 0, 10, 10]] * 30_001}}
    assert refusal({**LIPSYNC, "options": options}) == [
        "options.active_speaker_detection.bounding_boxes: 30001 bounding boxes; at most 30000 "
        "(GENQ_CAPS__MAX_BOUNDING_BOXES)"
    ]


def test_too_many_segments_for_a_lower_cap() -> None:
    tracks = [{"ref_id": "a", "audio": "https://x.test/a.wav"}]
    segments = [{"start_time": i, "end_time": i + 1, "audio_input": {"ref_id": "a"}} for i in range(3)]
    request = {**LIPSYNC, "audio": None, "tracks": tracks, "segments": segments}
    assert refusal(request, Caps(max_segments=2)) == [
        "segments: 3 segments; at most 2 (GENQ_CAPS__MAX_SEGMENTS)"
    ]


def test_a_request_whose_json_is_too_large() -> None:
    """A field no list cap covers (a clip's text: unknown layout fields pass through too) still counts in
    the request's bytes."""
    request = avatar()
    request["project"]["scenes"][0]["clips"].append(
        {"type": "textImage", "fontSize": 1, "text": "x" * 1_000_000}
    )
    [line] = refusal(request)
    assert line.startswith("request: 1000")
    assert line.endswith(" bytes of JSON; at most 1000000 (GENQ_CAPS__MAX_REQUEST_BYTES)")


def test_the_bytes_counted_are_utf8_bytes() -> None:
    request = {**LIPSYNC, "tts": {"voice_id": "v", "script": "é" * 500}, "audio": None}
    text_bytes = len(validate(request, caps=Caps()).model_dump_json().encode())
    validate(request, caps=Caps(max_request_bytes=text_bytes))
    assert refusal(request, Caps(max_request_bytes=text_bytes - 1)) == [
        f"request: {text_bytes} bytes of JSON; at most {text_bytes - 1} (GENQ_CAPS__MAX_REQUEST_BYTES)"
    ]


@pytest.mark.slow
def test_the_issues_requests_are_refused_naming_each_field() -> None:
    """As filed: a 20 MB dictionary, 5,000 scenes, 300,000 bounding boxes."""
    dictionary = {f"entry{i}": "x" * 1_000_000 for i in range(20)}
    lines = refusal(avatar(dictionary=dictionary))
    assert [line.split(":")[0] for line in lines] == ["project.dictionary", "request"]
    lines = refusal(avatar(scenes=5_000))
    assert [line.split(":")[0] for line in lines] == ["project.scenes", "request"]
    options = {"active_speaker_detection": {"bounding_boxes": [[0, 0, 10, 10]] * 300_000}}
    lines = refusal({**LIPSYNC, "options": options})
    assert [line.split(":")[0] for line in lines] == [
        "options.active_speaker_detection.bounding_boxes",
        "request",
    ]
