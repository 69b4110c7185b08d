"""Byte ranges and sizes of a music job's source video, read through the egress policy (its transport
replaced by ``httpx.MockTransport``: the address checks are tests/unit/test_egress.py's), streamed into an
Aimi chunk upload. What a source answers is the source's: never an Aimi error, never quoted."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from pydantic import SecretStr

from worker.providers.aimi.client import AimiClient
from worker.providers.aimi.source import RangeUnsupported, SourceReader
from worker.providers.egress import Egress, EgressSettings
from worker.providers.errors import EgressRefused, SourceRefused, SourceUnavailable, Throttled
from worker.providers.http import make_http_client

SOURCE_URL = "https://videos.example.test/in/clip.mp4?X-Goog-Signature=sig123"
VIDEO = bytes(range(256)) * 40  # 10240 bytes

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def reader() -> Iterator[Callable[[Handler], SourceReader]]:
    made: list[Egress] = []

    def factory(handler: Handler) -> SourceReader:
        made.append(Egress(EgressSettings(), transport=httpx.MockTransport(handler)))
        return SourceReader(made[-1])

    yield factory
    for egress in made:
        egress.close()


class WatchedStream(httpx.SyncByteStream):
    """A response body that records whether anyone read it."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces
        self.read = False

    def __iter__(self) -> Iterator[bytes]:
        self.read = True
        yield from self.pieces


def range_server(data: bytes, requests: list[httpx.Request]) -> Handler:
    """A source host that honours ``Range: bytes=a-b``."""

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        first, last = (int(n) for n in request.headers["range"].removeprefix("bytes=").split("-"))
        body = data[first : last + 1]
        headers = {"content-range": f"bytes {first}-{last}/{len(data)}"}
        return httpx.Response(206, content=body, headers=headers)

    return handler


def test_fetch_range_streams_into_upload_chunk(reader: Callable[[Handler], SourceReader]) -> None:
    source_requests: list[httpx.Request] = []
    uploads: list[httpx.Request] = []

    def aimi(request: httpx.Request) -> httpx.Response:
        request.read()
        uploads.append(request)
        return httpx.Response(200, json={"taskid": "task-1", "chunk_index": 1, "received": True})

    http = make_http_client("https://api.sync.aimi.test", connect_timeout_s=1, read_timeout_s=3, headers={},
                            transport=httpx.MockTransport(aimi))  # fmt: skip
    client = AimiClient(http, SecretStr("aimi-token-SECRET"))
    pieces = reader(range_server(VIDEO, source_requests)).fetch_range(SOURCE_URL, 4096, 8191)
    assert source_requests == []  # lazy: the source is read while the chunk is sent
    client.upload_chunk("task-1", 1, pieces, 4096)
    client.close()

    (source_request,) = source_requests
    assert source_request.method == "GET"
    assert source_request.url == httpx.URL(SOURCE_URL)
    assert source_request.headers["range"] == "bytes=4096-8191"
    assert "authorization" not in source_request.headers
    assert "user-agent" not in source_request.headers
    (upload,) = uploads
    assert upload.content == VIDEO[4096:8192]
    assert upload.headers["content-length"] == "4096"


def test_fetch_range_follows_redirects_bare(reader: Callable[[Handler], SourceReader]) -> None:
    requests: list[httpx.Request] = []
    source = range_server(VIDEO, requests)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "short.example.test":
            requests.append(request)
            return httpx.Response(302, headers={"location": SOURCE_URL})
        return source(request)

    data = b"".join(reader(handler).fetch_range("https://short.example.test/v", 0, 99))
    assert data == VIDEO[:100]
    assert [r.url.host for r in requests] == ["short.example.test", "videos.example.test"]
    assert all("authorization" not in r.headers and r.headers["range"] == "bytes=0-99" for r in requests)


def test_a_redirect_to_an_internal_address_is_refused(reader: Callable[[Handler], SourceReader]) -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(302, headers={"location": "http://169.254.169.254/latest/meta-data/"})

    with pytest.raises(EgressRefused, match="metadata"):
        list(reader(handler).fetch_range(SOURCE_URL, 0, 99))
    assert [r.url.host for r in requests] == ["videos.example.test"]


