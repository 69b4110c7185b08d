"""Cost estimates, the media library and the batch API of the sync.so simulator, over loopback HTTP."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from simulators.__main__ import build_parser, config_from_args
from simulators.syncso.config import SyncSoSimConfig
from tests.simulators.test_syncso_webhooks import Receiver, verified

VIDEO = {"type": "video", "url": "https://cdn.example.com/talk.mp4"}
AUDIO = {"type": "audio", "url": "https://cdn.example.com/voice.wav"}
TERMINAL = {"COMPLETED", "FAILED"}
BATCH_ID = re.compile(r"batch_[0-9a-f]{24}")
TRANSIENT_CODES = {
    "generation_timeout",
    "generation_pipeline_failed",
    "generation_unhandled_error",
    "generation_database_error",
    "generation_infra_storage_error",
    "generation_infra_resource_exhausted",
    "generation_infra_service_unavailable",
}


def body(**overrides: Any) -> dict[str, Any]:
    return {"model": "lipsync-2", "input": [VIDEO, AUDIO], **overrides}


def root(client: httpx.Client) -> str:
    """The server's base URL ending in "/", as the simulator writes it into URLs."""
    return str(client.base_url).rstrip("/") + "/"


def stats(control: httpx.Client) -> dict[str, Any]:
    return control.get("/_sim/stats").json()["syncso"]


def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# Cost estimates


def test_analyze_cost_answers_an_array_priced_from_segments_or_media_duration(api, control, configure):
    configure(media_duration_s=12.0)
    whole = api.post("/v2/analyze/cost", json=body())
    assert whole.status_code == 200
    assert whole.json() == [{"estimatedFrameCount": 300.0, "estimatedGenerationCost": 0.6}]  # 12 s x 0.05

    voice = {**AUDIO, "refId": "a1"}
    segments = [
        {"startTime": 0, "endTime": 2, "audioInput": {"refId": "a1"}},
        {"startTime": 4, "endTime": 7.5, "audioInput": {"refId": "a1"}},
    ]
    spans = api.post(
        "/v2/analyze/cost", json=body(model="lipsync-2-pro", input=[VIDEO, voice], segments=segments)
    )
    # 5.5 billed seconds at 25 fps, priced at lipsync-2-pro's 0.083 USD/s.
    assert spans.json() == [{"estimatedFrameCount": 137.5, "estimatedGenerationCost": 0.4565}]

    configure(price_per_s={"lipsync-2": 0.5})
    assert api.post("/v2/analyze/cost", json=body()).json()[0]["estimatedGenerationCost"] == 6.0
    counters = stats(control)
    assert counters["estimates"] == 3 and counters["requests"]["estimate"] == 3
    assert counters["generations_created"] == 0 and control.get("/_sim/syncso/generations").json() == []


@pytest.mark.parametrize(
    ("payload", "code", "fragment"),
    [
        (body(model="lipsync-9"), "generation_unsupported_model", "model must be one of"),
        ({"model": "lipsync-2", "input": [AUDIO]}, "generation_video_missing", "video"),
        (body(options={"temperature": 3}), "generation_input_validation_failed", "temperature"),
        (body(input=[{"type": "video", "assetId": "nope"}, AUDIO]), "generation_input_validation_failed",
         "input.0.assetId"),
    ],
)  # fmt: skip
def test_analyze_cost_validates_like_create(api, control, payload, code, fragment):
    response = api.post("/v2/analyze/cost", json=payload)
    assert response.status_code == 400
    error = response.json()
    assert error["errorCode"] == code and error["statusCode"] == 400
    assert any(fragment in message for message in error["message"]), error["message"]
    malformed = api.post("/v2/analyze/cost", content=b"{", headers={"content-type": "application/json"})
    assert malformed.status_code == 400
    assert stats(control)["estimates"] == 0


@pytest.mark.parametrize("path", ["/v2/generations/estimate", "/v2/generate/estimate-cost"])
def test_newer_estimate_takes_model_and_duration(api, control, path):
    default_fps = api.post(path, json={"model": "sync-3", "duration": 30})
    assert default_fps.status_code == 200
    assert default_fps.json() == {
        "estimatedFrameCount": 900.0,
        "estimatedGenerationCost": 3.99,
        "estimatedCredits": None,
    }
    at_24 = api.post(path, json={"model": "react-1", "duration": 2.5, "fps": 24, "reasoningEnabled": True})
    assert at_24.json() == {
        "estimatedFrameCount": 60.0,
        "estimatedGenerationCost": 0.25,
        "estimatedCredits": None,
    }

    for bad, fragment in [
        ({"duration": 3}, "model"),
        ({"model": "sync-3", "duration": 0}, "duration"),
        ({"model": "sync-3", "duration": 3, "fps": -1}, "fps"),
        ({"model": "sync-3", "duration": 3, "reasoningEnabled": "yes"}, "reasoningEnabled"),
        ({"model": "sync-3", "duration": 3, "size": 1}, "property size should not exist"),
    ]:
        refused = api.post(path, json=bad)
        assert refused.status_code == 400, bad
        assert any(fragment in message for message in refused.json()["message"]), refused.json()
    unknown = api.post(path, json={"model": "lipsync-9", "duration": 3})
    assert unknown.status_code == 422
    assert unknown.json()["errorCode"] == "cost_estimate_unavailable"
    assert stats(control)["estimates"] == 2


