from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import httpx
import pytest

from storage import FileStore
from worker.providers.aistudios.api import ENDPOINTS, error_class, unwrap
from worker.providers.aistudios.client import AIStudiosClient, AvatarModel, Progress, Project
from worker.providers.aistudios.webhook import webhook_token, webhook_url
from worker.providers.errors import (
    AuthFailed,
    BadRequest,
    Conflict,
    JobRejected,
    NotFound,
    PaymentRequired,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from worker.providers.http import OutputTooLarge, make_http_client

BASE_URL = "https://app.aistudios.test"
TOKEN = "eyJ-token-SECRET-0001"
NEW_TOKEN = "eyJ-token-SECRET-0002"
DOWNLOAD_URL = "https://cdn.aistudios.test/out/p-1.mp4?Signature=abc"

Handler = Callable[[httpx.Request], httpx.Response]


class FakeTokens:
    """A token source that hands out TOKEN, then NEW_TOKEN after a refresh."""

    def __init__(self) -> None:
        self.current = TOKEN
        self.refreshed: list[str] = []

    def token(self) -> str:
        return self.current

    def refresh(self, stale: str) -> str:
        self.refreshed.append(stale)
        self.current = NEW_TOKEN
        return self.current


@pytest.fixture
def tokens() -> FakeTokens:
    return FakeTokens()


@pytest.fixture
def make_client(tokens: FakeTokens) -> Iterator[Callable[..., AIStudiosClient]]:
    clients: list[AIStudiosClient] = []

    def factory(handler: Handler, workspace_id: str | None = None) -> AIStudiosClient:
        http = make_http_client(
            BASE_URL,
            connect_timeout_s=1,
            read_timeout_s=3,
            headers={"accept": "application/json"},
            transport=httpx.MockTransport(handler),
        )
        client = AIStudiosClient(http, tokens, workspace_id=workspace_id)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


def ok(data: Any) -> dict[str, Any]:
    return {"success": True, "data": data}


def fail(code: str | int | None, msg: str | None) -> dict[str, Any]:
    return {"success": False, "error": {"code": code, "msg": msg}}


def respond(status_code: int, body: Any = None, headers: dict[str, str] | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, dict | list):
            return httpx.Response(status_code, json=body, headers=headers)
        return httpx.Response(status_code, content=body or b"", headers=headers)

    return handler


def recording(seen: list[httpx.Request], data: Any) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=ok(data))

    return handler


def assert_no_secret(error: BaseException) -> None:
    for text in (str(error), repr(error), getattr(error, "message", "")):
        assert TOKEN not in text
        assert NEW_TOKEN not in text


# --- paths, headers and bodies ---------------------------------------------------------------


class Call(NamedTuple):
    name: str
    invoke: Callable[[AIStudiosClient], Any]
    method: str
    path: str
    body: Any
    data: Any
    result: Any


PROJECT = {"name": "demo", "scenes": [{"sceneIdx": 0, "clips": []}]}

