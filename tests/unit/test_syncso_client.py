from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
from pydantic import SecretStr

from storage import FileStore
from worker.providers.errors import (
    AuthFailed,
    BadRequest,
    ConcurrencyLimited,
    Conflict,
    NotFound,
    PaymentRequired,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    Throttled,
)
from worker.providers.http import OutputTooLarge
from worker.providers.syncso.client import (
    Generation,
    GenerationStatus,
    ModelInfo,
    SyncSoClient,
    raise_for_response,
)
from worker.providers.syncso.settings import SyncSoSettings
from worker.sections import HttpSettings

API_KEY = "sk-live-SECRET-4f9c2a7e1b"
BASE_URL = "https://api.sync.test"
OUTPUT_URL = "https://cdn.sync.test/outputs/gen-1.mp4?Expires=1&Signature=abc"

Handler = Callable[[httpx.Request], httpx.Response]


def generation_json(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "gen-1",
        "createdAt": "2025-01-02T03:04:05Z",
        "status": "PENDING",
        "model": "lipsync-2",
        "input": [{"type": "video", "url": "https://x/v.mp4"}],
        "outputUrl": None,
    }
    body.update(overrides)
    return body


@pytest.fixture
def make_client() -> Iterator[Callable[[Handler], SyncSoClient]]:
    clients: list[SyncSoClient] = []

    def factory(handler: Handler) -> SyncSoClient:
        settings = SyncSoSettings(
            api_key=SecretStr(API_KEY),
            base_url=BASE_URL,
            http=HttpSettings(connect_timeout_s=1, read_timeout_s=3),
        )
        client = SyncSoClient.from_settings(settings, transport=httpx.MockTransport(handler))
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


def respond(status_code: int, body: Any = None, headers: dict[str, str] | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, (dict, list)):
            return httpx.Response(status_code, json=body, headers=headers)
        return httpx.Response(status_code, content=body or b"", headers=headers)

    return handler


def assert_no_secret(error: BaseException) -> None:
    for text in (str(error), repr(error), getattr(error, "message", "")):
        assert API_KEY not in text
        assert "x-api-key" not in text.lower()


def multipart_parts(request: httpx.Request) -> dict[str, EmailMessage]:
    raw = b"Content-Type: " + request.headers["content-type"].encode() + b"\r\n\r\n" + request.content
    message = BytesParser(policy=policy.HTTP).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    assert message.is_multipart()
    parts: dict[str, EmailMessage] = {}
    for part in message.iter_parts():
        assert isinstance(part, EmailMessage)
        name = part.get_param("name", header="content-disposition")
        assert isinstance(name, str)
        parts[name] = part
    return parts


def part_text(part: EmailMessage) -> str:
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


# --- error translation -----------------------------------------------------------------------

_IN_TWO_MINUTES = format_datetime(datetime.fromtimestamp(4_102_444_800, tz=UTC), usegmt=True)  # 2100-01-01


class ErrorCase(NamedTuple):
    name: str
    status_code: int
    body: Any
    headers: dict[str, str]
    expected: type[ProviderError]
    code: str | None
    message: str