# Assets: upload tickets and the presigned PUT


def start_upload(api: httpx.Client, name: str, content_type: str, size: int) -> dict[str, Any]:
    response = api.post(
        "/v2/assets/upload", json={"fileName": name, "contentType": content_type, "size": size}
    )
    assert response.status_code == 201, response.text
    return response.json()


def put(url: str, content: bytes, content_type: str) -> httpx.Response:
    with httpx.Client() as anonymous:  # the presigned URL is the credential: no API key
        return anonymous.put(url, content=content, headers={"content-type": content_type})


def upload_asset(
    api: httpx.Client, name: str, content: bytes, kind: str, content_type: str
) -> dict[str, Any]:
    ticket = start_upload(api, name, content_type, len(content))
    assert put(ticket["uploadUrl"], content, content_type).status_code == 200
    created = api.post("/v2/assets", json={"url": ticket["url"], "type": kind})
    assert created.status_code == 201, created.text
    return created.json()


def test_upload_put_register_then_get(api, control):
    content = b"\x00\x01video-bytes"
    ticket = start_upload(api, "Talk Clip.MP4", "video/mp4", len(content))
    base = root(api)
    assert ticket["uploadUrl"].startswith(f"{base}_sim/syncso/uploads/")
    token = ticket["uploadUrl"].rsplit("/", 1)[1]
    assert ticket["url"] == f"{base}_sim/syncso/files/{token}/Talk%20Clip.MP4"
    assert ticket["expiresIn"] == 3600

    early = api.post("/v2/assets", json={"url": ticket["url"], "type": "VIDEO"})
    assert early.status_code == 400
    assert early.json()["message"] == f"the upload at {ticket['url']} has not completed"

    wrong_type = put(ticket["uploadUrl"], content, "application/octet-stream")
    assert wrong_type.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in wrong_type.text
    short = put(ticket["uploadUrl"], content[:-1], "video/mp4")
    assert short.status_code == 400 and "<Code>IncompleteBody</Code>" in short.text
    assert put(ticket["uploadUrl"], content + b"x", "video/mp4").status_code == 400
    assert put(f"{base}_sim/syncso/uploads/unknown-token", content, "video/mp4").status_code == 403

    first = put(ticket["uploadUrl"], b"A" * len(content), "video/mp4")
    done = put(ticket["uploadUrl"], content, "video/mp4")  # a second PUT replaces the first
    assert first.headers["etag"] == f'"{hashlib.sha256(b"A" * len(content)).hexdigest()}"'
    assert done.status_code == 200
    assert done.headers["etag"] == f'"{hashlib.sha256(content).hexdigest()}"'
    with httpx.Client() as anonymous:
        served = anonymous.get(ticket["url"]).json()
    assert served == {
        "fileName": "Talk Clip.MP4",
        "contentType": "video/mp4",
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
    }

    created = api.post("/v2/assets", json={"url": ticket["url"], "type": "VIDEO"})
    assert created.status_code == 201
    asset = created.json()
    uuid.UUID(asset["id"])
    assert datetime.fromisoformat(asset["createdAt"]) <= datetime.now(UTC)
    assert asset["updatedAt"] == asset["createdAt"]
    assert {k: v for k, v in asset.items() if k not in ("id", "createdAt", "updatedAt")} == {
        "name": "Talk Clip.MP4",
        "url": ticket["url"],
        "size": len(content),
        "format": "mp4",
        "type": "VIDEO",
        "inputType": "UPLOAD",
        "durationSeconds": 10.0,
        "thumbnailUrl": None,
        "visibility": "USER",
        "width": 1280,
        "height": 720,
    }
    assert api.get(f"/v2/assets/{asset['id']}").json() == asset
    counters = stats(control)
    assert (counters["uploads_completed"], counters["assets_created"]) == (2, 1)
    assert counters["requests"]["asset_put"] == 6 and counters["requests"]["asset_create"] == 2


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"fileName": "a.mp4", "contentType": "video/mp4", "size": 5 * 1024**3 + 1},
         "size must not be greater than 5368709120"),
        ({"fileName": "a.mp4", "contentType": "video/mp4", "size": 0}, "size must not be less than 1"),
        ({"fileName": "a.mp4", "contentType": "video/mp4", "size": "12"}, "size must be an integer number"),
        ({"fileName": "", "contentType": "video/mp4", "size": 1}, "fileName should not be empty"),
        ({"fileName": "a.mp4", "size": 1}, "contentType must be a string"),
        ({"fileName": "a.mp4", "contentType": "video/mp4", "size": 1, "bucket": "x"},
         "property bucket should not exist"),
    ],
)  # fmt: skip
def test_upload_ticket_validation(api, payload, fragment):
    response = api.post("/v2/assets/upload", json=payload)
    assert response.status_code == 400
    assert fragment in response.json()["message"]