def test_fetch_range_refuses_a_host_that_ignores_range(reader: Callable[[Handler], SourceReader]) -> None:
    stream = WatchedStream([VIDEO])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=stream, headers={"content-length": str(len(VIDEO))})

    with pytest.raises(RangeUnsupported, match="ignores Range") as caught:
        list(reader(handler).fetch_range(SOURCE_URL, 4096, 8191))
    assert not stream.read  # the full body was never downloaded
    assert not caught.value.retryable
    assert isinstance(caught.value, SourceRefused)
    assert "sig123" not in str(caught.value)


def test_fetch_range_takes_a_200_that_is_exactly_the_range(reader: Callable[[Handler], SourceReader]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=VIDEO)

    assert b"".join(reader(handler).fetch_range(SOURCE_URL, 0, len(VIDEO) - 1)) == VIDEO


def test_fetch_range_refuses_a_wrong_content_range(reader: Callable[[Handler], SourceReader]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(206, content=VIDEO[:100], headers={"content-range": "bytes 0-99/10240"})

    with pytest.raises(RangeUnsupported, match="bytes 0-99/10240"):
        list(reader(handler).fetch_range(SOURCE_URL, 100, 199))


def test_fetch_range_truncated_is_unavailable(reader: Callable[[Handler], SourceReader]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        stream = WatchedStream([VIDEO[:50]])
        return httpx.Response(206, stream=stream, headers={"content-range": "bytes 0-99/10240"})

    with pytest.raises(SourceUnavailable, match="50 of 100"):
        list(reader(handler).fetch_range(SOURCE_URL, 0, 99))


@pytest.mark.parametrize(
    ("status", "error"), [(403, SourceRefused), (404, SourceRefused), (500, SourceUnavailable)]
)
def test_a_source_error_names_the_url_and_status_and_quotes_nothing(
    status: int, error: type[Exception], reader: Callable[[Handler], SourceReader]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=b"<Error>SignatureDoesNotMatch: internal page text</Error>")

    with pytest.raises(error) as caught:
        list(reader(handler).fetch_range(SOURCE_URL, 0, 9))
    assert "https://videos.example.test/in/clip.mp4" in str(caught.value)
    assert "sig123" not in str(caught.value)
    assert "internal page text" not in str(caught.value)


def test_a_source_429_is_the_sources_and_never_a_providers_throttle(
    reader: Callable[[Handler], SourceReader],
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"retry-after": "86400"})

    with pytest.raises(SourceUnavailable) as caught:
        list(reader(handler).fetch_range(SOURCE_URL, 0, 9))
    assert not isinstance(caught.value, Throttled)
    assert (caught.value.provider, caught.value.status_code, caught.value.code) == (
        "source",
        429,
        "source_throttled",
    )
    assert caught.value.retryable


def test_fetch_range_refuses_a_bad_range(reader: Callable[[Handler], SourceReader]) -> None:
    with pytest.raises(ValueError, match="invalid byte range"):
        reader(lambda request: httpx.Response(200)).fetch_range(SOURCE_URL, 10, 9)


def test_content_length_from_head(reader: Callable[[Handler], SourceReader]) -> None:
    requests: list[httpx.Request] = []

    def head(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, headers={"content-length": "10240"})

    assert reader(head).content_length(SOURCE_URL) == 10240
    (only,) = requests
    assert only.method == "HEAD"
    assert "authorization" not in only.headers


def test_content_length_falls_back_to_a_one_byte_range(reader: Callable[[Handler], SourceReader]) -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.method == "HEAD":
            return httpx.Response(403)  # signed for GET only
        return range_server(VIDEO, [])(request)

    assert reader(handler).content_length(SOURCE_URL) == len(VIDEO)
    assert [(r.method, r.headers.get("range")) for r in requests] == [("HEAD", None), ("GET", "bytes=0-0")]


def test_content_length_from_a_host_that_ignores_range(reader: Callable[[Handler], SourceReader]) -> None:
    stream = WatchedStream([VIDEO])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "HEAD":
            return httpx.Response(405)
        return httpx.Response(200, stream=stream, headers={"content-length": str(len(VIDEO))})

    assert reader(handler).content_length(SOURCE_URL) == len(VIDEO)
    assert not stream.read


def test_content_length_of_a_missing_source(reader: Callable[[Handler], SourceReader]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, content=b"no such object")

    with pytest.raises(SourceRefused, match="404 Not Found") as caught:
        reader(handler).content_length(SOURCE_URL)
    assert "no such object" not in str(caught.value)