_ERROR_ROWS: list[tuple[str, int, Any, dict[str, str], type[ProviderError], str | None, str]] = [
    (
        "400 validation list",
        400,
        {
            "statusCode": 400,
            "message": ["model must be a string", "input should not be empty"],
            "error": "Bad Request",
        },
        {},
        BadRequest,
        None,
        "model must be a string; input should not be empty",
    ),
    (
        "400 idempotency key",
        400,
        {"statusCode": 400, "message": "Invalid Idempotency-Key", "errorCode": "INVALID_IDEMPOTENCY_KEY"},
        {},
        BadRequest,
        "INVALID_IDEMPOTENCY_KEY",
        "Invalid Idempotency-Key",
    ),
    ("401", 401, {"statusCode": 401, "message": "Unauthorized"}, {}, AuthFailed, None, "Unauthorized"),
    ("403", 403, {"statusCode": 403, "message": "Forbidden resource"}, {}, AuthFailed, None, "Forbidden"),
    (
        "402",
        402,
        {"statusCode": 402, "message": "Plan limit", "errorCode": "generation_plan_duration_exceeded"},
        {},
        PaymentRequired,
        "generation_plan_duration_exceeded",
        "Plan limit",
    ),
    ("404", 404, {"statusCode": 404, "message": "Generation not found"}, {}, NotFound, None, "not found"),
    (
        "409",
        409,
        {"statusCode": 409, "message": "key reused", "errorCode": "IDEMPOTENCY_KEY_REUSED"},
        {},
        Conflict,
        "IDEMPOTENCY_KEY_REUSED",
        "key reused",
    ),
    ("413 bare", 413, b"", {}, BadRequest, None, "Too Large"),
    (
        "422 plan file size",
        422,
        {"statusCode": 422, "message": "too big", "errorCode": "file_size_exceeds_plan_limit"},
        {},
        BadRequest,
        "file_size_exceeds_plan_limit",
        "too big",
    ),
    ("408", 408, {"statusCode": 408, "message": "Request Timeout"}, {}, ProviderUnavailable, None, "Timeout"),
    (
        "500 internal",
        500,
        {
            "statusCode": 500,
            "message": "Internal server error",
            "errorCode": "internal_error",
            "requestId": "req-9",
        },
        {},
        ProviderUnavailable,
        "internal_error",
        "Internal server error",
    ),
    (
        "502 non-JSON",
        502,
        b"<html>\n<head><title>502 Bad Gateway</title></head>\n<body>nginx</body></html>",
        {"content-type": "text/html"},
        ProviderUnavailable,
        None,
        "<html> <head><title>502 Bad Gateway</title>",
    ),
    (
        "503 idempotency outcome unknown",
        503,
        {
            "statusCode": 503,
            "message": "Outcome unknown",
            "errorCode": "IDEMPOTENCY_OUTCOME_UNKNOWN",
            "generationId": "g-7",
        },
        {},
        ProviderUnavailable,
        "IDEMPOTENCY_OUTCOME_UNKNOWN",
        "Outcome unknown (generationId g-7)",
    ),
    ("504 empty", 504, b"", {}, ProviderUnavailable, None, "Gateway Timeout"),
    ("418 unknown 4xx", 418, {"statusCode": 418}, {}, BadRequest, None, "I'm a teapot"),
    ("JSON but not an object", 500, ["odd"], {}, ProviderUnavailable, None, '["odd"]'),
    (
        "message missing, error present",
        400,
        {"statusCode": 400, "error": "Bad Request"},
        {},
        BadRequest,
        None,
        "Bad Request",
    ),
    (
        "429 rate limit",
        429,
        {
            "statusCode": 429,
            "errorCode": "rate_limit_exceeded",
            "message": "Rate limit exceeded. Please try again later.",
        },
        {"Retry-After": "7"},
        RateLimited,
        "rate_limit_exceeded",
        "Rate limit exceeded",
    ),
    (
        "429 without errorCode",
        429,
        {"statusCode": 429, "message": "Too Many Requests"},
        {},
        RateLimited,
        None,
        "Too",
    ),
    (
        "429 concurrency",
        429,
        {"statusCode": 429, "errorCode": "concurrency_limit_reached", "message": "Concurrency limit reached"},
        {},
        ConcurrencyLimited,
        "concurrency_limit_reached",
        "Concurrency limit reached",
    ),
    (
        "429 snake-case error_code",
        429,
        {"statusCode": 429, "error_code": "concurrency_limit_reached", "message": "busy"},
        {},
        ConcurrencyLimited,
        "concurrency_limit_reached",
        "busy",
    ),
]


ERROR_CASES = [ErrorCase(*row) for row in _ERROR_ROWS]


@pytest.mark.parametrize("case", ERROR_CASES, ids=[case.name for case in ERROR_CASES])
def test_error_translation(make_client, case: ErrorCase) -> None:
    client = make_client(respond(case.status_code, case.body, case.headers))
    with pytest.raises(ProviderError) as info:
        client.get_generation("gen-1")
    error = info.value
    assert type(error) is case.expected
    assert error.provider == "syncso"
    assert error.status_code == case.status_code
    assert error.code == case.code
    assert case.message in error.message
    assert error.retryable is (case.expected in (ProviderUnavailable, RateLimited, ConcurrencyLimited))
    assert_no_secret(error)