CALLS = [
    Call(
        "create",
        lambda c: c.create_project(PROJECT, export=True, resolution="720", webhook_url="https://h/w?j=1"),
        "POST",
        "/api/odin/v3/editor/project",
        {**PROJECT, "isExport": True, "resolution": "720", "webhookUrl": "https://h/w?j=1"},
        {"projectId": "p-1"},
        "p-1",
    ),
    Call(
        "create without export",
        lambda c: c.create_project(PROJECT, export=False, workspace_id="ws-9"),
        "POST",
        "/api/odin/v3/editor/project",
        {**PROJECT, "isExport": False, "workspaceId": "ws-9"},
        {"projectId": "p-2"},
        "p-2",
    ),
    Call(
        "export",
        lambda c: c.export("p-1", resolution="4k"),
        "POST",
        "/api/odin/v3/editor/project/export",
        {"projectId": "p-1", "resolution": "4k"},
        {"projectId": "p-1"},
        "p-1",
    ),
    Call(
        "export without an id in the answer",
        lambda c: c.export("p-3"),
        "POST",
        "/api/odin/v3/editor/project/export",
        {"projectId": "p-3"},
        {},
        "p-3",
    ),
    Call(
        "progress",
        lambda c: c.progress("p/1"),
        "GET",
        "/api/odin/v3/editor/progress/p%2F1",
        None,
        {"progress": 42.5, "state": "exporting"},
        Progress(progress=42.5, state="exporting"),
    ),
    Call(
        "get project",
        lambda c: c.get_project("p-1"),
        "GET",
        "/api/odin/v3/editor/project/p-1",
        None,
        {"project": {"_id": "p-1", "state": "exported", "progress": 100, "download_url": DOWNLOAD_URL}},
        Project(id="p-1", state="exported", progress=100, download_url=DOWNLOAD_URL),
    ),
    Call(
        "delete",
        lambda c: c.delete_projects(["p-1", "p-2"]),
        "DELETE",
        "/api/odin/v3/editor/project",
        {"ids": ["p-1", "p-2"]},
        {"deletedCount": 2},
        2,
    ),
    Call("models", lambda c: c.models(), "GET", "/api/odin/v3/model", None, {"models": []}, []),
]


@pytest.mark.parametrize("call", CALLS, ids=[call.name for call in CALLS])
def test_paths_headers_and_bodies(make_client, call: Call) -> None:
    seen: list[httpx.Request] = []
    client = make_client(recording(seen, call.data))
    assert call.invoke(client) == call.result
    (request,) = seen
    assert request.method == call.method
    assert request.url.raw_path.decode() == call.path
    assert request.headers["authorization"] == TOKEN  # raw, no "Bearer"
    assert request.headers["content-type"] == "application/json"
    assert (json.loads(request.content) if request.content else None) == call.body


def test_every_path_is_v3() -> None:
    assert all(path.startswith("/api/odin/v3/") for _, path in ENDPOINTS.values())


def test_default_workspace_applies_unless_overridden(make_client) -> None:
    seen: list[httpx.Request] = []
    client = make_client(recording(seen, {"projectId": "p-1"}), workspace_id="ws-default")
    client.export("p-1")
    client.export("p-1", workspace_id="ws-other")
    assert [json.loads(r.content)["workspaceId"] for r in seen] == ["ws-default", "ws-other"]


def test_create_arguments_win_over_the_project_json(make_client) -> None:
    seen: list[httpx.Request] = []
    client = make_client(recording(seen, {"projectId": "p-1"}))
    client.create_project({**PROJECT, "isExport": True}, export=False)
    assert json.loads(seen[0].content)["isExport"] is False


def test_invalid_arguments_send_nothing(make_client) -> None:
    seen: list[httpx.Request] = []
    client = make_client(recording(seen, {}))
    with pytest.raises(ValueError, match="resolution"):
        client.create_project(PROJECT, export=True, resolution="2160")
    with pytest.raises(ValueError, match="project_id"):
        client.progress("")
    assert client.delete_projects([]) == 0
    assert seen == []


def test_models_parse_leniently(make_client) -> None:
    data = {
        "models": [
            {
                "id": "M000045058",
                "label": {"ko": "모델", "en": "Model"},
                "thumbnail": "https://t/m.png",
                "clothes": [{"id": "BG00002320", "label": {"en": "Suit"}, "extra": 1}],
                "new": True,
            },
            {"id": 7},
        ]
    }
    models = make_client(respond(200, ok(data))).models()
    assert [type(m) for m in models] == [AvatarModel, AvatarModel]
    assert models[0].label is not None and models[0].label.en == "Model"
    assert models[0].clothes[0].id == "BG00002320"
    assert models[1].id == "7"
    assert models[1].clothes == []