def test_register_url_assets_and_refusals(api, control, configure):
    audio = api.post("/v2/assets", json={"url": "https://cdn.example.com/media/voice.WAV", "type": "AUDIO"})
    assert audio.status_code == 201
    got = audio.json()
    assert (got["inputType"], got["name"], got["format"], got["size"]) == ("URL", "voice.WAV", "wav", None)
    assert (got["durationSeconds"], got["width"], got["height"]) == (10.0, None, None)
    image = api.post(
        "/v2/assets",
        json={
            "url": "https://cdn.example.com/p.png",
            "type": "IMAGE",
            "name": "Poster",
            "visibility": "ORGANIZATION",
        },
    ).json()
    assert (image["name"], image["format"], image["visibility"]) == ("Poster", "png", "ORGANIZATION")
    assert (image["durationSeconds"], image["width"], image["height"]) == (None, 1280, 720)

    project = api.post(
        "/v2/assets", json={"url": VIDEO["url"], "type": "VIDEO", "projectId": str(uuid.uuid4())}
    )
    assert project.status_code == 422 and project.json()["errorCode"] == "project_not_found"
    for bad in (
        {"url": VIDEO["url"], "type": "video"},
        {"url": "not a url", "type": "VIDEO"},
        {"type": "VIDEO"},
        {"url": VIDEO["url"], "type": "VIDEO", "visibility": "PUBLIC"},
    ):
        assert api.post("/v2/assets", json=bad).status_code == 400, bad

    configure(asset_max_bytes=10)
    ticket = start_upload(api, "big.wav", "audio/wav", 11)
    assert put(ticket["uploadUrl"], b"a" * 11, "audio/wav").status_code == 200
    too_big = api.post("/v2/assets", json={"url": ticket["url"], "type": "AUDIO"})
    assert too_big.status_code == 422 and too_big.json()["errorCode"] == "file_size_exceeds_plan_limit"
    assert stats(control)["assets_created"] == 2


def test_get_unknown_asset_is_404(api):
    response = api.get(f"/v2/assets/{uuid.uuid4()}")
    assert response.status_code == 404 and response.json()["statusCode"] == 404


# Assets: listing


@pytest.fixture
def library(api: httpx.Client) -> list[dict[str, Any]]:
    """Seven assets in creation order: names, types, sizes and durations that sort differently."""
    made = [
        upload_asset(api, "delta.mp4", b"d" * 40, "VIDEO", "video/mp4"),
        upload_asset(api, "Alpha.wav", b"a" * 10, "AUDIO", "audio/wav"),
        upload_asset(api, "charlie.png", b"c" * 30, "IMAGE", "image/png"),
    ]
    for name, kind in [
        ("bravo.mp3", "AUDIO"),
        ("echo.mov", "VIDEO"),
        ("foxtrot.jpg", "IMAGE"),
        ("alpha-2.mp4", "VIDEO"),
    ]:
        response = api.post("/v2/assets", json={"url": f"https://cdn.example.com/{name}", "type": kind})
        made.append(response.json())
    return made