@pytest.mark.parametrize(
    ("headers", "expected_s"),
    [
        ({}, None),
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": "-2"}, 0.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "1500", "Retry-After": "9"}, 1.5),
    ],
)
@pytest.mark.parametrize("error_code", ["rate_limit_exceeded", "concurrency_limit_reached"])
def test_429_retry_after(
    make_client, headers: dict[str, str], expected_s: float | None, error_code: str
) -> None:
    client = make_client(
        respond(429, {"statusCode": 429, "errorCode": error_code, "message": "slow"}, headers)
    )
    with pytest.raises(Throttled) as info:
        client.list_models()
    assert info.value.retry_after_s == expected_s


def test_429_retry_after_http_date(make_client) -> None:
    client = make_client(respond(429, {"statusCode": 429}, {"Retry-After": _IN_TWO_MINUTES}))
    with pytest.raises(RateLimited) as info:
        client.list_models()
    assert info.value.retry_after_s is not None
    assert info.value.retry_after_s > 3600


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        ({"statusCode": 500, "requestId": "body-id"}, {"x-request-id": "header-id"}, "body-id"),
        ({"statusCode": 500}, {"x-request-id": "header-id"}, "header-id"),
        (b"oops", {"x-request-id": "header-id"}, "header-id"),
        ({"statusCode": 500}, {}, None),
    ],
)
def test_request_id_from_body_or_header(
    make_client, body: Any, headers: dict[str, str], expected: str | None
) -> None:
    client = make_client(respond(500, body, headers))
    with pytest.raises(ProviderUnavailable) as info:
        client.get_generation("gen-1")
    assert info.value.request_id == expected


def test_error_messages_never_echo_the_api_key(make_client) -> None:
    body = {"statusCode": 401, "message": [f"Invalid API key {API_KEY}", "check your key"]}
    client = make_client(respond(401, body))
    with pytest.raises(AuthFailed) as info:
        client.list_models()
    assert "Invalid API key ***" in info.value.message
    assert info.value.message.endswith("(sync.so refused genq's credentials; check GENQ_SYNCSO__API_KEY)")
    assert_no_secret(info.value)


def test_raise_for_response_is_a_no_op_on_success() -> None:
    raise_for_response(httpx.Response(200, json={}))
    raise_for_response(httpx.Response(201, json={}))


def test_raise_for_response_works_without_a_request() -> None:
    with pytest.raises(ConcurrencyLimited):
        raise_for_response(httpx.Response(429, json={"errorCode": "concurrency_limit_reached"}))


# --- create ----------------------------------------------------------------------------------

CREATE_BODY: dict[str, Any] = {
    "model": "lipsync-2",
    "input": [{"type": "video", "url": "https://x/v.mp4"}, {"type": "audio", "url": "https://x/a.wav"}],
    "options": {"sync_mode": "cut_off", "temperature": 0.5},
    "webhookUrl": "https://hooks.test/sync",
}


def test_create_json(make_client) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=generation_json())

    client = make_client(handler)
    generation = client.create_generation(CREATE_BODY, idempotency_key="genq-job-1")

    assert generation.id == "gen-1"
    assert generation.status == GenerationStatus.PENDING
    [request] = seen
    assert request.method == "POST"
    assert request.url == httpx.URL(f"{BASE_URL}/v2/generate")
    assert request.headers["Idempotency-Key"] == "genq-job-1"
    assert request.headers["x-api-key"] == API_KEY
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == CREATE_BODY


def test_create_accepts_a_200_replay(make_client) -> None:
    client = make_client(respond(200, generation_json(status="PROCESSING"), {"Idempotent-Replayed": "true"}))
    generation = client.create_generation(CREATE_BODY, idempotency_key="genq-job-1")
    assert generation.status == "PROCESSING"


