from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest

from worker.providers.errors import (
    AuthFailed,
    BadRequest,
    Conflict,
    NotFound,
    PaymentRequired,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from worker.providers.http import (
    Download,
    OutputTooLarge,
    error_class_for_status,
    make_http_client,
    parse_retry_after,
    redact,
    retry_after_from_headers,
    send_with_connect_retry,
    stream_to_file,
)

API_KEY = "sk-test-0123456789abcdef"
SIGNED_URL = "https://storage.test/out/video.mp4?X-Amz-Signature=deadbeef&X-Amz-Expires=600"
NOW = 1_700_000_000.0

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def make_client() -> Iterator[Callable[[Handler], httpx.Client]]:
    clients: list[httpx.Client] = []

    def factory(handler: Handler) -> httpx.Client:
        client = make_http_client(
            "https://api.test",
            connect_timeout_s=2.0,
            read_timeout_s=7.0,
            headers={"x-api-key": API_KEY},
            transport=httpx.MockTransport(handler),
        )
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


class _Stream(httpx.SyncByteStream):
    """A response body in chunks, optionally failing after them (no Content-Length)."""

    def __init__(self, chunks: list[bytes], error: Exception | None = None) -> None:
        self.chunks = chunks
        self.error = error

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        if self.error is not None:
            raise self.error


def _http_date(offset_s: float) -> str:
    return format_datetime(datetime.fromtimestamp(NOW + offset_s, tz=UTC), usegmt=True)


def _files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --- make_http_client ------------------------------------------------------------------------


def test_make_http_client_sets_explicit_timeouts_base_url_and_headers() -> None:
    with make_http_client(
        "https://api.test", connect_timeout_s=2.0, read_timeout_s=7.0, headers={"x-api-key": API_KEY}
    ) as client:
        assert client.timeout == httpx.Timeout(connect=2.0, read=7.0, write=7.0, pool=2.0)
        assert client.base_url == httpx.URL("https://api.test")
        assert client.headers["x-api-key"] == API_KEY
        assert client.follow_redirects is False


# --- Retry-After -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected_s"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("5", 5.0),
        (" 1.5 ", 1.5),
        ("0", 0.0),
        ("-3", 0.0),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        (_http_date(120), 120.0),
        (_http_date(-60), 0.0),
        ("Wed, 99 Foo 2024 25:00:00 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected_s: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected_s


def test_parse_retry_after_http_date_defaults_to_current_time() -> None:
    in_a_minute = format_datetime(datetime.now(tz=UTC) + timedelta(seconds=60), usegmt=True)
    seconds = parse_retry_after(in_a_minute)
    assert seconds is not None
    assert 55 <= seconds <= 60


@pytest.mark.parametrize(
    ("headers", "expected_s"),
    [
        ({}, None),
        ({"Retry-After": "4"}, 4.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25),
        ({"retry-after-ms": "junk", "Retry-After": "9"}, 9.0),
        ({"Retry-After": _http_date(30)}, 30.0),
    ],
)
def test_retry_after_from_headers(headers: dict[str, str], expected_s: float | None) -> None:
    assert retry_after_from_headers(httpx.Headers(headers), now=NOW) == expected_s


# --- status table ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status_code", "expected"),
    [
        (400, BadRequest),
        (401, AuthFailed),
        (402, PaymentRequired),
        (403, AuthFailed),
        (404, NotFound),
        (408, ProviderUnavailable),
        (409, Conflict),
        (410, BadRequest),
        (413, BadRequest),
        (422, BadRequest),
        (429, RateLimited),
        (500, ProviderUnavailable),
        (502, ProviderUnavailable),
        (503, ProviderUnavailable),
        (504, ProviderUnavailable),
        (599, ProviderUnavailable),
        (304, ProviderError),
    ],
)
def test_error_class_for_status(status_code: int, expected: type[ProviderError]) -> None:
    assert error_class_for_status(status_code) is expected


def test_redact_replaces_secrets_longest_first() -> None:
    assert redact(f"bad key Bearer {API_KEY}!", [f"Bearer {API_KEY}", API_KEY]) == "bad key ***!"
    assert redact("short ab", ["ab"]) == "short ab"


# --- send_with_connect_retry -----------------------------------------------------------------


@pytest.mark.parametrize("failure", [httpx.ConnectError, httpx.ConnectTimeout])
def test_connect_failures_are_retried_in_place(make_client, failure: type[httpx.TransportError]) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) < 3:
            raise failure("refused", request=request)
        return httpx.Response(200, json={"ok": True})

    client = make_client(handler)
    response = send_with_connect_retry(client, client.build_request("GET", "/x"), delay_s=0, provider="p")
    assert response.json() == {"ok": True}
    assert len(calls) == 3