def page(api: httpx.Client, params: Any) -> dict[str, Any]:
    response = api.get("/v2/assets", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def names(params: Any, api: httpx.Client) -> list[str]:
    return [a["name"] for a in page(api, params)["items"]]


def test_limit_and_cursor_walk_every_asset_once_newest_first(api, library):
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        got = page(api, params)
        assert got["totalCount"] == 7
        seen += [a["id"] for a in got["items"]]
        pages += 1
        cursor = got["nextCursor"]
        if cursor is None:
            break
        assert cursor == got["items"][-1]["id"]
    assert pages == 3
    assert seen == [a["id"] for a in reversed(library)]  # default sortBy dateDesc
    default = page(api, {})
    assert len(default["items"]) == 7 and default["nextCursor"] is None


def test_search_types_and_sort(api, library):
    assert names({"searchQuery": "ALPHA"}, api) == ["alpha-2.mp4", "Alpha.wav"]
    assert names({"types": "AUDIO,IMAGE", "sortBy": "nameAsc"}, api) == [
        "Alpha.wav",
        "bravo.mp3",
        "charlie.png",
        "foxtrot.jpg",
    ]
    assert names([("types", "IMAGE"), ("types", "AUDIO"), ("sortBy", "nameDesc")], api) == [
        "foxtrot.jpg",
        "charlie.png",
        "bravo.mp3",
        "Alpha.wav",
    ]
    # URL assets have no size: they come last, in creation order.
    assert names({"sortBy": "sizeAsc"}, api)[:3] == ["Alpha.wav", "charlie.png", "delta.mp4"]
    assert names({"sortBy": "sizeDesc"}, api) == [
        "delta.mp4", "charlie.png", "Alpha.wav", "bravo.mp3", "echo.mov", "foxtrot.jpg", "alpha-2.mp4",
    ]  # fmt: skip
    assert names({"sortBy": "kindAsc"}, api) == [
        "Alpha.wav", "bravo.mp3", "charlie.png", "foxtrot.jpg", "delta.mp4", "echo.mov", "alpha-2.mp4",
    ]  # fmt: skip
    assert names({"sortBy": "durationDesc"}, api)[-2:] == ["charlie.png", "foxtrot.jpg"]  # images: none
    assert names({"sortBy": "dateAsc", "limit": 2}, api) == ["delta.mp4", "Alpha.wav"]
    filtered = page(api, {"types": "VIDEO", "limit": 2})
    assert filtered["totalCount"] == 3 and filtered["nextCursor"] == filtered["items"][1]["id"]
    assert page(api, {"projectId": str(uuid.uuid4())}) == {"items": [], "nextCursor": None, "totalCount": 0}

    for bad in (
        {"sortBy": "newest"},
        {"types": "AUDIO,TEXT"},
        {"limit": 0},
        {"limit": 101},
        {"cursor": str(uuid.uuid4())},
        {"cursor": library[1]["id"], "types": "VIDEO"},  # not among these results
        {"projectId": "project-1"},
    ):
        assert api.get("/v2/assets", params=bad).status_code == 400, bad


# Assets referenced by generations


def test_asset_ids_are_checked_at_create_and_estimate(api, control):
    voice = api.post("/v2/assets", json={"url": AUDIO["url"], "type": "AUDIO"}).json()
    unknown = str(uuid.uuid4())
    for items, fragment in [
        ([{"type": "video", "assetId": unknown}, AUDIO], "input.0.assetId"),
        ([VIDEO, {"type": "audio", "assetId": unknown}], "input.1.assetId"),
        ([{"type": "video", "assetId": voice["id"]}, AUDIO], "input.0.assetId"),  # an AUDIO asset
    ]:
        for path in ("/v2/generate", "/v2/analyze/cost"):
            refused = api.post(path, json=body(input=items))
            assert refused.status_code == 400
            assert refused.json()["errorCode"] == "generation_input_validation_failed"
            assert any(fragment in m for m in refused.json()["message"]), refused.json()
    created = api.post("/v2/generate", json=body(input=[VIDEO, {"type": "audio", "assetId": voice["id"]}]))
    assert created.status_code == 201
    assert created.json()["input"][1] == {"type": "audio", "assetId": voice["id"]}
    assert stats(control)["generations_created"] == 1


def test_multipart_files_become_listed_assets(api, control):
    data = {"model": "lipsync-2", "input": json.dumps([AUDIO])}
    files = {"video": ("talk.mp4", b"\x00video-bytes", "video/mp4")}
    generation = api.post("/v2/generate", data=data, files=files).json()
    assert generation["input"][0] == AUDIO
    asset_id = generation["input"][1]["assetId"]  # a file without an input item of its type is appended
    listed = page(api, {})["items"]
    assert [a["id"] for a in listed] == [asset_id]
    asset = api.get(f"/v2/assets/{asset_id}").json()
    assert (asset["type"], asset["inputType"], asset["name"]) == ("VIDEO", "UPLOAD", "talk.mp4")
    assert (asset["size"], asset["format"]) == (len(b"\x00video-bytes"), "mp4")

    again = api.post("/v2/generate", data=data, files=files).json()  # same bytes: the same asset
    assert again["input"][1]["assetId"] == asset_id and again["id"] != generation["id"]
    by_reference = api.post("/v2/generate", json=body(input=[{"type": "video", "assetId": asset_id}, AUDIO]))
    assert by_reference.status_code == 201
    assert stats(control)["assets_created"] == 1


# Batches: validation


def record(i: int, **overrides: Any) -> dict[str, Any]:
    return {"request_id": f"r-{i:02d}", "endpoint": "/v2/generate", "payload": body(), **overrides}


def jsonl(records: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def post_batch(
    api: httpx.Client, content: bytes, *, dry_run: str | None = None, field: str = "input", **data: str
) -> httpx.Response:
    form = data | ({"dry_run": dry_run} if dry_run is not None else {})
    return api.post("/v2/batch", files={field: ("batch.jsonl", content, "application/jsonl")}, data=form)


@pytest.fixture
def scale(configure: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """`configure` on the scale plan, the only one allowed batches."""
    configure(plan="scale")
    return configure


RECORDS = [record(i) for i in range(20)]


def test_batch_needs_the_scale_plan(api, control):
    refused = post_batch(api, jsonl(RECORDS))
    assert refused.status_code == 402
    assert refused.json()["errorCode"] == "batch_plan_required"
    assert stats(control)["batches_created"] == 0


def test_dry_run_validates_and_creates_nothing(api, control, scale):
    records = [*RECORDS[:19], record(19, metadata={"clip": 19})]  # other record keys are ignored
    validated = post_batch(api, jsonl(records), dry_run="true", field="file")
    assert validated.status_code == 200
    assert validated.json() == {"status": "VALIDATED"}
    counters = stats(control)
    assert (counters["batches_validated"], counters["batches_created"], counters["batch_generations"]) == (
        1,
        0,
        0,
    )
    assert api.get("/v2/batch").json() == []
    assert control.get("/_sim/syncso/generations").json() == []


def _with_line(records: list[dict[str, Any]], index: int, line: bytes) -> bytes:
    lines = jsonl(records).splitlines(keepends=True)
    lines[index] = line + b"\n"
    return b"".join(lines)


@pytest.mark.parametrize(
    "case",
    [
        (jsonl(RECORDS[:19]), "batch_insufficient_records", "has 19 records"),
        (jsonl([*RECORDS, *(record(i) for i in range(20, 26))]), "batch_too_many_requests", "at most 25"),
        (jsonl([*RECORDS[:19], record(3)]), "batch_duplicate_request_id", "request_id r-03 repeats line 4"),
        (jsonl([*RECORDS[:19], record(19, endpoint="/v2/tts")]), "batch_invalid_endpoint", "line 20"),
        (_with_line(RECORDS, 5, b'{"request_id": "r-05",'), "batch_invalid_jsonl", "line 6: not valid JSON"),
        (_with_line(RECORDS, 0, b"[1, 2]"), "batch_invalid_jsonl", "line 1: must be a JSON object"),
        (jsonl([*RECORDS[:19], record(19, payload=body(model="lipsync-9"))]),
         "generation_input_validation_failed", "line 20 (request_id r-19): model must be one of"),
        (jsonl([*RECORDS[:19], record(19, payload=body(input=[{"type": "video", "assetId": "x"}, AUDIO]))]),
         "generation_input_validation_failed", "line 20 (request_id r-19): input.0.assetId"),
    ],
    ids=lambda case: case[1],
)  # fmt: skip
def test_batch_file_refusals(api, control, scale, case):
    content, code, fragment = case
    scale(batch_max_records=25)
    refused = post_batch(api, content, dry_run="true")
    assert refused.status_code == 400
    error = refused.json()
    assert error["errorCode"] == code
    assert any(fragment in message for message in error["message"]), error["message"]
    assert post_batch(api, content).json()["errorCode"] == code  # not only in dry runs
    assert stats(control)["batches_validated"] == 0 and stats(control)["batches_created"] == 0


def test_batch_reports_every_problem_with_the_first_batch_code(api, scale):
    content = jsonl([*RECORDS[:18], record(2, endpoint="/v2/other"), record(18, payload=body(model="x"))])
    error = post_batch(api, content, webhook_url="not-a-url").json()
    assert error["errorCode"] == "batch_duplicate_request_id"
    assert error["message"] == [
        "webhook_url must be a URL address",
        "line 19: request_id r-02 repeats line 3",
        "line 20 (request_id r-18): model must be one of the following values: "
        "lipsync-2, lipsync-1.9.0-beta, lipsync-2-pro, react-1, sync-3",
    ]


def test_batch_file_size_and_form_refusals(api, scale):
    scale(batch_max_file_bytes=1000)
    too_big = post_batch(api, jsonl(RECORDS))
    assert too_big.status_code == 400 and too_big.json()["errorCode"] == "batch_file_too_large"
    missing = api.post("/v2/batch", data={"dry_run": "true"}, files={"other": ("x.txt", b"x")})
    assert missing.status_code == 400 and missing.json()["errorCode"] == "batch_invalid_jsonl"
    not_multipart = api.post("/v2/batch", json={"input": "x"})
    assert not_multipart.status_code == 400 and not_multipart.json()["errorCode"] == "batch_invalid_jsonl"
    scale(batch_max_file_bytes=5 * 1024 * 1024)
    bad_flag = post_batch(api, jsonl(RECORDS), dry_run="maybe")
    assert bad_flag.status_code == 400 and bad_flag.json()["message"] == ["dry_run must be a boolean value"]


# Batches: lifecycle


def wait_batch(api: httpx.Client, batch_id: str, timeout_s: float = 5.0) -> dict[str, Any]:
    got: dict[str, Any] = {}

    def ended() -> bool:
        got.update(api.get(f"/v2/batch/{batch_id}").json())
        return got["status"] in TERMINAL

    until(ended, timeout_s)
    return got


def create_batch(api: httpx.Client, records: list[dict[str, Any]] = RECORDS, **data: str) -> dict[str, Any]:
    response = post_batch(api, jsonl(records), **data)
    assert response.status_code == 201, response.text
    return response.json()


def test_batch_lifecycle_from_pending_to_completed(api, control, scale):
    scale(batch_pending_s=0.15, pending_s=0.15, processing_s=0.2)  # phases 10 ms polling sees
    created = create_batch(api)
    assert BATCH_ID.fullmatch(created["id"])
    assert abs(datetime.fromisoformat(created["created_at"]).timestamp() - time.time()) < 2
    assert created["status"] == "PENDING"
    assert created["metrics"] == {
        "total_generations": 20,
        "success_count": 0,
        "failed_count": 0,
        "pending_count": 20,
    }
    assert created["webhookUrl"] is None
    assert created["outputUrl"] == f"{root(api)}v2/batch/{created['id']}/output"

    (lifecycle,) = control.get("/_sim/syncso/batches").json()
    assert lifecycle["request_ids"] == [r["request_id"] for r in RECORDS]
    first_generation = lifecycle["generation_ids"][0]
    assert api.get(f"/v2/generate/{first_generation}").status_code == 404  # jobs not created yet
    assert api.get("/v2/generations").json() == []

    seen = [created["status"]]
    deadline = time.monotonic() + 5
    while seen[-1] not in TERMINAL:
        assert time.monotonic() < deadline
        seen.append(api.get(f"/v2/batch/{created['id']}").json()["status"])
        time.sleep(0.01)
    assert [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s] == [
        "PENDING",
        "JOBS_CREATED",
        "PROCESSING",
        "COMPLETED",
    ]
    done = api.get(f"/v2/batch/{created['id']}").json()
    assert done["metrics"] == {
        "total_generations": 20,
        "success_count": 20,
        "failed_count": 0,
        "pending_count": 0,
    }
    assert done["created_at"] == created["created_at"]

    listed = api.get("/v2/generations").json()
    assert {g["id"] for g in listed} == set(lifecycle["generation_ids"])
    assert {g["status"] for g in listed} == {"COMPLETED"}
    counters = stats(control)
    assert (counters["batches_created"], counters["batch_generations"], counters["generations_created"]) == (
        1,
        20,
        0,
    )
    assert counters["batches_by_status"]["COMPLETED"] == 1 and counters["peak_batches_in_flight"] == 1
    assert counters["peak_in_flight"] == 0  # batch generations skip the generation concurrency count
    assert counters["requests"]["batch_create"] == 1


def test_batch_generations_do_not_count_against_generation_concurrency(api, control, scale):
    scale(concurrency=1, batch_pending_s=0, processing_s=1.0)
    batch = create_batch(api)
    until(lambda: api.get(f"/v2/batch/{batch['id']}").json()["status"] == "PROCESSING")
    processing = api.get("/v2/generations", params={"status": "PROCESSING"}).json()
    assert len(processing) == 20
    assert api.post("/v2/generate", json=body()).status_code == 201  # room for one, batch or not
    limited = api.post("/v2/generate", json=body())
    assert limited.status_code == 429 and limited.json()["errorCode"] == "concurrency_limit_reached"
    assert stats(control)["in_flight"] == 1


def test_batch_concurrency_limit(api, control, scale):
    scale(batch_pending_s=0.05, processing_s=0.5)
    first = create_batch(api)
    refused = post_batch(api, jsonl(RECORDS))
    assert refused.status_code == 429
    assert refused.json() == {
        "statusCode": 429,
        "message": "Batch concurrency limit reached. "
        "Please wait for an existing batch to complete or upgrade your plan",
        "error": "Too Many Requests",
        "errorCode": "concurrency_limit_reached",
    }
    assert "Retry-After" not in refused.headers
    assert post_batch(api, jsonl(RECORDS), dry_run="true").status_code == 200  # a dry run is no batch
    wait_batch(api, first["id"])
    assert post_batch(api, jsonl(RECORDS)).status_code == 201
    scale(batch_concurrency=3)
    assert post_batch(api, jsonl(RECORDS)).status_code == 201
    counters = stats(control)
    assert counters["throttled"]["concurrency_limit_reached"] == 1
    assert counters["batches_created"] == 3 and counters["peak_batches_in_flight"] == 2


def test_batch_list_is_newest_first_with_filters(api, scale):
    scale(batch_concurrency=3, processing_s=5.0)
    older = create_batch(api)
    time.sleep(0.05)
    between = datetime.now(UTC).isoformat()
    time.sleep(0.05)
    newer = create_batch(api)

    def listed(params: Any) -> list[str]:
        response = api.get("/v2/batch", params=params)
        assert response.status_code == 200, response.text
        return [b["id"] for b in response.json()]

    assert listed({}) == [newer["id"], older["id"]]
    assert listed({"created_after": between}) == [newer["id"]]
    assert listed({"created_before": between.replace("+00:00", "Z")}) == [older["id"]]
    assert listed({"status": "PENDING"}) == [newer["id"], older["id"]]
    assert listed({"status": "COMPLETED"}) == []
    assert api.get(f"/v2/batch/{older['id']}").json()["id"] == older["id"]
    assert api.get("/v2/batch/batch_000000000000000000000000").status_code == 404
    for bad in ({"created_after": "yesterday"}, {"status": "DONE"}):
        assert api.get("/v2/batch", params=bad).status_code == 400


# Batches: results


def results(api: httpx.Client, batch_id: str) -> tuple[httpx.URL, list[dict[str, Any]]]:
    redirect = api.get(f"/v2/batch/{batch_id}/output", follow_redirects=False)
    assert redirect.status_code == 302
    location = httpx.URL(redirect.headers["location"])
    with httpx.Client() as anonymous:  # signed URL: no API key
        served = anonymous.get(location)
    assert served.status_code == 200
    assert served.headers["content-type"] == "application/x-ndjson"
    return location, [json.loads(line) for line in served.text.splitlines()]


def test_output_is_404_until_the_end_then_a_signed_jsonl(api, control, scale):
    scale(batch_pending_s=0.05, processing_s=0.1)
    records = [record(i, request_id=f"clip-{19 - i}") for i in range(20)]
    batch = create_batch(api, records)
    early = api.get(f"/v2/batch/{batch['id']}/output", follow_redirects=False)
    assert early.status_code == 404 and early.json()["message"] == "Batch results are not available yet"
    assert api.get("/v2/batch/batch_000000000000000000000000/output").status_code == 404
    wait_batch(api, batch["id"])

    location, rows = results(api, batch["id"])
    assert location.path == f"/_sim/syncso/batches/{batch['id']}/results.jsonl"
    (lifecycle,) = control.get("/_sim/syncso/batches").json()
    assert [r["request_id"] for r in rows] == [f"clip-{19 - i}" for i in range(20)]  # file order
    assert [r["generation_id"] for r in rows] == lifecycle["generation_ids"]
    assert {(r["status"], r["error"], r["error_code"]) for r in rows} == {("COMPLETED", None, None)}
    with httpx.Client() as anonymous:
        output = anonymous.get(rows[0]["output_url"])
        assert output.status_code == 200 and output.headers["content-type"] == "video/mp4"
        for bad in (
            location.copy_set_param("signature", "0" * 64),
            location.copy_set_param("expires", str(int(time.time()) - 10)),
            location.copy_with(query=None),
        ):
            assert anonymous.get(bad).status_code == 403
    assert stats(control)["requests"]["batch_results"] == 4


def test_all_failed_generations_fail_the_batch_with_failed_rows(api, scale):
    scale(batch_pending_s=0.05, fail_share=1.0, seed=7)
    batch = create_batch(api)
    done = wait_batch(api, batch["id"])
    assert done["status"] == "FAILED"
    assert done["metrics"] == {
        "total_generations": 20,
        "success_count": 0,
        "failed_count": 20,
        "pending_count": 0,
    }
    _, rows = results(api, batch["id"])
    assert {r["status"] for r in rows} == {"FAILED"}
    assert all(r["error_code"] in TRANSIENT_CODES and r["error"] and r["output_url"] is None for r in rows)


def test_one_completed_generation_completes_the_batch(api, control, scale):
    scale(batch_pending_s=0.05)
    control.post("/_sim/faults", json={"route": "syncso.outcome", "status": "REJECTED", "times": 19})
    batch = create_batch(api)
    done = wait_batch(api, batch["id"])
    assert done["status"] == "COMPLETED"
    assert done["metrics"] == {
        "total_generations": 20,
        "success_count": 1,
        "failed_count": 19,
        "pending_count": 0,
    }
    _, rows = results(api, batch["id"])
    assert [r["status"] for r in rows] == ["REJECTED"] * 19 + ["COMPLETED"]


def test_response_delay_holds_the_answer_but_the_batch_already_exists(api, control, scale):
    scale(batch_response_delay_s=1.0)
    answer: list[httpx.Response] = []
    started = time.monotonic()
    with httpx.Client(base_url=str(api.base_url), headers=dict(api.headers), timeout=10) as own:
        poster = threading.Thread(target=lambda: answer.append(post_batch(own, jsonl(RECORDS))))
        poster.start()
        until(lambda: len(control.get("/_sim/syncso/batches").json()) == 1, 0.5)
        (existing,) = control.get("/_sim/syncso/batches").json()
        assert [b["id"] for b in api.get("/v2/batch").json()] == [existing["id"]]  # found by listing
        assert answer == []  # the batch exists before its creator hears of it
        poster.join(5)
    assert time.monotonic() - started >= 1.0
    (response,) = answer
    assert response.status_code == 201 and response.json()["id"] == existing["id"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def test_batch_webhook_posts_the_ended_batch_once(api, control, scale, receiver):
    scale(batch_pending_s=0.05, webhook_secret="whsec_test_5f1c0ffee")
    batch = create_batch(api, webhook_url=receiver.url)
    assert batch["webhookUrl"] == receiver.url
    (delivery,) = receiver.wait(1)
    payload = verified(delivery)
    assert payload == api.get(f"/v2/batch/{batch['id']}").json()
    assert payload["status"] == "COMPLETED" and payload["metrics"]["success_count"] == 20
    time.sleep(0.2)
    assert len(receiver.deliveries) == 1


# Limits, faults, CLI


def test_upload_tickets_have_their_own_rate_window(api, control, configure):
    configure(upload_rate_limit=2, other_rate_limit=3, rate_window_s=30)
    tickets = [start_upload(api, f"{i}.wav", "audio/wav", 1) for i in range(2)]
    limited = api.post("/v2/assets/upload", json={"fileName": "x.wav", "contentType": "audio/wav", "size": 1})
    assert limited.status_code == 429 and limited.json()["errorCode"] == "rate_limit_exceeded"
    for ticket in tickets:  # the presigned PUT is not rate-limited
        assert put(ticket["uploadUrl"], b"a", "audio/wav").status_code == 200
    statuses = [api.get(path).status_code for path in ("/v2/assets", "/v2/batch", "/v2/models", "/v2/assets")]
    assert statuses == [200, 200, 200, 429]  # the other routes share one window
    assert stats(control)["throttled"]["rate_limit_exceeded"] == 2


def test_new_routes_take_injected_faults(api, control, scale):
    for route in ("batch_create", "asset_put", "estimate"):
        queued = control.post("/_sim/faults", json={"route": f"syncso.{route}", "status": 503})
        assert queued.status_code == 201
    assert post_batch(api, jsonl(RECORDS)).status_code == 503
    ticket = start_upload(api, "a.wav", "audio/wav", 1)
    assert put(ticket["uploadUrl"], b"a", "audio/wav").status_code == 503
    assert put(ticket["uploadUrl"], b"a", "audio/wav").status_code == 200
    assert api.post("/v2/generations/estimate", json={"model": "sync-3", "duration": 1}).status_code == 503
    assert stats(control)["batches_created"] == 0


def test_cli_flags_for_batches_and_assets():
    flags = ["--syncso-media-duration-s", "7.5", "--syncso-batch-concurrency", "2"]
    flags += ["--syncso-batch-pending-s", "0.5", "--syncso-batch-response-delay-s", "1.5"]
    flags += ["--syncso-upload-rate-limit", "30"]
    config = config_from_args(build_parser().parse_args(flags))
    assert config.syncso == SyncSoSimConfig(
        media_duration_s=7.5,
        batch_concurrency=2,
        batch_pending_s=0.5,
        batch_response_delay_s=1.5,
        upload_rate_limit=30,
    )
