"""The sync.so v2 simulator over real loopback HTTP (fixtures in conftest.py)."""

from __future__ import annotations

import hashlib
import json
import struct
import threading
import time
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest

from simulators.__main__ import build_parser, config_from_args
from simulators.config import SimConfig
from simulators.server import SimulatorServer
from simulators.syncso.config import SyncSoSimConfig

VIDEO = {"type": "video", "url": "https://cdn.example.com/talk.mp4"}
AUDIO = {"type": "audio", "url": "https://cdn.example.com/voice.wav"}
TERMINAL = {"COMPLETED", "FAILED", "REJECTED"}
FTYP_BOX = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isommp42"


def body(**overrides: Any) -> dict[str, Any]:
    return {"model": "lipsync-2", "input": [VIDEO, AUDIO], **overrides}


def create(api: httpx.Client, payload: dict[str, Any] | None = None, **headers: str) -> httpx.Response:
    return api.post("/v2/generate", json=payload or body(), headers=headers)


def wait_terminal(api: httpx.Client, gen_id: str) -> dict[str, Any]:
    response = api.get(f"/v2/generate/{gen_id}", params={"wait": "true", "timeout": "5"})
    assert response.status_code == 200
    assert response.json()["status"] in TERMINAL
    return response.json()


def stats(control: httpx.Client) -> dict[str, Any]:
    return control.get("/_sim/stats").json()["syncso"]


def expected_output(gen_id: str, size: int, lines: list[str]) -> bytes:
    """The documented output (simulators/syncso/output.py): an ftyp box, a free box holding the manifest
    (the generation, then one line per input), then 64 KiB blocks of shake_256 seeded by both boxes."""
    text = ("\n".join([f"genq-sim sync.so generation {gen_id}", *lines]) + "\n").encode()
    head = FTYP_BOX + struct.pack(">I", 8 + len(text)) + b"free" + text
    seed, rest = hashlib.sha256(head).hexdigest(), max(size - len(head), 0)
    blocks = range(0, rest, 64 * 1024)
    filler = b"".join(
        hashlib.shake_256(f"{seed}:{i}".encode()).digest(min(64 * 1024, rest - start))
        for i, start in enumerate(blocks)
    )
    return (head + filler)[:size]


def url_line(field: str, url: str) -> str:
    """The manifest line of an input known by its URL only."""
    return f"{field} url-sha256={hashlib.sha256(url.encode()).hexdigest()}"


# Auth


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"}])
def test_missing_or_wrong_key_gets_nest_401(api, control, headers):
    with httpx.Client(base_url=str(api.base_url), headers=headers) as anonymous:
        for response in (anonymous.post("/v2/generate", json=body()), anonymous.get("/v2/models")):
            assert response.status_code == 401
            assert response.json() == {"statusCode": 401, "message": "Unauthorized", "error": "Unauthorized"}
    assert stats(control)["generations_created"] == 0


# Create and lifecycle


def test_create_returns_pending_generation_that_completes(api, configure):
    configure(pending_s=0.15, processing_s=0.15)  # phases long enough to be seen by 10 ms polling
    payload = body(options={"sync_mode": "loop", "pads": [0, 5, 0, 0]}, outputFileName="take_1")
    created = create(api, payload)
    assert created.status_code == 201
    gen = created.json()
    uuid.UUID(gen["id"])
    datetime.fromisoformat(gen["createdAt"])
    assert gen["status"] == "PENDING"
    assert gen["input"] == payload["input"]
    assert gen["options"] == payload["options"]  # legacy keys echoed
    assert gen["outputFileName"] == "take_1"
    assert gen["outputUrl"] is None and gen["error"] is None
    assert "error_code" in gen and "errorCode" in gen

    seen = [gen["status"]]
    deadline = time.monotonic() + 5
    while seen[-1] not in TERMINAL:
        assert time.monotonic() < deadline
        seen.append(api.get(f"/v2/generate/{gen['id']}").json()["status"])
        time.sleep(0.01)
    assert [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s] == [
        "PENDING",
        "PROCESSING",
        "COMPLETED",
    ]
    done = api.get(f"/v2/generate/{gen['id']}").json()
    assert done["outputUrl"].startswith(str(api.base_url))
    assert done["outputDuration"] == 10.0
    assert done["error_code"] is None and done["errorCode"] is None