@pytest.mark.parametrize(
    ("data", "done"),
    [
        ({"progress": 100, "downloadUrl": DOWNLOAD_URL}, True),
        ({"progress": 100.0, "downloadUrl": DOWNLOAD_URL, "state": "exported"}, True),
        ({"progress": 100}, False),
        ({"progress": 100, "downloadUrl": ""}, False),
        ({"progress": 99.99, "downloadUrl": DOWNLOAD_URL}, False),
        ({"progress": None}, False),
        ({}, False),
    ],
)
def test_progress_done(make_client, data: dict[str, Any], done: bool) -> None:
    assert make_client(respond(200, ok(data))).progress("p-1").done is done


def test_progress_dumps_the_wire_names() -> None:
    progress = Progress.model_validate({"progress": "50", "downloadUrl": "u", "state": "s", "more": 1})
    wire = {"progress": 50.0, "downloadUrl": "u", "state": "s"}
    assert progress.model_dump(mode="json", by_alias=True) == wire


def test_project_parses_leniently(make_client) -> None:
    project = {"_id": "p-1", "name": "n", "backendTaskId": "bt-1", "creditSubstracted": True, "scenes": []}
    parsed = make_client(respond(200, ok({"project": project}))).get_project("p-1")
    assert (parsed.id, parsed.backend_task_id, parsed.credit_subtracted) == ("p-1", "bt-1", True)
    assert parsed.state is None and parsed.download_url is None


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status_code", "code", "render_status", "expected"),
    [
        (200, None, False, BadRequest),
        (200, "E1", True, JobRejected),
        (200, "INVALID_CREDENTIALS", False, AuthFailed),
        (200, "INVALID_CREDENTIALS", True, AuthFailed),
        (400, None, False, BadRequest),
        (401, None, False, AuthFailed),
        (401, "INVALID_CREDENTIALS", False, AuthFailed),
        (402, None, False, PaymentRequired),
        (403, None, False, AuthFailed),
        (404, None, True, NotFound),
        (408, None, False, ProviderUnavailable),
        (409, None, False, Conflict),
        (418, None, False, BadRequest),
        (422, None, False, BadRequest),
        (429, None, False, RateLimited),
        (500, None, True, ProviderUnavailable),
        (503, "E2", False, ProviderUnavailable),
    ],
)
def test_error_class(status_code: int, code: str | None, render_status: bool, expected: type) -> None:
    assert error_class(status_code, code, render_status=render_status) is expected


class ErrorCase(NamedTuple):
    name: str
    status_code: int
    body: Any
    expected: type[ProviderError]
    code: str | None
    message: str


ERROR_CASES = [
    ErrorCase("200 success false", 200, fail("INVALID_SCENE", "scene 0 has no clips"), BadRequest,
              "INVALID_SCENE", "scene 0 has no clips"),
    ErrorCase("400 envelope", 400, fail("BAD", "bad body"), BadRequest, "BAD", "bad body"),
    ErrorCase("402 credits", 402, fail("NO_CREDIT", "not enough credits"), PaymentRequired, "NO_CREDIT",
              "not enough credits"),
    ErrorCase("404 envelope", 404, fail(404, "project not found"), NotFound, "404", "project not found"),
    ErrorCase("404 plain text", 404, b"Not here", NotFound, None, "Not here"),
    ErrorCase("429", 429, fail("TOO_MANY", "slow down"), RateLimited, "TOO_MANY", "slow down"),
    ErrorCase("500 envelope", 500, fail("INTERNAL", "boom"), ProviderUnavailable, "INTERNAL", "boom"),
    ErrorCase("502 html", 502, b"<html><title>502 Bad Gateway</title></html>", ProviderUnavailable, None,
              "502 Bad Gateway"),
    ErrorCase("504 empty", 504, b"", ProviderUnavailable, None, "Gateway Timeout"),
    ErrorCase("message instead of msg", 400, {"success": False, "message": "nope"}, BadRequest, None, "nope"),
    ErrorCase("error as a string", 400, {"success": False, "error": "nope"}, BadRequest, None, "nope"),
    ErrorCase("error without msg", 400, {"success": False, "error": {"code": "X"}}, BadRequest, "X",
              "Bad Request"),
    ErrorCase("2xx not JSON", 200, b"<html>maintenance</html>", ProviderUnavailable, None, "maintenance"),
    ErrorCase("2xx empty", 200, b"", ProviderUnavailable, None, "without an envelope"),
    ErrorCase("2xx JSON list", 200, ["odd"], ProviderUnavailable, None, '["odd"]'),
    ErrorCase("2xx without success", 200, {"data": {"project": {}}}, ProviderUnavailable, None,
              "without an envelope"),
    ErrorCase("2xx success not bool", 200, {"success": "yes", "data": {}}, ProviderUnavailable, None,
              "without an envelope"),
    ErrorCase("2xx unreadable data", 200, ok({"project": {"name": "no id"}}), ProviderUnavailable, None,
              "unreadable GET"),
]  # fmt: skip