def test_create_multipart_streams_files_and_sends_nested_fields_as_json(make_client, tmp_path: Path) -> None:
    video = tmp_path / "face.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 10)
    audio = tmp_path / "voice.wav"
    audio.write_bytes(b"RIFF....WAVEfmt " + b"\x01" * 100)
    body = {
        "model": "lipsync-2",
        "input": [{"type": "video"}, {"type": "audio", "refId": "a1"}],
        "options": {"sync_mode": "loop", "active_speaker_detection": {"auto_detect": True}},
        "segments": [{"startTime": 0, "endTime": 1.5, "audioInput": {"refId": "a1"}}],
        "webhookUrl": "https://hooks.test/sync",
        "outputFileName": None,
    }
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=generation_json())

    client = make_client(handler)
    with video.open("rb") as video_file, audio.open("rb") as audio_file:
        files = {"video": video_file, "audio": audio_file}
        generation = client.create_generation(body, idempotency_key="genq-job-2", files=files)

    assert generation.id == "gen-1"
    [request] = seen
    assert request.headers["Idempotency-Key"] == "genq-job-2"
    assert request.headers["x-api-key"] == API_KEY
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    parts = multipart_parts(request)
    assert set(parts) == {"model", "input", "options", "segments", "webhookUrl", "video", "audio"}
    assert part_text(parts["model"]) == "lipsync-2"
    assert part_text(parts["webhookUrl"]) == "https://hooks.test/sync"
    for nested in ("input", "options", "segments"):
        assert json.loads(part_text(parts[nested])) == body[nested]
        assert parts[nested].get_filename() is None
    assert parts["video"].get_filename() == "face.mp4"
    assert parts["video"].get_content_type() == "video/mp4"
    assert parts["video"].get_payload(decode=True) == video.read_bytes()
    assert parts["audio"].get_filename() == "voice.wav"
    assert parts["audio"].get_content_type().startswith("audio/")
    assert parts["audio"].get_payload(decode=True) == audio.read_bytes()


def test_create_multipart_resends_whole_files_after_a_connect_retry(make_client, tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"v" * 200_000)
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ConnectError("refused", request=request)
        assert multipart_parts(request)["video"].get_payload(decode=True) == video.read_bytes()
        return httpx.Response(201, json=generation_json())

    client = make_client(handler)
    with video.open("rb") as file:
        client.create_generation({"model": "lipsync-2"}, idempotency_key="k", files={"video": file})
    assert len(calls) == 2


@pytest.mark.parametrize("key", ["", "has space", "x" * 129, "slash/no", "ünicode"])
def test_create_rejects_malformed_idempotency_keys(make_client, key: str) -> None:
    client = make_client(respond(201, generation_json()))
    with pytest.raises(ValueError, match="idempotency_key"):
        client.create_generation(CREATE_BODY, idempotency_key=key)


def test_create_rejects_unknown_file_fields(make_client, tmp_path: Path) -> None:
    client = make_client(respond(201, generation_json()))
    with pytest.raises(ValueError, match="unsupported file fields"):
        client.create_generation(CREATE_BODY, idempotency_key="k", files={"subtitle": io.BytesIO(b"1")})


def test_create_idempotency_outcome_unknown_is_retryable(make_client) -> None:
    body = {"statusCode": 503, "errorCode": "IDEMPOTENCY_OUTCOME_UNKNOWN", "message": "Outcome unknown"}
    client = make_client(respond(503, body))
    with pytest.raises(ProviderUnavailable) as info:
        client.create_generation(CREATE_BODY, idempotency_key="k")
    assert info.value.retryable
    assert info.value.code == "IDEMPOTENCY_OUTCOME_UNKNOWN"


# --- get / list / models ---------------------------------------------------------------------


def test_get_generation_parses_leniently(make_client) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json=generation_json(
                status="COMPLETED",
                outputUrl=OUTPUT_URL,
                outputDuration=12.5,
                brandNewField={"nested": True},
                segmentOutputUrl=None,
            ),
        )

    client = make_client(handler)
    generation = client.get_generation("gen/1")
    assert seen[0].url.raw_path == b"/v2/generate/gen%2F1"
    assert seen[0].headers["x-api-key"] == API_KEY
    assert generation.created_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert generation.model == "lipsync-2"
    assert generation.output_url == OUTPUT_URL
    assert generation.output_duration == 12.5
    assert generation.is_terminal
    assert generation.is_success