def test_text_to_speech_input_and_react_options_are_accepted(api):
    tts = {"type": "text", "provider": {"name": "elevenlabs", "voiceId": "v1", "script": "Hello there"}}
    payload = {
        "model": "react-1",
        "input": [VIDEO, tts],
        "options": {"model_mode": "head", "prompt": "happy", "temperature": 0.3},
        "webhookUrl": "https://hooks.example.com/sync",
    }
    response = create(api, payload)
    assert response.status_code == 201, response.text
    assert response.json()["webhookUrl"] == "https://hooks.example.com/sync"


def test_get_unknown_generation_is_404(api):
    response = api.get(f"/v2/generate/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.json()["statusCode"] == 404


# Validation

TOO_LONG_SCRIPT = {"type": "text", "provider": {"name": "elevenlabs", "voiceId": "v", "script": "a" * 5001}}


@pytest.mark.parametrize(
    ("payload", "code", "fragment"),
    [
        (body(model="lipsync-9"), "generation_unsupported_model", "model must be one of"),
        ({"model": "lipsync-2", "input": [AUDIO]}, "generation_video_missing", "video"),
        (body(input=[VIDEO, VIDEO, AUDIO]), "generation_input_too_many_visual", "exactly one visual"),
        ({"model": "lipsync-2", "input": [VIDEO]}, "generation_audio_missing", "audio or text"),
        (body(input=[VIDEO, TOO_LONG_SCRIPT]), "generation_text_length_exceeded", "5000"),
        (body(options={"temperature": 1.5}), "generation_input_validation_failed", "temperature"),
        (body(options={"sync_mode": "zigzag"}), "generation_input_validation_failed", "sync_mode"),
        (body(options={"model_mode": "lips"}), "generation_input_validation_failed", "react-1"),
        (body(outputFileName="bad name.mp4"), "generation_input_validation_failed", "outputFileName"),
        (body(webhook_url="https://x.example"), "generation_input_validation_failed", "should not exist"),
        (body(input=[VIDEO, {"type": "audio"}]), "generation_input_validation_failed", "url or assetId"),
        (
            body(
                input=[VIDEO, {"type": "text", "provider": {"name": "openai", "voiceId": "v", "script": "x"}}]
            ),
            "generation_input_validation_failed",
            "elevenlabs",
        ),
    ],
)
def test_invalid_create_gets_nest_400_with_message_list(api, control, payload, code, fragment):
    response = create(api, payload)
    assert response.status_code == 400
    error = response.json()
    assert error["statusCode"] == 400 and error["error"] == "Bad Request"
    assert error["errorCode"] == code
    assert isinstance(error["message"], list)
    assert any(fragment in message for message in error["message"]), error["message"]
    assert stats(control)["generations_created"] == 0


def test_segments_allow_several_audio_inputs_with_ref_ids(api):
    voice = {"type": "audio", "url": "https://cdn.example.com/a.wav", "refId": "a1"}
    tts = {"type": "text", "refId": "t1", "provider": {"name": "elevenlabs", "voiceId": "v", "script": "Hi"}}
    segments = [
        {"startTime": 0, "endTime": 2, "audioInput": {"refId": "a1"}},
        {"startTime": 2, "endTime": 4, "audioInput": {"refId": "t1", "startTime": 0, "endTime": 2}},
    ]
    assert create(api, body(input=[VIDEO, voice, tts], segments=segments)).status_code == 201
    overlapping = [segments[0], {**segments[1], "startTime": 1}]
    response = create(api, body(input=[VIDEO, voice, tts], segments=overlapping))
    assert response.json()["errorCode"] == "generation_input_segments_invalid"
    assert create(api, body(input=[VIDEO, voice, tts])).status_code == 400  # several audios need segments


def test_create_response_is_pending_even_with_zero_durations(api, configure):
    configure(pending_s=0, processing_s=0)
    created = create(api).json()
    assert created["status"] == "PENDING"
    assert api.get(f"/v2/generate/{created['id']}").json()["status"] == "COMPLETED"


def test_malformed_json_is_400(api):
    response = api.post("/v2/generate", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["errorCode"] == "generation_input_validation_failed"


# Idempotency


def test_idempotent_replay_returns_same_generation_and_creates_nothing(api, control):
    first = create(api, body(), **{"Idempotency-Key": "job-42.a~b_c"})
    again = create(api, body(), **{"Idempotency-Key": "job-42.a~b_c"})
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    counters = stats(control)
    assert counters["generations_created"] == 1
    assert counters["idempotency_replays"] == 1
    assert counters["generations_by_idempotency_key"] == {"job-42.a~b_c": [first.json()["id"]]}
    assert counters["generations_without_idempotency_key"] == 0


def test_same_key_with_different_body_is_409(api):
    assert create(api, body(), **{"Idempotency-Key": "k1"}).status_code == 201
    conflict = create(api, body(options={"sync_mode": "cut_off"}), **{"Idempotency-Key": "k1"})
    assert conflict.status_code == 409
    assert conflict.json()["statusCode"] == 409
    assert conflict.json()["errorCode"] == "IDEMPOTENCY_KEY_REUSED"


@pytest.mark.parametrize("key", ["", "has space", "x" * 129, "ключ"])
def test_malformed_idempotency_key_is_400(api, key):
    response = api.post("/v2/generate", json=body(), headers={"Idempotency-Key": key.encode()})
    assert response.status_code == 400
    assert response.json()["errorCode"] == "INVALID_IDEMPOTENCY_KEY"


def test_rejected_attempt_does_not_burn_the_key(api):
    assert create(api, body(model="nope"), **{"Idempotency-Key": "k2"}).status_code == 400
    assert create(api, body(), **{"Idempotency-Key": "k2"}).status_code == 201


# Rate limits and concurrency


def test_create_rate_limit_429_with_retry_after_and_separate_budgets(api, control, configure):
    configure(create_rate_limit=3, other_rate_limit=1000, rate_window_s=0.5, concurrency=100)
    assert [create(api).status_code for _ in range(3)] == [201, 201, 201]
    limited = create(api, **{"Idempotency-Key": "rl-1"})
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "1"
    assert limited.json() == {
        "statusCode": 429,
        "errorCode": "rate_limit_exceeded",
        "message": "Rate limit exceeded. Please try again later.",
        "error": "Too Many Requests",
    }
    assert api.get("/v2/models").status_code == 200  # other endpoints have their own budget
    time.sleep(0.55)
    assert create(api, **{"Idempotency-Key": "rl-1"}).status_code == 201  # the 429 did not burn the key
    counters = stats(control)
    assert counters["throttled"]["rate_limit_exceeded"] == 1
    assert counters["responses"]["429"] == 1


def test_other_endpoints_rate_limit_and_optional_retry_after(api, configure):
    configure(other_rate_limit=2, rate_window_s=30, send_retry_after_on_rate_limit=False)
    assert [api.get("/v2/models").status_code for _ in range(3)] == [200, 200, 429]
    assert api.get("/v2/generations").json()["errorCode"] == "rate_limit_exceeded"
    assert "Retry-After" not in api.get("/v2/models").headers
    assert create(api).status_code == 201


def test_concurrency_limit_429_without_retry_after(api, control, configure):
    configure(plan="hobbyist", pending_s=0.05, processing_s=0.2)
    first = create(api)
    assert first.status_code == 201
    blocked = create(api, **{"Idempotency-Key": "cc-1"})
    assert blocked.status_code == 429
    assert blocked.json()["errorCode"] == "concurrency_limit_reached"
    assert "Concurrency limit reached" in blocked.json()["message"]
    assert "Retry-After" not in blocked.headers
    wait_terminal(api, first.json()["id"])
    assert create(api, **{"Idempotency-Key": "cc-1"}).status_code == 201
    counters = stats(control)
    assert counters["throttled"]["concurrency_limit_reached"] == 1
    assert counters["peak_in_flight"] == 1


def test_explicit_concurrency_overrides_plan(api, configure):
    configure(plan="hobbyist", concurrency=2, processing_s=5)
    assert [create(api).status_code for _ in range(3)] == [201, 201, 429]


# Listing and models


def test_list_filters_accept_repeated_and_comma_separated_values(api, control):
    control.post("/_sim/faults", json={"route": "syncso.outcome", "status": "REJECTED"})
    ids = [create(api).json()["id"] for _ in range(3)]
    for gen_id in ids:
        wait_terminal(api, gen_id)
    a, b, c = ids

    def listed(params: Any) -> list[str]:
        response = api.get("/v2/generations", params=params)
        assert response.status_code == 200, response.text
        return [g["id"] for g in response.json()]

    assert listed({"status": "REJECTED"}) == [a]
    assert set(listed({"status": "COMPLETED,REJECTED"})) == set(ids)
    assert set(listed([("status", "COMPLETED"), ("status", "REJECTED")])) == set(ids)
    assert set(listed({"ids": f"{a},{c}"})) == {a, c}
    assert set(listed([("ids", a), ("ids", f"{b},{c}"), ("status", "COMPLETED")])) == {b, c}
    assert listed({"limit": 2}) == [c, b]
    assert listed({"limit": 2, "cursor": b}) == [a]
    for bad in ({"cursor": b}, {"limit": 0}, {"limit": 101}, {"status": "DONE"}):
        assert api.get("/v2/generations", params=bad).status_code == 400


def test_ids_lookup_returns_exactly_the_requested_known_ids_newest_first(api, configure):
    configure(concurrency=4)
    a, b, c, d = (create(api).json()["id"] for _ in range(4))
    unknown = str(uuid.uuid4())
    response = api.get("/v2/generations", params={"ids": f"{a},{unknown},{c}"})
    assert [g["id"] for g in response.json()] == [c, a]
    paged = api.get("/v2/generations", params=[("ids", d), ("ids", f"{b},{a}"), ("limit", 2), ("cursor", c)])
    assert [g["id"] for g in paged.json()] == [b, a]


def test_overlong_request_target_gets_414_before_auth(api, configure):
    configure(max_url_bytes=256)
    at_limit = "/v2/generate/" + "a" * (256 - len("/v2/generate/"))
    assert api.get(at_limit).status_code == 404
    with httpx.Client(base_url=str(api.base_url)) as anonymous:
        for target in (at_limit + "b", "/v2/generations?ids=" + "x" * (257 - len("/v2/generations?ids="))):
            response = anonymous.get(target)
            assert response.status_code == 414
            assert response.json() == {"statusCode": 414, "message": "URI Too Long", "error": "URI Too Long"}


def test_models(api):
    models = api.get("/v2/models").json()
    assert {m["id"] for m in models} == {
        "lipsync-2",
        "lipsync-1.9.0-beta",
        "lipsync-2-pro",
        "react-1",
        "sync-3",
    }
    assert {m["type"] for m in models} == {"lipsync", "react"}
    assert all(set(m) >= {"id", "name", "type", "version", "description"} for m in models)


# Long-poll


def test_wait_long_polls_until_terminal_with_headers(api):
    gen_id = create(api).json()["id"]
    started = time.monotonic()
    response = api.get(f"/v2/generate/{gen_id}", params={"wait": "true", "timeout": "3"})
    assert time.monotonic() - started < 1.0
    assert response.json()["status"] == "COMPLETED"
    assert response.headers["Retry-After"] == "2"
    assert response.headers["X-Sync-Wait-Mode"] == "long_poll"
    assert response.headers["X-Sync-Wait-Timeout-Seconds"] == "3"


def test_wait_times_out_with_current_state_and_validates_timeout(api, configure):
    configure(processing_s=30)
    gen_id = create(api).json()["id"]
    started = time.monotonic()
    response = api.get(f"/v2/generate/{gen_id}", params={"wait": "true", "timeout": "1"})
    assert 0.9 <= time.monotonic() - started < 2
    assert response.json()["status"] == "PROCESSING"
    for params in ({"wait": "true", "timeout": "0.5"}, {"wait": "true", "timeout": "11"}, {"wait": "maybe"}):
        assert api.get(f"/v2/generate/{gen_id}", params=params).status_code == 400
    assert (
        api.get(f"/v2/generate/{gen_id}", params={"wait": "true", "include": "progress"}).status_code == 400
    )


# Multipart


def test_multipart_create_with_files(api, control):
    files = {"video": ("talk.mp4", b"\x00video-bytes", "video/mp4")}
    data = {
        "model": "lipsync-2",
        "input": json.dumps([{"type": "video", "url": "https://cdn.example.com/ignored.mp4"}, AUDIO]),
        "options": json.dumps({"sync_mode": "bounce"}),
        "outputFileName": "clip",
    }
    response = api.post("/v2/generate", files=files, data=data, headers={"Idempotency-Key": "mp-1"})
    assert response.status_code == 201, response.text
    gen = response.json()
    video = gen["input"][0]
    assert video["type"] == "video" and "url" not in video  # the file wins over the url
    uuid.UUID(video["assetId"])
    assert gen["input"][1] == AUDIO
    assert gen["options"] == {"sync_mode": "bounce"}

    replay = api.post("/v2/generate", files=files, data=data, headers={"Idempotency-Key": "mp-1"})
    assert replay.status_code == 200 and replay.json()["id"] == gen["id"]
    other_bytes = {"video": ("talk.mp4", b"\x00other-bytes", "video/mp4")}
    conflict = api.post("/v2/generate", files=other_bytes, data=data, headers={"Idempotency-Key": "mp-1"})
    assert conflict.status_code == 409
    assert stats(control)["generations_created"] == 1


def test_multipart_audio_file_only_and_file_limits(api, configure):
    configure(max_upload_bytes=1000)
    files = {"audio": ("v.wav", b"a" * 1000)}
    data = {"model": "lipsync-2", "input": json.dumps([VIDEO])}
    assert api.post("/v2/generate", files=files, data=data).status_code == 201

    too_big = api.post("/v2/generate", files={"audio": ("v.wav", b"a" * 1001)}, data=data)
    assert too_big.status_code == 413
    assert too_big.json()["statusCode"] == 413
    assert too_big.json()["message"] == "Payload Too Large"
    assert too_big.json()["errorCode"] == "generation_input_validation_failed"

    two_videos = [("video", ("a.mp4", b"1")), ("video", ("b.mp4", b"2")), ("audio", ("c.wav", b"3"))]
    assert api.post("/v2/generate", files=two_videos, data={"model": "lipsync-2"}).status_code == 400
    bad_json = api.post("/v2/generate", files=files, data={"model": "lipsync-2", "input": "[{"})
    assert bad_json.status_code == 400


# Output download


def test_download_needs_a_valid_signature_and_serves_deterministic_bytes(api, control, configure):
    configure(output_bytes=200_000)
    gen = wait_terminal(api, create(api).json()["id"])
    url = httpx.URL(gen["outputUrl"])
    with httpx.Client() as anonymous:  # signed URL: no x-api-key
        ok = anonymous.get(url)
        assert ok.status_code == 200
        assert ok.headers["content-type"] == "video/mp4"
        assert ok.headers["content-length"] == "200000"
        lines = [url_line("video", VIDEO["url"]), url_line("audio", AUDIO["url"])]
        assert ok.content[4:8] == b"ftyp"
        assert ok.content == expected_output(gen["id"], 200_000, lines)

        tampered = url.copy_set_param("signature", "0" * 64)
        expired = url.copy_set_param("expires", str(int(time.time()) - 10))
        unsigned = url.copy_with(query=None)
        for bad in (tampered, expired, unsigned):
            assert anonymous.get(bad).status_code == 403
    assert stats(control)["requests"]["download"] == 4


# Faults and outcomes


def test_injected_503_replaces_the_next_requests(api, control):
    queued = control.post("/_sim/faults", json={"route": "syncso.create", "status": 503, "times": 2})
    assert queued.status_code == 201
    first, second, third = create(api), create(api), create(api)
    assert [first.status_code, second.status_code, third.status_code] == [503, 503, 201]
    assert first.json() == {
        "statusCode": 503,
        "message": "Service Unavailable",
        "error": "Service Unavailable",
    }
    counters = stats(control)
    assert counters["generations_created"] == 1
    assert counters["responses"] == {"201": 1, "503": 2}


def test_fault_with_custom_body_and_headers_and_clearing(api, control):
    fault = {
        "route": "syncso.get",
        "status": 500,
        "times": 3,
        "body": {"statusCode": 500, "errorCode": "internal_error"},
    }
    control.post("/_sim/faults", json={**fault, "headers": {"x-request-id": "r-1"}})
    response = api.get(f"/v2/generate/{uuid.uuid4()}")
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "r-1"
    assert response.json()["errorCode"] == "internal_error"
    assert control.get("/_sim/faults").json()["syncso"]["syncso.get"][0]["remaining"] == 2
    control.delete("/_sim/faults")
    assert api.get(f"/v2/generate/{uuid.uuid4()}").status_code == 404
    assert control.post("/_sim/faults", json={"route": "syncso.nope", "status": 500}).status_code == 400
    assert control.post("/_sim/faults", json={"route": "syncso.create", "status": 99}).status_code == 400


def test_injected_rejected_outcome_skips_processing(api, control):
    control.post(
        "/_sim/faults",
        json={
            "route": "syncso.outcome",
            "status": "REJECTED",
            "error_code": "generation_input_video_inaccessible",
        },
    )
    gen_id = create(api).json()["id"]
    seen = set()
    deadline = time.monotonic() + 5
    while (current := api.get(f"/v2/generate/{gen_id}").json())["status"] not in TERMINAL:
        assert time.monotonic() < deadline
        seen.add(current["status"])
        time.sleep(0.01)
    assert seen <= {"PENDING"}
    assert current["status"] == "REJECTED"
    assert current["errorCode"] == current["error_code"] == "generation_input_video_inaccessible"
    assert current["error"] and current["outputUrl"] is None
    assert wait_terminal(api, create(api).json()["id"])["status"] == "COMPLETED"  # one use only


# Documented failure codes (reference 3.10): transient/infra ones for FAILED, input ones for REJECTED.
TRANSIENT_CODES = {
    "generation_timeout",
    "generation_pipeline_failed",
    "generation_unhandled_error",
    "generation_database_error",
    "generation_infra_storage_error",
    "generation_infra_resource_exhausted",
    "generation_infra_service_unavailable",
}
INPUT_CODES = {
    "generation_media_metadata_missing",
    "generation_audio_length_exceeded",
    "generation_input_audio_invalid",
    "generation_input_video_inaccessible",
    "generation_input_audio_inaccessible",
    "generation_input_face_selection_invalid",
}


@pytest.mark.parametrize(
    ("shares", "status", "codes"),
    [({"fail_share": 1.0}, "FAILED", TRANSIENT_CODES), ({"reject_share": 1.0}, "REJECTED", INPUT_CODES)],
)
def test_failure_shares(api, configure, shares, status, codes):
    configure(seed=3, concurrency=10, **shares)
    results = [wait_terminal(api, create(api).json()["id"]) for _ in range(3)]
    assert {g["status"] for g in results} == {status}
    assert all(g["errorCode"] == g["error_code"] and g["errorCode"] in codes and g["error"] for g in results)


# Stats, events, config, reset


def test_peak_in_flight_is_exact(api, control, configure):
    configure(concurrency=5, pending_s=0.1, processing_s=0.3)
    barrier = threading.Barrier(3)

    def burst() -> None:
        barrier.wait()
        with httpx.Client(base_url=str(api.base_url), headers=dict(api.headers)) as own:
            assert create(own).status_code == 201

    threads = [threading.Thread(target=burst) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    during = stats(control)
    assert during["in_flight"] == 3 and during["peak_in_flight"] == 3
    configure(pending_s=0.01, processing_s=0.01)
    time.sleep(0.45)
    wait_terminal(api, create(api).json()["id"])
    after = stats(control)
    assert after["in_flight"] == 0 and after["peak_in_flight"] == 3
    assert after["generations_created"] == 4
    assert after["generations_by_status"]["COMPLETED"] == 4


def test_control_route_lists_lifecycle_times_without_counting_requests(api, control):
    control.post("/_sim/faults", json={"route": "syncso.outcome", "status": "REJECTED"})
    rejected = create(api, body(webhookUrl="https://hooks.example.com/a")).json()["id"]
    completed = create(api).json()["id"]
    for gen_id in (rejected, completed):
        wait_terminal(api, gen_id)
    before = stats(control)["requests"]
    listed = {g["id"]: g for g in control.get("/_sim/syncso/generations").json()}
    assert set(listed) == {rejected, completed}
    first, second = listed[rejected], listed[completed]
    assert (first["status"], first["processing_at"], first["webhook_url"]) == (
        "REJECTED",
        None,
        "https://hooks.example.com/a",
    )
    assert first["created_at"] < first["terminal_at"] <= time.time()
    assert second["status"] == "COMPLETED" and second["webhook_url"] is None
    assert second["created_at"] < second["processing_at"] < second["terminal_at"] <= time.time()
    assert stats(control)["requests"] == before


def test_events_log_and_reset(api, control):
    since = time.time()
    gen_id = create(api).json()["id"]
    create(api, body(model="bad"))
    events = control.get("/_sim/events", params={"since": since}).json()
    assert [(e["route"], e["status"], e["error_code"]) for e in events] == [
        ("syncso.create", 201, None),
        ("syncso.create", 400, "generation_unsupported_model"),
    ]
    assert events[0]["generation_id"] == gen_id and events[0]["t"] >= since
    assert control.get("/_sim/events", params={"since": events[-1]["t"]}).json() == []
    assert control.get("/_sim/events", params={"since": "x"}).status_code == 400

    control.post("/_sim/reset")
    assert control.get("/_sim/events").json() == []
    assert stats(control)["generations_created"] == 0
    assert api.get(f"/v2/generate/{gen_id}").status_code == 404


def test_config_read_and_partial_update(control):
    updated = control.post("/_sim/config", json={"syncso": {"plan": "scale", "pending_s": 2}})
    assert updated.status_code == 200
    config = control.get("/_sim/config").json()["syncso"]
    assert config["plan"] == "scale" and config["pending_s"] == 2
    assert config["processing_s"] == 0.1  # untouched fields keep their values
    for bad in (
        {"syncso": {"fail_share": 2}},
        {"syncso": {"plan": "gold"}},
        {"syncso": {"nope": 1}},
        {"x": {}},
    ):
        assert control.post("/_sim/config", json=bad).status_code == 400
    assert control.get("/_sim/config").json()["syncso"]["plan"] == "scale"


# Server and CLI


def test_server_on_explicit_port_stops_cleanly():
    with SimulatorServer(SimConfig()) as first:
        port = first.port
        assert httpx.get(f"{first.base_url}/_sim/stats").status_code == 200
    with SimulatorServer(SimConfig(), port=port) as second:
        assert second.base_url == f"http://127.0.0.1:{port}"
        response = httpx.get(f"{second.base_url}/v2/models", headers={"x-api-key": "sim-syncso-key"})
        assert response.status_code == 200


def test_cli_arguments_build_the_config():
    args = build_parser().parse_args(
        ["--port", "9001", "--syncso-api-key", "K", "--syncso-pending-s", "0.5", "--syncso-plan", "scale"]
    )
    config = config_from_args(args)
    assert args.port == 9001
    assert config.syncso == SyncSoSimConfig(api_key="K", pending_s=0.5, plan="scale")
    assert config.syncso.effective_concurrency == 15


def test_cli_webhook_and_url_flags_build_the_config():
    flags = ["--syncso-webhook-secret", "whsec_x", "--syncso-webhook-delay-s", "0.5"]
    flags += ["--syncso-max-url-bytes", "4096"]
    shares = ["--syncso-webhook-loss-share", "0.1", "--syncso-webhook-duplicate-share", "0.2"]
    config = config_from_args(build_parser().parse_args(flags + shares))
    assert config.syncso == SyncSoSimConfig(
        webhook_secret="whsec_x",
        webhook_delay_s=0.5,
        webhook_loss_share=0.1,
        webhook_duplicate_share=0.2,
        max_url_bytes=4096,
    )


def test_a_hold_fault_processes_the_request_then_holds_its_answer(api, control):
    assert control.post("/_sim/faults", json={"route": "syncso.create", "hold_s": 0.6}).status_code == 201
    body = {"model": "lipsync-2", "input": [{"type": "video", "url": "https://x.test/v.mp4"},
                                            {"type": "audio", "url": "https://x.test/a.wav"}]}  # fmt: skip
    started = time.monotonic()
    held = api.post("/v2/generate", json=body)
    assert held.status_code == 201
    assert time.monotonic() - started >= 0.6
    started = time.monotonic()
    assert api.post("/v2/generate", json=body).status_code == 201
    assert time.monotonic() - started < 0.5  # one use only
    assert control.get("/_sim/stats").json()["syncso"]["generations_created"] == 2