@pytest.mark.parametrize("case", ERROR_CASES, ids=[case.name for case in ERROR_CASES])
def test_error_translation(make_client, tokens: FakeTokens, case: ErrorCase) -> None:
    client = make_client(respond(case.status_code, case.body, {"x-request-id": "req-7"}))
    with pytest.raises(ProviderError) as info:
        client.get_project("p-1")
    error = info.value
    assert type(error) is case.expected
    assert error.provider == "aistudios"
    assert error.code == case.code
    assert case.message in error.message
    assert error.retryable is (case.expected in (ProviderUnavailable, RateLimited))
    if case.name != "2xx unreadable data":
        assert (error.status_code, error.request_id) == (case.status_code, "req-7")
    assert tokens.refreshed == []
    assert_no_secret(error)


def test_progress_success_false_is_a_failed_render(make_client) -> None:
    client = make_client(respond(200, fail("RENDER_FAILED", "the render failed")))
    with pytest.raises(JobRejected) as info:
        client.progress("p-1")
    assert (info.value.code, info.value.message, info.value.retryable) == (
        "RENDER_FAILED",
        "the render failed",
        False,
    )


def test_progress_http_errors_are_not_render_failures(make_client) -> None:
    with pytest.raises(NotFound):
        make_client(respond(404, fail("NOT_FOUND", "no such project"))).progress("p-1")
    with pytest.raises(ProviderUnavailable):
        make_client(respond(200, b"not json")).progress("p-1")


@pytest.mark.parametrize(("headers", "expected_s"), [({}, None), ({"Retry-After": "7"}, 7.0)])
def test_429_retry_after(make_client, headers: dict[str, str], expected_s: float | None) -> None:
    client = make_client(respond(429, fail("RATE", "slow down"), headers))
    with pytest.raises(RateLimited) as info:
        client.models()
    assert info.value.retry_after_s == expected_s


def test_error_messages_never_echo_the_token(make_client) -> None:
    client = make_client(respond(400, fail("BAD_TOKEN", f"token {TOKEN} is malformed")))
    with pytest.raises(BadRequest) as info:
        client.models()
    assert "***" in info.value.message
    assert_no_secret(info.value)


HOOK_TOKEN = webhook_token("aistudios-unit-webhook-secret", "job-7")
HOOK_URL = webhook_url("https://hooks.example.com/aistudios", "aistudios-unit-webhook-secret", "job-7")


@pytest.mark.parametrize(
    ("call", "answer"),
    [
        # the create call knows the URL it sent: the token is scrubbed wherever the answer quotes it
        ("create", respond(400, fail("INVALID_PROJECT", f"webhookUrl {HOOK_URL} is unreachable"))),
        ("create", respond(422, fail("INVALID_PROJECT", f"callback token {HOOK_TOKEN} was refused"))),
        ("export", respond(502, f"<html>upstream error: {{'webhookUrl': '{HOOK_URL}'}}</html>".encode())),
        ("export", respond(400, f"bad webhookUrl={quote(str(HOOK_URL), safe='')}".encode())),
        # the progress call does not: the token= parameter is scrubbed from any error
        ("progress", respond(200, fail("RENDER_FAILED", f"could not notify {HOOK_URL}"))),
        (
            "progress",
            respond(500, b"upstream: " + json.dumps({"url": HOOK_URL}).replace("=", "\\u003d").encode()),
        ),
    ],
)
def test_an_error_that_echoes_the_jobs_webhook_token_never_repeats_it(
    make_client, call: str, answer: Handler
) -> None:
    client = make_client(answer)
    invoke = {
        "create": lambda: client.create_project(PROJECT, export=True, webhook_url=HOOK_URL),
        "export": lambda: client.export("p-1", webhook_url=HOOK_URL),
        "progress": lambda: client.progress("p-1"),
    }[call]
    with pytest.raises(ProviderError) as info:
        invoke()
    for text in (str(info.value), repr(info.value), info.value.message, *map(str, info.value.args)):
        assert HOOK_TOKEN not in text
    assert "***" in info.value.message