def test_connect_failure_after_all_attempts_is_provider_unavailable(make_client) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("connection refused", request=request)

    client = make_client(handler)
    request = client.build_request("GET", "/v2/x", params={"sig": "secret-signature"})
    with pytest.raises(ProviderUnavailable) as info:
        send_with_connect_retry(client, request, attempts=4, delay_s=0, provider="p")
    assert len(calls) == 4
    assert info.value.retryable
    assert info.value.provider == "p"
    assert "ConnectError" in str(info.value)
    assert "after 4 attempts" in str(info.value)
    assert "secret-signature" not in str(info.value)
    assert API_KEY not in str(info.value) + repr(info.value)
    assert isinstance(info.value.__cause__, httpx.ConnectError)


@pytest.mark.parametrize(
    "failure",
    [httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout, httpx.ReadError, httpx.RemoteProtocolError],
)
def test_slow_or_mid_request_failures_are_not_retried(
    make_client, failure: type[httpx.TransportError]
) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise failure("boom", request=request)

    client = make_client(handler)
    with pytest.raises(ProviderUnavailable, match=failure.__name__):
        send_with_connect_retry(client, client.build_request("POST", "/x"), delay_s=0, provider="p")
    assert len(calls) == 1


def test_send_returns_error_statuses_untranslated(make_client) -> None:
    client = make_client(lambda request: httpx.Response(500))
    assert send_with_connect_retry(client, client.build_request("GET", "/x"), provider="p").status_code == 500


def test_send_rejects_zero_attempts(make_client) -> None:
    client = make_client(lambda request: httpx.Response(200))
    with pytest.raises(ValueError, match="attempts"):
        send_with_connect_retry(client, client.build_request("GET", "/x"), attempts=0, provider="p")


# --- stream_to_file --------------------------------------------------------------------------


def test_stream_to_file_writes_atomically_with_sha256_and_no_api_key(make_client, tmp_path: Path) -> None:
    payload = b"\x00mp4" * 300_000
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=payload)

    client = make_client(handler)
    dest = tmp_path / "out" / "video.mp4"
    download = stream_to_file(client, SIGNED_URL, dest, max_bytes=len(payload), provider="p")

    assert download == Download(path=dest, bytes=len(payload), sha256=hashlib.sha256(payload).hexdigest())
    assert dest.read_bytes() == payload
    assert _files_in(dest.parent) == ["video.mp4"]
    [request] = seen
    assert str(request.url) == SIGNED_URL
    assert "x-api-key" not in request.headers
    assert "authorization" not in request.headers
    assert request.headers["accept-encoding"] == "identity"
    assert request.extensions["timeout"] == client.timeout.as_dict()


