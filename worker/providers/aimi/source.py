"""Reading a source video from its URL in byte ranges, so that an upload chunk is streamed from the
source host to Aimi and never held whole in memory or on disk.

Every request goes through the egress policy (``worker/providers/egress.py``): bare (no client header,
cookie or API token ever reaches a source host), to checked addresses only, redirects followed and
checked hop by hop, bytes required to keep coming. What a source answers is the source's: a 429 or 5xx is
``SourceUnavailable`` (its own job retries), any other refusal ``SourceRefused``, never an Aimi error, so
no source can pause Aimi's budget. No error quotes what a source sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final

import httpx

from worker.providers.egress import Egress, answer_error, shown, unavailable
from worker.providers.errors import SourceRefused, SourceUnavailable

_CONTENT_RANGE: Final = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_READ_BYTES: Final = 1024 * 1024
_TOKEN: Final = re.compile(r"[a-z0-9.+-]{1,32}")  # a Content-Encoding shown in an error as it is


class RangeUnsupported(SourceRefused):
    """A source host did not answer a byte range as asked (it ignores ``Range``, or the range is past the
    end). Permanent: the host will answer the same way next time."""


class SourceReader:
    """Sizes and byte ranges of source videos, fetched through ``egress``."""

    def __init__(self, egress: Egress) -> None:
        self._egress = egress

    def fetch_range(self, url: str, start: int, end: int) -> Iterator[bytes]:
        """See ``fetch_range``."""
        return fetch_range(self._egress, url, start, end)

    def content_length(self, url: str) -> int:
        """See ``content_length``."""
        return content_length(self._egress, url)


def fetch_range(egress: Egress, url: str, start: int, end: int) -> Iterator[bytes]:
    """Bytes ``start`` to ``end`` (inclusive) of ``url``, lazily: the request goes out on the first
    ``next()``, and the response is closed when the iterator ends or is closed.

    The answer must be a 206 whose ``Content-Range`` is the range asked. A 200 (the host ignores
    ``Range``) is taken only when that is cheap: the range starts at 0 and the whole body is exactly it
    (``Content-Length`` = ``end + 1``). Otherwise ``RangeUnsupported`` is raised with the body unread:
    skipping to a later range would fetch the whole prefix again for every chunk. Exactly
    ``end - start + 1`` bytes come out, or ``SourceUnavailable`` (a cut connection) is raised.
    """
    if start < 0 or end < start:
        raise ValueError(f"invalid byte range {start}-{end}")
    return _fetch(egress, url, start, end)


def content_length(egress: Egress, url: str) -> int:
    """Size in bytes of ``url``: ``Content-Length`` of a HEAD, else the total of a ``Range: bytes=0-0``
    GET's ``Content-Range`` (signed GET URLs often refuse HEAD), else that GET's 200 ``Content-Length``
    with the body unread. A failing GET raises ``SourceRefused`` (403, 404 ...) or ``SourceUnavailable``
    (429, 5xx)."""
    response = egress.open("HEAD", url, {})
    response.close()
    size = _declared_length(response) if response.is_success else None
    if size is not None:
        return size
    response = egress.open("GET", url, {"range": "bytes=0-0"})
    try:
        if not response.is_success:
            raise answer_error(response)
        match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
        if response.status_code == 206 and match and match[3] != "*":
            return int(match[3])
        size = _declared_length(response) if response.status_code == 200 else None
        if size is None:
            raise _unsupported(f"size of {shown(response.request.url)} unknown")
        return size
    finally:
        response.close()


def _fetch(egress: Egress, url: str, start: int, end: int) -> Iterator[bytes]:
    response = egress.open("GET", url, {"range": f"bytes={start}-{end}"})
    try:
        _check_range(response, start, end)
        yield from _body(response, end - start + 1)
    finally:
        response.close()


def _check_range(response: httpx.Response, start: int, end: int) -> None:
    if not response.is_success:
        raise answer_error(response)
    encoding = response.headers.get("content-encoding", "identity").lower()
    if encoding != "identity":
        # Content-Range counts encoded bytes; identity was asked for, so this host is not usable.
        shown_encoding = encoding if _TOKEN.fullmatch(encoding) else "of another kind"
        raise _unsupported(f"asked bytes={start}-{end} unencoded, got Content-Encoding {shown_encoding}")
    if response.status_code == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
        if match and (int(match[1]), int(match[2])) == (start, end):
            return
        got = f"Content-Range {match[0]}" if match else "no readable Content-Range"
        raise _unsupported(f"asked bytes={start}-{end}, got 206 with {got}")
    if response.status_code == 200 and start == 0 and _declared_length(response) == end + 1:
        return
    raise _unsupported(f"asked bytes={start}-{end}, got {response.status_code}: the host ignores Range")


def _body(response: httpx.Response, expected: int) -> Iterator[bytes]:
    count = 0
    try:
        for raw in response.iter_bytes(_READ_BYTES):
            chunk = raw[: expected - count]
            count += len(chunk)
            if chunk:
                yield chunk
            if count == expected:
                return
    except httpx.RequestError as exc:
        message = f"{unavailable(exc, response.request).message} after {count} of {expected} bytes"
        raise SourceUnavailable(message, code="source_unavailable") from None
    raise SourceUnavailable(f"source range truncated: {count} of {expected} bytes", code="source_truncated")


def _declared_length(response: httpx.Response) -> int | None:
    if response.headers.get("content-encoding", "identity").lower() != "identity":
        return None
    value = response.headers.get("content-length", "")
    return int(value) if value.isdigit() else None


def _unsupported(message: str) -> RangeUnsupported:
    return RangeUnsupported(message, code="range_unsupported")
