from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from storage import FileStore
from worker.providers.aimi.client import ENDPOINTS, AimiClient
from worker.providers.aimi.models import Execution, ExecutionStatus, error_class
from worker.providers.aimi.settings import AimiSettings
from worker.providers.errors import (
    AuthFailed,
    BadRequest,
    ConcurrencyLimited,
    NotFound,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    Throttled,
)
from worker.providers.http import make_http_client

API_KEY = "aimi-token-SECRET-7d41c9"
BASE_URL = "https://api.sync.aimi.test"
SOURCE_URL = "https://videos.example.test/in/clip.mp4?X-Goog-Signature=sig123"
OUTPUT_URL = "https://storage.googleapis.test/bucket/ex-1.mp4?X-Goog-Signature=out456"
VIDEO = bytes(range(256)) * 40  # 10240 bytes

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def make_client() -> Iterator[Callable[[Handler], AimiClient]]:
    clients: list[AimiClient] = []

    def factory(handler: Handler, max_chunk_bytes: int = 30 * 1024 * 1024) -> AimiClient:
        http = make_http_client(
            BASE_URL,
            connect_timeout_s=1,
            read_timeout_s=3,
            headers={"accept": "application/json", "user-agent": "genq"},
            transport=httpx.MockTransport(handler),
        )
        client = AimiClient(http, SecretStr(API_KEY), max_chunk_bytes=max_chunk_bytes)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