@pytest.mark.parametrize(
    ("fields", "expected_url"),
    [
        ({"outputUrl": "https://a"}, "https://a"),
        ({"outputMediaUrl": "https://b"}, "https://b"),
        ({"outputUrl": None, "outputMediaUrl": "https://b"}, "https://b"),
        ({"outputUrl": "https://a", "outputMediaUrl": "https://b"}, "https://a"),
        ({"outputUrl": None}, None),
        ({}, None),
    ],
)
def test_output_url_spellings(fields: dict[str, Any], expected_url: str | None) -> None:
    assert Generation.model_validate({"id": "g", "status": "COMPLETED", **fields}).output_url == expected_url


@pytest.mark.parametrize(
    "fields",
    [
        {"errorCode": "generation_audio_missing"},
        {"error_code": "generation_audio_missing"},
        {"errorCode": "generation_audio_missing", "error_code": "generation_audio_missing"},
        {"errorCode": None, "error_code": "generation_audio_missing"},
    ],
)
def test_error_code_accepts_camel_and_snake_case(fields: dict[str, str]) -> None:
    generation = Generation.model_validate({"id": "g", "status": "FAILED", "error": "no audio", **fields})
    assert generation.error_code == "generation_audio_missing"
    assert generation.error == "no audio"
    assert generation.is_terminal
    assert not generation.is_success


@pytest.mark.parametrize(
    ("status", "terminal", "success"),
    [
        ("PENDING", False, False),
        ("PROCESSING", False, False),
        ("COMPLETED", True, True),
        ("FAILED", True, False),
        ("REJECTED", True, False),
        ("CANCELED", True, False),
        ("TIMED_OUT", True, False),
        ("QUEUED_FOR_GPU", False, False),
    ],
)
def test_generation_status_predicates(status: str, terminal: bool, success: bool) -> None:
    generation = Generation.model_validate({"id": "g", "status": status})
    assert generation.status == status
    assert generation.is_terminal is terminal
    assert generation.is_success is success


def test_generation_status_sets() -> None:
    assert {"COMPLETED", "FAILED", "REJECTED", "CANCELED", "TIMED_OUT"} == GenerationStatus.TERMINAL
    assert {"PENDING", "PROCESSING"} == GenerationStatus.IN_FLIGHT
    assert {
        status.value for status in GenerationStatus
    } == GenerationStatus.TERMINAL | GenerationStatus.IN_FLIGHT


def test_generation_accepts_snake_case_field_names() -> None:
    generation = Generation(id="g", status="COMPLETED", output_url="https://o", error_code="x")
    assert generation.output_url == "https://o"
    assert generation.error_code == "x"


def test_list_generations_sends_repeated_query_keys(make_client) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json=[generation_json(), generation_json(id="gen-2", status="SOMETHING_NEW")]
        )

    client = make_client(handler)
    generations = client.list_generations(
        status=[GenerationStatus.PENDING, GenerationStatus.PROCESSING], ids=["gen-1", "gen-2"]
    )
    assert [g.id for g in generations] == ["gen-1", "gen-2"]
    assert generations[1].status == "SOMETHING_NEW"
    assert seen[0].url.path == "/v2/generations"
    assert seen[0].url.params.multi_items() == [
        ("status", "PENDING"),
        ("status", "PROCESSING"),
        ("ids", "gen-1"),
        ("ids", "gen-2"),
    ]


def test_list_generations_without_filters_sends_no_query(make_client) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[])

    assert make_client(handler).list_generations() == []
    assert seen[0].url.query == b""


def test_list_models(make_client) -> None:
    models = [
        {"id": "lipsync-2", "name": "Lipsync 2", "type": "lipsync", "version": 2, "deprecatedAt": None},
        {"id": "react-1", "name": "React", "type": "react", "version": "1.0", "description": "emotions"},
    ]
    client = make_client(respond(200, models))
    assert client.list_models() == [
        ModelInfo(id="lipsync-2", name="Lipsync 2", type="lipsync", version="2"),
        ModelInfo(id="react-1", name="React", type="react", version="1.0", description="emotions"),
    ]


@pytest.mark.parametrize("body", [b"<html>ok</html>", {"unexpected": "shape"}])
def test_unreadable_success_body_is_retryable(make_client, body: Any) -> None:
    client = make_client(respond(200, body))
    with pytest.raises(ProviderUnavailable, match="unreadable GET /v2/generate/gen-1 response"):
        client.get_generation("gen-1")