def test_unwrap_redacts_given_secrets_without_a_request_header() -> None:
    request = httpx.Request("POST", f"{BASE_URL}/api/odin/v3/auth/token")
    response = httpx.Response(401, json=fail("INVALID_CREDENTIALS", "bad key app-42"), request=request)
    with pytest.raises(AuthFailed) as info:
        unwrap(response, secrets=["app-42"])
    assert "app-42" not in str(info.value)


def test_connect_failure_is_retryable_and_quiet(make_client) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ProviderUnavailable) as info:
        make_client(handler).progress("p-1")
    assert_no_secret(info.value)


def test_repr_shows_no_token(make_client) -> None:
    assert TOKEN not in repr(make_client(respond(200, ok({}))))


# --- 401: one refresh, one retry -------------------------------------------------------------


def test_401_refreshes_once_and_retries(make_client, tokens: FakeTokens) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        if request.headers["authorization"] != NEW_TOKEN:
            return httpx.Response(401, json=fail("UNAUTHORIZED", "token expired"))
        return httpx.Response(200, json=ok({"progress": 10}))

    assert make_client(handler).progress("p-1").progress == 10
    assert seen == [TOKEN, NEW_TOKEN]
    assert tokens.refreshed == [TOKEN]


def test_second_401_is_auth_failed(make_client, tokens: FakeTokens) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(401, json=fail("UNAUTHORIZED", f"token {request.headers['authorization']}"))

    with pytest.raises(AuthFailed) as info:
        make_client(handler).create_project(PROJECT, export=True)
    assert seen == [TOKEN, NEW_TOKEN]
    assert tokens.refreshed == [TOKEN]
    assert info.value.status_code == 401
    assert info.value.message.endswith(
        "(AI Studios refused genq's credentials; check GENQ_AISTUDIOS__APP_ID and GENQ_AISTUDIOS__USER_KEY)"
    )
    assert_no_secret(info.value)


# --- download --------------------------------------------------------------------------------


def test_download_sends_no_token(make_client, tmp_path: Path) -> None:
    payload = b"\x00\x00\x00\x18ftypmp42" * 100
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=payload)

    download = make_client(handler).download(
        DOWNLOAD_URL, FileStore(tmp_path).sink("out.mp4"), max_bytes=len(payload)
    )
    (request,) = seen
    assert str(request.url) == DOWNLOAD_URL
    assert "authorization" not in request.headers
    assert TOKEN not in str(request.headers.raw)
    assert download.bytes == len(payload)
    assert download.sha256 == hashlib.sha256(payload).hexdigest()
    assert (tmp_path / "out.mp4").read_bytes() == payload


@pytest.mark.parametrize("declare_length", [True, False])
def test_download_size_cap(make_client, tmp_path: Path, declare_length: bool) -> None:
    payload = b"x" * 5000

    def handler(request: httpx.Request) -> httpx.Response:
        if declare_length:
            return httpx.Response(200, content=payload)
        return httpx.Response(200, content=iter([payload[:2500], payload[2500:]]))

    with pytest.raises(OutputTooLarge):
        make_client(handler).download(DOWNLOAD_URL, FileStore(tmp_path).sink("out.mp4"), max_bytes=4096)
    assert list(tmp_path.iterdir()) == []