class Recorder:
    """A handler that answers ``body`` (JSON) and keeps every request, its body read."""

    def __init__(self, body: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> None:
        self.body, self.status_code, self.headers = body, status_code, headers or {}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        if isinstance(self.body, bytes):
            return httpx.Response(self.status_code, content=self.body, headers=self.headers)
        return httpx.Response(self.status_code, json=self.body, headers=self.headers)

    @property
    def only(self) -> httpx.Request:
        assert len(self.requests) == 1
        return self.requests[0]


def assert_api_call(request: httpx.Request, name: str) -> None:
    assert request.method == "POST"
    assert request.url == httpx.URL(BASE_URL + ENDPOINTS[name])
    assert request.headers["authorization"] == f"Bearer {API_KEY}"


def json_of(request: httpx.Request) -> Any:
    assert request.headers["content-type"] == "application/json"
    return json.loads(request.content)


def multipart_parts(request: httpx.Request) -> dict[str, EmailMessage]:
    raw = b"Content-Type: " + request.headers["content-type"].encode() + b"\r\n\r\n" + request.content
    message = BytesParser(policy=policy.HTTP).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    parts: dict[str, EmailMessage] = {}
    for part in message.iter_parts():
        assert isinstance(part, EmailMessage)
        name = part.get_param("name", header="content-disposition")
        assert isinstance(name, str)
        parts[name] = part
    return parts


def part_json(part: EmailMessage) -> Any:
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return json.loads(payload)


def assert_no_secret(error: BaseException) -> None:
    for text in (str(error), repr(error), getattr(error, "message", ""), repr(error.args)):
        assert API_KEY not in text
        assert "Signature" not in text


# --- every call: path, method, headers, body ------------------------------------------------


def test_init_upload(make_client: Callable[[Handler], AimiClient]) -> None:
    handler = Recorder({"taskid": "task-1", "max_chunk_bytes": 1048576, "new_field": 1})
    ticket = make_client(handler).init_upload("clip.mp4", 10485760, "video/mp4")
    assert_api_call(handler.only, "upload_init")
    assert json_of(handler.only) == {"file_name": "clip.mp4", "file_size": 10485760, "file_type": "video/mp4"}
    assert (ticket.taskid, ticket.max_chunk_bytes) == ("task-1", 1048576)


def test_init_upload_accepts_surface_b_upload_id(make_client: Callable[[Handler], AimiClient]) -> None:
    ticket = make_client(Recorder({"upload_id": "up-9"})).init_upload("a.mp4", 1, "video/mp4")
    assert (ticket.taskid, ticket.max_chunk_bytes) == ("up-9", None)


def test_upload_chunk_bytes(make_client: Callable[[Handler], AimiClient]) -> None:
    handler = Recorder({"taskid": "task-1", "chunk_index": 3, "received": True})
    ack = make_client(handler).upload_chunk("task-1", 3, b"\x00\x01\x02", 3)
    request = handler.only
    assert_api_call(request, "upload_chunk")
    assert request.headers["content-type"] == "application/octet-stream"
    assert request.headers["x-upload-id"] == "task-1"
    assert request.headers["x-chunk-index"] == "3"
    assert request.headers["content-length"] == "3"
    assert request.content == b"\x00\x01\x02"
    assert (ack.taskid, ack.chunk_index, ack.received) == ("task-1", 3, True)


class PieceTransport(httpx.BaseTransport):
    """Reads a request body piece by piece, as a socket would (``MockTransport`` joins it first)."""

    def __init__(self, before_body: Callable[[httpx.Request], None]) -> None:
        self.before_body = before_body
        self.pieces: list[bytes] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.before_body(request)
        assert isinstance(request.stream, httpx.SyncByteStream)
        self.pieces.extend(request.stream)
        return httpx.Response(200, json={})


def test_upload_chunk_streams_an_iterable_without_joining_it() -> None:
    produced: list[bytes] = []

    def pieces() -> Iterator[bytes]:
        for piece in (b"abc", b"de", b"fghij"):
            produced.append(piece)
            yield piece

    def before_body(request: httpx.Request) -> None:
        assert produced == []  # nothing was read before the request went out
        assert_api_call(request, "upload_chunk")
        assert request.headers["content-length"] == "10"
        assert "transfer-encoding" not in request.headers
        assert request.headers["x-chunk-index"] == "0"

    transport = PieceTransport(before_body)
    client = AimiClient(httpx.Client(base_url=BASE_URL, transport=transport), SecretStr(API_KEY))
    ack = client.upload_chunk("task-1", 0, pieces(), 10)
    client.close()
    assert transport.pieces == [b"abc", b"de", b"fghij"]
    assert ack.received is None


@pytest.mark.parametrize(
    ("index", "content", "size"),
    [
        (0, b"abc", 4),
        (-1, b"abc", 3),
        (0, b"", 0),
        (0, b"x" * 11, 11),
    ],
)
def test_upload_chunk_refuses_bad_arguments_before_sending(
    make_client: Callable[..., AimiClient], index: int, content: bytes, size: int
) -> None:
    handler = Recorder({})
    with pytest.raises(ValueError, match="chunk"):
        make_client(handler, max_chunk_bytes=10).upload_chunk("task-1", index, content, size)
    assert handler.requests == []


@pytest.mark.parametrize("pieces", [[b"abc", b"d"], [b"ab"]])
def test_upload_chunk_iterable_must_match_its_size(
    make_client: Callable[[Handler], AimiClient], pieces: list[bytes]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        return httpx.Response(200, json={})

    with pytest.raises(ValueError, match="declared"):
        make_client(handler).upload_chunk("task-1", 0, iter(pieces), 3)


def test_complete_upload(make_client: Callable[[Handler], AimiClient]) -> None:
    handler = Recorder({"taskid": "task-1", "status": "complete", "size": 10240, "sha256": "ab" * 32})
    done = make_client(handler).complete_upload("task-1", 4)
    assert_api_call(handler.only, "upload_complete")
    assert json_of(handler.only) == {"taskid": "task-1", "total_chunks": 4}
    assert (done.status, done.size, done.sha256) == ("complete", 10240, "ab" * 32)


def test_analyze_video_and_audio(make_client: Callable[[Handler], AimiClient]) -> None:
    video = Recorder({"taskid": "task-1", "analysis": {"scenes": [0, 4.2]}})
    assert make_client(video).analyze_video("task-1") == {"scenes": [0, 4.2]}
    assert_api_call(video.only, "video_analysis")
    assert json_of(video.only) == {"taskid": "task-1"}

    audio = Recorder({"taskid": "task-1", "audio_analysis": {"speech": [[1, 2]]}})
    assert make_client(audio).analyze_audio("task-1") == {"speech": [[1, 2]]}
    assert_api_call(audio.only, "audio_analysis")
    assert json_of(audio.only) == {"taskid": "task-1"}


def test_generate_plan_multipart(make_client: Callable[[Handler], AimiClient]) -> None:
    plan = {"id": "p-1", "sections": [{"tempo": 120}]}
    handler = Recorder({"plan": plan})
    options = {"with_vocals": False, "with_voiceover": True, "genre": None, "multitrack": True}
    result = make_client(handler).generate_plan(
        "task-1", {"scenes": [0]}, options, audio_analysis={"speech": []}
    )
    request = handler.only
    assert_api_call(request, "generate")
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    parts = multipart_parts(request)
    assert list(parts) == ["analysis", "audio_analysis", "payload"]
    analysis = parts["analysis"]
    assert analysis.get_content_type() == "application/json"
    assert analysis.get_param("filename", header="content-disposition") == "analysis.json"
    assert part_json(analysis) == {"scenes": [0]}
    assert parts["audio_analysis"].get_content_type() == "application/json"
    assert part_json(parts["audio_analysis"]) == {"speech": []}
    payload = parts["payload"]
    assert payload.get_param("filename", header="content-disposition") is None
    assert payload.get_content_type() == "application/json"
    # None options are left out: no genre lets Aimi choose one.
    assert part_json(payload) == {
        "taskid": "task-1",
        "with_vocals": False,
        "with_voiceover": True,
        "multitrack": True,
    }
    assert result == plan


def test_generate_plan_without_audio_analysis(make_client: Callable[[Handler], AimiClient]) -> None:
    handler = Recorder({"plan": {"sections": []}})
    make_client(handler).generate_plan("task-1", {}, {})
    assert list(multipart_parts(handler.only)) == ["analysis", "payload"]


def test_generate_plan_refuses_taskid_in_options(make_client: Callable[[Handler], AimiClient]) -> None:
    with pytest.raises(ValueError, match="taskid"):
        make_client(Recorder({})).generate_plan("task-1", {}, {"taskid": "other"})


def test_execute(make_client: Callable[[Handler], AimiClient]) -> None:
    handler = Recorder({"execid": "ex-1"})
    plan = {"sections": [{"tempo": 120}]}
    assert make_client(handler).execute("task-1", plan) == "ex-1"
    assert_api_call(handler.only, "execute")
    assert json_of(handler.only) == {"taskid": "task-1", "plan": plan}


def test_status_is_a_post(make_client: Callable[[Handler], AimiClient]) -> None:
    handler = Recorder({"status": "pending", "url": None, "message": "waiting"})
    execution = make_client(handler).status("ex-1")
    assert_api_call(handler.only, "status")
    assert json_of(handler.only) == {"execid": "ex-1"}
    assert (execution.status, execution.message) == ("pending", "waiting")


def test_every_endpoint_is_a_flat_surface_a_path() -> None:
    assert all(path.startswith("/sync_") and path.count("/") == 1 for path in ENDPOINTS.values())


def test_download_sends_no_token(make_client: Callable[[Handler], AimiClient], tmp_path: Path) -> None:
    handler = Recorder(b"mp4-bytes")
    download = make_client(handler).download(OUTPUT_URL, FileStore(tmp_path).sink("out.mp4"), max_bytes=100)
    assert handler.only.url == httpx.URL(OUTPUT_URL)
    assert "authorization" not in handler.only.headers
    assert (download.bytes, (tmp_path / "out.mp4").read_bytes()) == (9, b"mp4-bytes")


# --- status parsing ---------------------------------------------------------------------------

FAILED_REPORT = "https://storage.googleapis.com/bucket/ex-1-failed.json"


@pytest.mark.parametrize(
    ("body", "terminal", "success", "url"),
    [
        ({"status": "pending", "url": None, "message": "submitted"}, False, False, None),
        ({"status": "processing", "url": None, "message": "try again"}, False, False, None),
        (
            {
                "status": "finished",
                "url": "https://storage.googleapis.com/bucket/ex-1.mp4",
                "queryurl": "https://storage.googleapis.com/bucket/ex-1-results.json",
                "message": "ready",
            },
            True,
            True,
            "https://storage.googleapis.com/bucket/ex-1.mp4",
        ),
        ({"status": "error", "url": FAILED_REPORT, "message": "see report"}, True, False, FAILED_REPORT),
        ({"status": "inactive", "videourl": None, "message": "no active execution"}, True, False, None),
        ({"status": "finished", "videourl": "https://s/x.mp4"}, True, True, "https://s/x.mp4"),
        ({"status": "queued_somewhere_new"}, False, False, None),
    ],
)
def test_status_parsing(body: dict[str, Any], terminal: bool, success: bool, url: str | None) -> None:
    execution = Execution.model_validate(body)
    assert (execution.is_terminal, execution.is_success, execution.url) == (terminal, success, url)


def test_status_sets() -> None:
    assert set(ExecutionStatus) == {"pending", "processing", "finished", "error", "inactive"}
    assert set(ExecutionStatus.TERMINAL) == {"finished", "error", "inactive"}
    assert set(ExecutionStatus.IN_FLIGHT) == {"pending", "processing"}


def test_finished_status_keeps_queryurl(make_client: Callable[[Handler], AimiClient]) -> None:
    body = {"status": "finished", "url": "https://s/ex.mp4", "queryurl": "https://s/ex-results.json"}
    execution = make_client(Recorder(body)).status("ex-1")
    assert execution.queryurl == "https://s/ex-results.json"


# --- errors -----------------------------------------------------------------------------------

ERROR_ROWS: list[tuple[int, Any, dict[str, str], type[ProviderError], str]] = [
    (400, {"message": "unknown taskid"}, {}, BadRequest, "unknown taskid"),
    (401, {"message": "token expired"}, {}, AuthFailed, "token expired"),
    (403, {"detail": "forbidden"}, {}, AuthFailed, "forbidden"),
    (404, {"message": "no such task"}, {}, NotFound, "no such task"),
    (413, {"message": "chunk too large"}, {}, BadRequest, "chunk too large"),
    (413, b"", {}, BadRequest, "Request Entity Too Large"),
    (
        422,
        {"detail": [{"loc": ["body", "taskid"], "msg": "field required"}, {"msg": "bad plan"}]},
        {},
        BadRequest,
        "field required; bad plan",
    ),
    (
        400,
        {"message": "invalid plan", "detail": "sections empty"},
        {},
        BadRequest,
        "invalid plan: sections empty",
    ),
    (429, {"message": "Cooldown: status polled too often"}, {"Retry-After": "7"}, RateLimited, "Cooldown"),
    (
        429,
        {"message": "Too many executions: at most 10 at a time"},
        {"Retry-After": "30"},
        ConcurrencyLimited,
        "Too many executions",
    ),
    (429, b"", {}, RateLimited, "Too Many Requests"),
    (500, {"message": "internal error"}, {}, ProviderUnavailable, "internal error"),
    (502, b"<html><body>Bad Gateway</body></html>", {}, ProviderUnavailable, "Bad Gateway"),
    (503, {"error": "Service Unavailable"}, {}, ProviderUnavailable, "Service Unavailable"),
]


@pytest.mark.parametrize("row", ERROR_ROWS, ids=lambda row: f"{row[0]}-{row[4]}")
def test_error_mapping(
    make_client: Callable[[Handler], AimiClient],
    row: tuple[int, Any, dict[str, str], type[ProviderError], str],
) -> None:
    status_code, body, headers, expected, message = row
    handler = Recorder(body, status_code, {**headers, "x-request-id": "req-1"})
    with pytest.raises(ProviderError) as caught:
        make_client(handler).status("ex-1")
    error = caught.value
    assert type(error) is expected
    assert (error.provider, error.status_code, error.request_id) == ("aimi", status_code, "req-1")
    assert message in error.message
    if isinstance(error, Throttled):
        assert error.retry_after_s == (float(headers["Retry-After"]) if headers else None)


@pytest.mark.parametrize(
    ("status_code", "message", "expected"),
    [
        (429, "cooldown period active", RateLimited),
        (429, "Cool-down: polling execution status too frequently", RateLimited),
        (429, "rate limit exceeded", RateLimited),
        (429, "maximum concurrent executions reached", ConcurrencyLimited),
        (429, "10 executions in parallel already", ConcurrencyLimited),
        (429, "generate later", RateLimited),
        (429, "", RateLimited),
        (413, "chunk too large", BadRequest),
        (408, "", ProviderUnavailable),
        (418, "", BadRequest),
        (504, "", ProviderUnavailable),
    ],
)
def test_error_class_table(status_code: int, message: str, expected: type[ProviderError]) -> None:
    assert error_class(status_code, message) is expected


@pytest.mark.parametrize(
    "failure", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("reset")]
)
def test_network_failures_are_unavailable(
    make_client: Callable[[Handler], AimiClient], failure: httpx.RequestError
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise failure

    with pytest.raises(ProviderUnavailable) as caught:
        make_client(handler).execute("task-1", {"sections": []})
    assert_no_secret(caught.value)


@pytest.mark.parametrize("body", [b"not json", {"unexpected": True}, {"plan": "not an object"}])
def test_unreadable_success_is_unavailable(make_client: Callable[[Handler], AimiClient], body: Any) -> None:
    with pytest.raises(ProviderUnavailable, match="unreadable POST /sync_generate"):
        make_client(Recorder(body)).generate_plan("task-1", {}, {})


def test_secrets_never_reach_errors(make_client: Callable[[Handler], AimiClient]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        echoed = f"bad header {request.headers['authorization']} for token {API_KEY}"
        return httpx.Response(401, json={"message": echoed, "detail": API_KEY})

    client = make_client(handler)
    with pytest.raises(AuthFailed) as caught:
        client.init_upload("a.mp4", 1, "video/mp4")
    assert_no_secret(caught.value)
    assert "***" in caught.value.message
    assert caught.value.message.endswith("(Aimi refused genq's credentials; check GENQ_AIMI__API_KEY)")
    assert API_KEY not in repr(client)


# --- settings and factory ---------------------------------------------------------------------


def test_settings_defaults_and_account() -> None:
    settings = AimiSettings(api_key=SecretStr(API_KEY))
    assert settings.base_url == "https://api.sync.aimi.fm"
    assert (settings.concurrency, settings.status_interval_s, settings.check_interval_s) == (10, 5.0, 5.0)
    assert (settings.max_chunk_bytes, settings.rate.limit, settings.max_wait_s) == (30_000_000, 600, 3600)
    assert settings.configured
    assert not AimiSettings().configured
    assert len(settings.account) == 12
    assert settings.account != AimiSettings(api_key=SecretStr(API_KEY), base_url="http://sim").account
    assert API_KEY not in repr(settings)


def test_from_settings_keeps_the_token_off_the_http_client() -> None:
    settings = AimiSettings(api_key=SecretStr(API_KEY), base_url="http://127.0.0.1:9/", max_chunk_bytes=5)
    client = AimiClient.from_settings(settings, None)  # type: ignore[arg-type]
    try:
        assert "127.0.0.1:9" in repr(client)
        assert API_KEY not in repr(client)
        with pytest.raises(ValueError, match=r"1\.\.5"):
            client.upload_chunk("task-1", 0, b"x" * 6, 6)
    finally:
        client.close()
