"""Connections that go only to checked addresses and must keep making progress: the httpx transport of
the egress policy (``egress.py`` says what is checked, and why here).

``_Backend`` is the network backend of an httpcore connection pool: every connection the pool opens,
for any request or redirect hop, asks ``resolve`` for the host's addresses (looked up once, each one
checked) and connects the socket to one of them, never to the name, so no second DNS answer can come
between the check and the connect. TLS is started by httpcore with the origin's host name, so SNI and
certificate checks are the name's, as with any client. ``_Progressing`` wraps each connection: at least
``min_bytes`` must arrive for every ``window_s`` spent waiting in ``read``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final

import httpcore
import httpx

from worker.providers.errors import SourceUnavailable

# (host, port) -> the host's addresses, every one checked; raises to refuse (or OSError: no such name).
Resolve = Callable[[str, int], list[str]]


class _Progressing(httpcore.NetworkStream):
    """A connection on which bytes must keep coming: at least ``min_bytes`` per ``window_s`` spent
    waiting in ``read``. Each request written starts a new window."""

    def __init__(self, inner: httpcore.NetworkStream, host: str, min_bytes: int, window_s: float) -> None:
        self._inner, self._host = inner, host
        self._min_bytes, self._window_s = min_bytes, window_s
        self._waited_s, self._count = 0.0, 0

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        started = time.monotonic()
        data = self._inner.read(max_bytes, timeout)
        self._waited_s += time.monotonic() - started
        self._count += len(data)
        if self._waited_s >= self._window_s:
            if self._count < self._min_bytes:
                raise SourceUnavailable(
                    f"source {self._host} stalled: {self._count} bytes in {self._waited_s:.0f} s, fewer than "
                    f"{self._min_bytes} (GENQ_EGRESS__PROGRESS_BYTES per GENQ_EGRESS__PROGRESS_WINDOW_S)",
                    code="source_stalled",
                )
            self._waited_s, self._count = 0.0, 0
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._waited_s, self._count = 0.0, 0
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, timeout)
        return _Progressing(inner, self._host, self._min_bytes, self._window_s)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    """Connects only to checked addresses: ``resolve`` looks the host up and checks what it found, and
    the socket goes to one of those addresses, never to the name."""

    def __init__(self, resolve: Resolve, min_bytes: int, window_s: float) -> None:
        self._resolve, self._min_bytes, self._window_s = resolve, min_bytes, window_s
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = self._resolve(host, port)
        except (OSError, UnicodeError) as exc:  # no such name, no answer: nothing was sent anywhere
            raise httpcore.ConnectError(f"cannot resolve {host}: {type(exc).__name__}") from None
        failed: Exception | None = None
        for address in addresses:
            try:
                stream = self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failed = exc
                continue
            return _Progressing(stream, host, self._min_bytes, self._window_s)
        assert failed is not None  # resolve gives at least one address or raises
        raise failed

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


# httpcore's errors as httpx's, most specific first (what httpx's own transport does).
_ERRORS: Final[tuple[tuple[type[Exception], type[httpx.TransportError]], ...]] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        mapped = next((to for source, to in _ERRORS if isinstance(exc, source)), None)
        if mapped is None:
            raise
        raise mapped(str(exc)) from exc


class _Body(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx_errors():
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


class PinnedTransport(httpx.BaseTransport):
    """An httpx transport over an httpcore connection pool whose every connection goes to an address
    ``resolve`` checked and keeps making progress."""

    def __init__(self, resolve: Resolve, *, progress_bytes: int, progress_window_s: float) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=_Backend(resolve, progress_bytes, progress_window_s),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        url = httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host, port=request.url.port,
                           target=request.url.raw_path)  # fmt: skip
        core = httpcore.Request(request.method, url, headers=request.headers.raw, content=request.stream,
                                extensions=request.extensions)  # fmt: skip
        with _as_httpx_errors():
            response = self._pool.handle_request(core)
        assert isinstance(response.stream, Iterable)
        return httpx.Response(response.status, headers=response.headers, stream=_Body(response.stream),
                              extensions=response.extensions)  # fmt: skip

    def close(self) -> None:
        self._pool.close()
