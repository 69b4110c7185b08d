"""The lipsync request's inputs (URLs, local files, ``asset:<id>``, image, tracks and segments, the
older options, the cost cap) and their sync.so wire form."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from producers import InvalidRequest, validate
from schemas import LipsyncBatchRequest, LipsyncRequest
from schemas.lipsync_wire import LocalFileUnresolved, batch_file, generation_body

BASE = {
    "kind": "lipsync",
    "model": "lipsync-2",
    "video": "https://x.test/v.mp4",
    "audio": "https://x.test/a.wav",
}
TRACKS = {
    "audio": None,
    "tracks": [
        {"ref_id": "intro", "audio": "asset:4f1c-aa"},
        {"ref_id": "outro", "tts": {"voice_id": "v1", "script": "Bye now."}},
    ],
    "segments": [
        {"start_time": 0, "end_time": 2.5, "audio_input": {"ref_id": "intro"}},
        {
            "start_time": 2.5,
            "end_time": 4,
            "audio_input": {"ref_id": "outro", "start_time": 0, "end_time": 1.5},
        },
    ],
}


def lipsync(**changes: object) -> LipsyncRequest:
    request = validate({**BASE, **changes}, check_files=False)
    assert isinstance(request, LipsyncRequest)
    return request


@pytest.mark.parametrize(
    "changes",
    [
        {"video": "asset:550e8400-e29b-41d4-a716-446655440000"},
        {"model": "sync-3", "video": None, "image": "https://x.test/face.png"},
        TRACKS,
        {
            "options": {
                "pads": [0, 5, 0, 0],
                "speedup": 2,
                "output_format": "mov",
                "fps": 25,
                "output_resolution": [1280, 720],
                "active_speaker": True,
            }
        },
        {"options": {"active_speaker_detection": {"bounding_boxes_url": "https://x.test/boxes.json"}}},
        {"max_cost_usd": 0.5},
    ],
)
def test_valid_inputs(changes: dict[str, object]) -> None:
    lipsync(**changes)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"video": "asset:"}, "video: Value error, an asset input is 'asset:<id>'"),
        ({"video": "asset:a/b"}, "video: Value error, an asset input is 'asset:<id>'"),
        ({"image": "https://x.test/face.png"}, "give exactly one of video or image"),
        ({"video": None, "image": "https://x.test/face.png"}, "image input is only accepted by sync-3"),
        (
            {"tracks": TRACKS["tracks"], "segments": TRACKS["segments"]},
            "give exactly one of audio, tts or tracks",
        ),
        ({"audio": None, "tracks": TRACKS["tracks"]}, "tracks and segments go together"),
        ({"segments": TRACKS["segments"]}, "tracks and segments go together"),
        (
            {**TRACKS, "segments": [{"start_time": 0, "end_time": 1, "audio_input": {"ref_id": "nope"}}]},
            "segments.0.audio_input.ref_id: no track has ref_id 'nope'",
        ),
        (
            {
                **TRACKS,
                "segments": [
                    {"start_time": 0, "end_time": 3, "audio_input": {"ref_id": "intro"}},
                    {"start_time": 2, "end_time": 4, "audio_input": {"ref_id": "outro"}},
                ],
            },
            "segments.0 and segments.1 overlap",
        ),
        (
            {
                **TRACKS,
                "tracks": [
                    {"ref_id": "intro", "audio": "https://x.test/1.wav"},
                    {"ref_id": "intro", "audio": "https://x.test/2.wav"},
                ],
            },
            "tracks: ref_id intro is used twice",
        ),
        (
            {**TRACKS, "segments": [{"start_time": 3, "end_time": 1, "audio_input": {"ref_id": "intro"}}]},
            "segments.0: Value error, start_time must be before end_time",
        ),
        (
            {
                **TRACKS,
                "segments": [
                    {"start_time": 0, "end_time": 1, "audio_input": {"ref_id": "intro", "start_time": 1}}
                ],
            },
            "segments.0.audio_input: Value error, start_time and end_time must be given together",
        ),
        ({"options": {"pads": [0, -1, 0, 0]}}, "pads must not be negative"),
        ({"options": {"speedup": 5}}, "options.speedup: Input should be 1, 2, 3 or 4"),
        ({"options": {"output_format": "avi"}}, "options.output_format: Input should be 'mp4' or 'mov'"),
        ({"max_cost_usd": 0}, "max_cost_usd: Input should be greater than 0"),
        (
            {
                "options": {
                    "active_speaker_detection": {
                        "frame_number": 1,
                        "coordinates": [1, 2],
                        "bounding_boxes_url": "https://x.test/b.json",
                    }
                }
            },
            "give one of frame_number with coordinates, bounding_boxes or bounding_boxes_url",
        ),
    ],
)
def test_broken_sync_so_rules_are_refused_at_submit_naming_the_field(
    changes: dict[str, object], problem: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate({**BASE, **changes}, check_files=False)
    assert any(problem in line for line in caught.value.problems), caught.value.problems


def test_a_local_file_over_the_providers_limit_is_refused_at_submit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x" * 11)
    monkeypatch.setattr(LipsyncRequest, "max_local_file_bytes", 10)
    with pytest.raises(InvalidRequest) as caught:
        validate({**BASE, "video": str(video)})
    assert caught.value.problems == [
        f"video: {video} is 11 bytes; the provider takes files of at most 10 bytes"
    ]


def test_a_batch_record_cannot_be_submitted() -> None:
    with pytest.raises(InvalidRequest) as from_json:
        validate({"kind": "lipsync_batch", "jobs": ["a"] * 20, "request_ids": [str(i) for i in range(20)]})
    assert from_json.value.problems == ["kind: 'lipsync_batch' is made by genq and cannot be submitted"]
    built = LipsyncBatchRequest(jobs=[f"{i:x}" for i in range(20)], request_ids=[str(i) for i in range(20)])
    with pytest.raises(InvalidRequest) as from_model:
        validate(built)
    assert from_model.value.problems == ["kind: 'lipsync_batch' is made by genq and cannot be submitted"]


def test_wire_body_of_urls_assets_tracks_and_segments() -> None:
    body, files = generation_body(lipsync(**TRACKS, video="asset:v-1", output_file_name="out_1"))
    assert files == {}
    assert body == {
        "model": "lipsync-2",
        "input": [
            {"type": "video", "assetId": "v-1"},
            {"type": "audio", "assetId": "4f1c-aa", "refId": "intro"},
            {"type": "text", "provider": {"name": "elevenlabs", "voiceId": "v1", "script": "Bye now."},
             "refId": "outro"},
        ],
        "segments": [
            {"startTime": 0.0, "endTime": 2.5, "audioInput": {"refId": "intro"}},
            {
                "startTime": 2.5,
                "endTime": 4.0,
                "audioInput": {"refId": "outro", "startTime": 0.0, "endTime": 1.5},
            },
        ],
        "outputFileName": "out_1",
    }  # fmt: skip


def test_wire_body_sends_local_files_as_parts_or_by_their_uploaded_asset() -> None:
    request = lipsync(video="/data/v.mp4", audio="/data/a.wav", options={"sync_mode": "loop"})
    body, files = generation_body(request, assets={"video": "asset-v"}, direct=["audio"])
    assert body == {
        "model": "lipsync-2",
        "input": [{"type": "video", "assetId": "asset-v"}],
        "options": {"sync_mode": "loop"},
    }
    assert files == {"audio": "/data/a.wav"}
    with pytest.raises(LocalFileUnresolved, match=r"video: the local file /data/v\.mp4 was not uploaded"):
        generation_body(request, direct=["audio"])


def test_batch_file_is_one_generate_record_per_line_in_order() -> None:
    rows = [(f"r{i}", lipsync(video=f"https://x.test/{i}.mp4")) for i in range(3)]
    lines = batch_file(rows).decode().splitlines()
    assert [json.loads(line)["request_id"] for line in lines] == ["r0", "r1", "r2"]
    first = json.loads(lines[0])
    assert first["endpoint"] == "/v2/generate"
    assert first["payload"]["input"][0] == {"type": "video", "url": "https://x.test/0.mp4"}