def test_stream_to_file_follows_redirects_without_api_key(make_client, tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "api.test":
            return httpx.Response(302, headers={"location": SIGNED_URL})
        return httpx.Response(200, content=b"video")

    client = make_client(handler)
    download = stream_to_file(
        client, "https://api.test/v2/dl/1", tmp_path / "v.mp4", max_bytes=10, provider="p"
    )
    assert download.bytes == 5
    assert [r.url.host for r in seen] == ["api.test", "storage.test"]
    assert all("x-api-key" not in r.headers for r in seen)


def test_stream_to_file_replaces_an_existing_file(make_client, tmp_path: Path) -> None:
    dest = tmp_path / "v.mp4"
    dest.write_bytes(b"stale and longer")
    client = make_client(lambda request: httpx.Response(200, content=b"fresh"))
    stream_to_file(client, SIGNED_URL, dest, max_bytes=100, provider="p")
    assert dest.read_bytes() == b"fresh"
    assert _files_in(tmp_path) == ["v.mp4"]


def test_stream_to_file_refuses_content_length_over_cap_before_writing(make_client, tmp_path: Path) -> None:
    client = make_client(lambda request: httpx.Response(200, content=b"x" * 101))
    with pytest.raises(OutputTooLarge) as info:
        stream_to_file(client, SIGNED_URL, tmp_path / "v.mp4", max_bytes=100, provider="p")
    assert isinstance(info.value, BadRequest)
    assert not info.value.retryable
    assert "Content-Length 101" in str(info.value)
    assert _files_in(tmp_path) == []


def test_stream_to_file_stops_when_streamed_count_exceeds_cap(make_client, tmp_path: Path) -> None:
    client = make_client(lambda request: httpx.Response(200, stream=_Stream([b"y" * 64] * 100)))
    with pytest.raises(OutputTooLarge, match="exceeds the cap of 1000 bytes"):
        stream_to_file(client, SIGNED_URL, tmp_path / "v.mp4", max_bytes=1000, provider="p")
    assert _files_in(tmp_path) == []


def test_stream_to_file_at_exactly_the_cap_succeeds(make_client, tmp_path: Path) -> None:
    client = make_client(lambda request: httpx.Response(200, stream=_Stream([b"a" * 60, b"b" * 40])))
    download = stream_to_file(client, SIGNED_URL, tmp_path / "v.mp4", max_bytes=100, provider="p")
    assert download.bytes == 100


class _Budget:
    """A job's output budget as a download sees it: records what it is told, refuses past ``cap``."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.told: list[int] = []

    def __call__(self, written_bytes: int) -> None:
        self.told.append(written_bytes)
        if written_bytes > self.cap:
            raise OutputTooLarge(
                f"over the job's cap of {self.cap}", provider="genq", code="output_too_large"
            )


def test_stream_to_file_tells_the_budget_the_declared_length_before_writing(
    make_client, tmp_path: Path
) -> None:
    budget = _Budget(cap=100)
    client = make_client(lambda request: httpx.Response(200, content=b"x" * 101))
    with pytest.raises(OutputTooLarge, match="job's cap"):
        stream_to_file(client, SIGNED_URL, tmp_path / "v.mp4", max_bytes=1000, provider="p", budget=budget)
    assert budget.told == [101]
    assert _files_in(tmp_path) == []


def test_stream_to_file_tells_the_budget_its_count_as_it_grows(make_client, tmp_path: Path) -> None:
    """Without a Content-Length, every 8 MiB and at the end; the download stops once the budget refuses,
    and leaves no partial file."""
    mib = 1024 * 1024
    chunks = [b"m" * mib] * 20
    budget = _Budget(cap=100 * mib)
    client = make_client(lambda request: httpx.Response(200, stream=_Stream(chunks)))
    download = stream_to_file(
        client, SIGNED_URL, tmp_path / "v.mp4", max_bytes=1000 * mib, provider="p", budget=budget
    )
    assert download.bytes == 20 * mib
    assert budget.told == [8 * mib, 16 * mib, 20 * mib]

    budget = _Budget(cap=12 * mib)
    client = make_client(lambda request: httpx.Response(200, stream=_Stream(chunks)))
    with pytest.raises(OutputTooLarge):
        stream_to_file(
            client, SIGNED_URL, tmp_path / "w.mp4", max_bytes=1000 * mib, provider="p", budget=budget
        )
    assert budget.told == [8 * mib, 16 * mib]
    assert _files_in(tmp_path) == ["v.mp4"]


def test_stream_to_file_with_a_declared_length_tells_the_budget_once(make_client, tmp_path: Path) -> None:
    budget = _Budget(cap=100)
    client = make_client(lambda request: httpx.Response(200, content=b"x" * 100))
    stream_to_file(client, SIGNED_URL, tmp_path / "v.mp4", max_bytes=100, provider="p", budget=budget)
    assert budget.told == [100]


@pytest.mark.parametrize(
    ("status_code", "expected"),
    [
        (403, AuthFailed),
        (404, NotFound),
        (410, BadRequest),
        (500, ProviderUnavailable),
        (503, ProviderUnavailable),
    ],
)
def test_stream_to_file_maps_error_statuses(
    make_client, tmp_path: Path, status_code: int, expected: type[ProviderError]
) -> None:
    body = b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
    client = make_client(
        lambda request: httpx.Response(status_code, content=body, headers={"x-amz-request-id": "amz-1"})
    )
    with pytest.raises(expected) as info:
        stream_to_file(client, SIGNED_URL, tmp_path / "v.mp4", max_bytes=100, provider="p")
    assert type(info.value) is expected
    assert info.value.status_code == status_code
    assert info.value.request_id == "amz-1"
    assert "Request has expired" in str(info.value)
    assert "deadbeef" not in str(info.value)
    assert _files_in(tmp_path) == []


def test_stream_to_file_throttled_download_carries_retry_after(make_client, tmp_path: Path) -> None:
    client = make_client(lambda request: httpx.Response(429, headers={"Retry-After": "3"}))
    with pytest.raises(RateLimited) as info:
        stream_to_file(client, SIGNED_URL, tmp_path / "v.mp4", max_bytes=100, provider="p")
    assert info.value.retry_after_s == 3.0


def test_stream_to_file_failure_mid_body_removes_partial_file(make_client, tmp_path: Path) -> None:
    stream = _Stream([b"z" * 500], error=httpx.ReadError("connection reset"))
    client = make_client(lambda request: httpx.Response(200, stream=stream))
    with pytest.raises(ProviderUnavailable, match="while downloading"):
        stream_to_file(client, SIGNED_URL, tmp_path / "v.mp4", max_bytes=10_000, provider="p")
    assert _files_in(tmp_path) == []


def test_stream_to_file_truncated_body_is_retryable(make_client, tmp_path: Path) -> None:
    client = make_client(
        lambda request: httpx.Response(200, stream=_Stream([b"q" * 10]), headers={"content-length": "20"})
    )
    with pytest.raises(ProviderUnavailable, match="truncated: 10 of 20"):
        stream_to_file(client, SIGNED_URL, tmp_path / "v.mp4", max_bytes=100, provider="p")
    assert _files_in(tmp_path) == []


def test_stream_to_file_connect_failures_retry_then_raise(make_client, tmp_path: Path) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("refused", request=request)

    client = make_client(handler)
    with pytest.raises(ProviderUnavailable) as info:
        stream_to_file(client, SIGNED_URL, tmp_path / "v.mp4", max_bytes=100, provider="p")
    assert len(calls) == 3
    assert "deadbeef" not in str(info.value)
    assert _files_in(tmp_path) == []


def test_stream_to_file_removes_partial_file_on_unexpected_errors(
    make_client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace

    def fail_replace(src: str, dst: str) -> None:
        if not str(dst).startswith(str(tmp_path)):  # os is patched for the whole process: another thread's
            return real_replace(src, dst)
        raise OSError("disk full")

    monkeypatch.setattr("storage.files.os.replace", fail_replace)
    client = make_client(lambda request: httpx.Response(200, content=b"data"))
    with pytest.raises(OSError, match="disk full"):
        stream_to_file(client, SIGNED_URL, tmp_path / "v.mp4", max_bytes=100, provider="p")
    assert _files_in(tmp_path) == []