def test_connect_failures_retry_in_place_then_raise(make_client) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("connection refused", request=request)

    client = make_client(handler)
    with pytest.raises(ProviderUnavailable) as info:
        client.get_generation("gen-1")
    assert len(calls) == 3
    assert_no_secret(info.value)


def test_read_timeout_is_not_retried_in_place(make_client) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ReadTimeout("timed out", request=request)

    client = make_client(handler)
    with pytest.raises(ProviderUnavailable, match="ReadTimeout"):
        client.create_generation(CREATE_BODY, idempotency_key="k")
    assert len(calls) == 1


# --- download --------------------------------------------------------------------------------


def test_download_output_sends_no_api_key(make_client, tmp_path: Path) -> None:
    payload = b"mp4 bytes" * 1000
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "api.sync.test":
            return httpx.Response(200, json=generation_json(status="COMPLETED", outputUrl=OUTPUT_URL))
        return httpx.Response(200, content=payload)

    client = make_client(handler)
    generation = client.get_generation("gen-1")
    assert generation.output_url is not None
    download = client.download_output(
        generation.output_url, FileStore(tmp_path).sink("gen-1.mp4"), max_bytes=len(payload)
    )

    api_call, download_call = seen
    assert api_call.headers["x-api-key"] == API_KEY
    assert str(download_call.url) == OUTPUT_URL
    assert "x-api-key" not in download_call.headers
    assert API_KEY not in str(download_call.headers.raw)
    assert download.bytes == len(payload)
    assert download.sha256 == hashlib.sha256(payload).hexdigest()
    assert (tmp_path / "gen-1.mp4").read_bytes() == payload


@pytest.mark.parametrize("declare_length", [True, False])
def test_download_output_cap_leaves_no_file(make_client, tmp_path: Path, declare_length: bool) -> None:
    payload = b"x" * 5000

    def handler(request: httpx.Request) -> httpx.Response:
        if declare_length:
            return httpx.Response(200, content=payload)
        return httpx.Response(200, content=iter([payload[:2500], payload[2500:]]))

    client = make_client(handler)
    with pytest.raises(OutputTooLarge) as info:
        client.download_output(OUTPUT_URL, FileStore(tmp_path).sink("gen-1.mp4"), max_bytes=4096)
    assert info.value.provider == "syncso"
    assert not info.value.retryable
    assert list(tmp_path.iterdir()) == []


def test_download_expired_url_is_auth_failed_without_leaking_the_signature(
    make_client, tmp_path: Path
) -> None:
    client = make_client(respond(403, b"<Error><Code>AccessDenied</Code></Error>"))
    with pytest.raises(AuthFailed) as info:
        client.download_output(OUTPUT_URL, FileStore(tmp_path).sink("gen-1.mp4"), max_bytes=100)
    assert "Signature=abc" not in str(info.value)
    assert "GENQ_SYNCSO__API_KEY" not in str(info.value)  # the URL's signature was refused, not the key
    assert list(tmp_path.iterdir()) == []


# --- construction ----------------------------------------------------------------------------


def test_repr_and_settings_never_show_the_api_key(make_client) -> None:
    client = make_client(respond(200, []))
    assert API_KEY not in repr(client)
    assert "api.sync.test" in repr(client)


def test_from_settings_without_a_key_sends_no_key_header() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[])

    with SyncSoClient.from_settings(
        SyncSoSettings(base_url=BASE_URL), transport=httpx.MockTransport(handler)
    ) as client:
        client.list_models()
    assert "x-api-key" not in seen[0].headers


def test_context_manager_closes_the_http_client() -> None:
    http = httpx.Client(base_url=BASE_URL, transport=httpx.MockTransport(respond(200, [])))
    with SyncSoClient(http) as client:
        assert client.list_models() == []
    assert http.is_closed


def test_get_generation_reads_newer_spellings_from_json(make_client) -> None:
    body = generation_json(
        status="FAILED", outputUrl=None, outputMediaUrl="https://o", error_code="generation_timeout"
    )
    generation = make_client(respond(200, body)).get_generation("gen-1")
    assert generation.output_url == "https://o"
    assert generation.error_code == "generation_timeout"
