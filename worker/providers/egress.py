"""The one egress policy: a URL a job names that a worker fetches itself (today a music job's source
video) is fetched through ``Egress``, and through nothing else.

What it lets through:
- the schemes ``http`` and ``https``, on every hop: redirects are followed here, hop by hop, at most
  ``max_redirects`` of them, and each hop's URL is checked like the first;
- global unicast addresses. Refused unless ``GENQ_EGRESS__ALLOW`` names them: loopback, private
  (10/8, 172.16/12, 192.168/16, fc00::/7), link-local (169.254/16 and fe80::/10, where the cloud metadata
  services 169.254.169.254 and fd00:ec2::254 live), shared CGNAT space (100.64/10), multicast,
  unspecified, broadcast, reserved, documentation and benchmarking ranges, and an IPv6 address that
  carries an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible, NAT64 ``64:ff9b::/96``,
  6to4 ``2002::/16``) is judged by that IPv4 address.

Where it is checked: when a connection is made, in the network backend of the connection pool
(``pinned.py``). The host name is resolved there, once per connection; every address it resolves to
must pass; and the socket connects to one of those checked addresses, never to the name. There is no
second lookup for a DNS answer to change between the check and the connect (rebinding), a redirect to a
name that resolves inside is refused like a literal internal address, and every connection the pool
opens passes the same check. TLS still sends SNI for, and verifies the certificate against, the URL's
host name (httpcore starts TLS with the origin's host, not with the address connected to). No proxy is
used, since a proxy resolves the name itself, and nothing is taken from the environment (``HTTP_PROXY``,
``.netrc``).

Progress: on every connection, at least ``progress_bytes`` must arrive for every ``progress_window_s``
spent waiting for them (time the worker spends elsewhere, e.g. sending the bytes on to a provider, does
not count), so a source that trickles a byte every 29 s, under the read timeout, is cut after one window.

Errors are ``SourceError``s: they name the URL without its query or credentials and the status with its
standard phrase, and never quote a body or a reason phrase the remote host wrote.
"""

from __future__ import annotations

import contextlib
import http
import ipaddress
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import httpx
from pydantic import BaseModel, Field, field_validator

from worker.providers.errors import EgressRefused, SourceError, SourceRefused, SourceUnavailable
from worker.providers.http import safe_url, snippet
from worker.providers.pinned import PinnedTransport

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# (host, port) -> the host's addresses, as text; the system's resolver unless a test injects one.
Resolver = Callable[[str, int], Sequence[str]]

SCHEMES: Final = {"http": 80, "https": 443}
_METADATA: Final = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})
_CGNAT: Final = ipaddress.IPv4Network("100.64.0.0/10")
# IPv6 prefixes whose last 32 bits are an IPv4 address a gateway forwards to (RFC 6052, RFC 8215).
_NAT64: Final = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE: Final = ipaddress.IPv6Network("::/96")
_CONNECT_ATTEMPTS: Final = 3


class EgressSettings(BaseModel):
    """``GENQ_EGRESS__...``: what a worker may fetch of the URLs a job names."""

    # Addresses a worker may connect to although they are not global: comma-separated networks or
    # addresses, each optionally with a port (`10.0.0.0/8,127.0.0.1:8080,[::1]:8080`). Empty: none.
    allow: str = ""
    max_redirects: int = Field(5, ge=0, le=20)
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(30.0, gt=0)
    # At least this many bytes must arrive per window of time spent waiting for them.
    progress_bytes: int = Field(1024 * 1024, gt=0)
    progress_window_s: float = Field(30.0, gt=0)

    @field_validator("allow")
    @classmethod
    def _parses(cls, value: str) -> str:
        parse_allow(value)
        return value

    @property
    def allowed(self) -> tuple[Allowed, ...]:
        return parse_allow(self.allow)


@dataclass(frozen=True)
class Allowed:
    """An entry of the allow-list: a network, and the one port it allows if it names one."""

    network: IPNetwork
    port: int | None = None

    def permits(self, address: IPAddress, port: int) -> bool:
        return address in self.network and self.port in (None, port)


def parse_allow(text: str) -> tuple[Allowed, ...]:
    """The allow-list ``text`` names (see ``EgressSettings.allow``); ``ValueError`` for a bad entry."""
    return tuple(_allowed(entry.strip()) for entry in text.split(",") if entry.strip())


def _allowed(entry: str) -> Allowed:
    host, port = entry, None
    if entry.startswith("["):  # [v6 address or network]:port
        host, bracket, rest = entry[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{entry!r}: write an IPv6 entry with a port as [address]:port")
        port = _port(entry, rest[1:]) if rest else None
    elif entry.count(":") == 1:  # v4 address or network:port
        host, _, port_text = entry.partition(":")
        port = _port(entry, port_text)
    try:
        return Allowed(ipaddress.ip_network(host), port)
    except ValueError as exc:
        raise ValueError(f"{entry!r}: {exc}") from None


def _port(entry: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{entry!r}: {text!r} is not a port")
    return int(text)


def refusal(address: IPAddress) -> str | None:
    """Why a worker may not connect to ``address`` unless the allow-list names it; None if it may."""
    if address in _METADATA:
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_unspecified:
        return "the unspecified address"
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        why = refusal(embedded)
        return f"an IPv6 form of {embedded}, {why}" if why else None
    return _kind(address)


def _kind(address: IPAddress) -> str | None:
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "a shared (CGNAT) address"
    if address.is_private or not address.is_global:
        return "a private or reserved address"
    return None


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _IPV4_COMPATIBLE or any(address in prefix for prefix in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (``getaddrinfo``), each once, in the order given."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class EgressPolicy:
    """The rules, and the resolver whose answers they are applied to."""

    allowed: tuple[Allowed, ...] = ()
    resolver: Resolver = system_resolver

    def check_url(self, url: httpx.URL) -> None:
        """A URL's scheme and host, before anything is sent; an address written in the URL is checked
        here too (a name is checked when it is resolved, at connect time)."""
        if url.scheme not in SCHEMES:
            raise EgressRefused(f"{shown(url)}: only http and https URLs are fetched", code="egress_refused")
        if not url.host:
            raise EgressRefused(f"{shown(url)}: no host", code="egress_refused")
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(url.host)
            self.check_address(url.host, url.port or SCHEMES[url.scheme], url.host)

    def check_address(self, text: str, port: int, host: str) -> str:
        """``text`` if a worker may connect to it on ``port``; else ``EgressRefused`` naming ``host``."""
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise EgressRefused(f"{host} resolves to something that is not an address",
                                code="egress_refused") from None  # fmt: skip
        why = None if any(rule.permits(address, port) for rule in self.allowed) else refusal(address)
        if why is None:
            return text
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if host != text:
            where += f" resolves to {address}, which"
        raise EgressRefused(f"{where} is {why}; GENQ_EGRESS__ALLOW does not allow it", code="egress_refused")

    def resolve(self, host: str, port: int) -> list[str]:
        """``host``'s addresses, resolved once, every one of them checked (one refused refuses the host).
        A name that does not resolve raises ``OSError``."""
        found = list(self.resolver(host, port))
        if not found:
            raise OSError(f"{host} resolves to no address")
        return [self.check_address(text, port, host) for text in found]


class Egress:
    """Fetches the URLs a job names, under the policy: bare requests (no header, cookie or credential of
    genq's), redirects followed here hop by hop, answers streamed. One per process; thread-safe."""

    def __init__(
        self,
        settings: EgressSettings,
        *,
        resolver: Resolver | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``transport`` replaces the policed one (unit tests of what is done with the answers); the
        URL checks still apply, the address checks then do not."""
        self.settings = settings
        self.policy = EgressPolicy(settings.allowed, resolver or system_resolver)
        self._transport = transport or PinnedTransport(
            self.policy.resolve,
            progress_bytes=settings.progress_bytes,
            progress_window_s=settings.progress_window_s,
        )
        connect_s, read_s = settings.connect_timeout_s, settings.read_timeout_s
        self._timeout = httpx.Timeout(connect=connect_s, read=read_s, write=read_s, pool=connect_s)

    def open(self, method: str, url: str, headers: Mapping[str, str] | None = None) -> httpx.Response:
        """The streamed answer to ``method url`` (after redirects), whatever its status; the caller
        closes it. Raises ``EgressRefused`` (the policy), ``SourceRefused`` (too many redirects, a bad
        ``Location``) or ``SourceUnavailable`` (the network)."""
        first = target = _url(url)
        for _ in range(self.settings.max_redirects + 1):
            self.policy.check_url(target)
            bare = {"accept-encoding": "identity", **(headers or {})}
            timeout = {"timeout": self._timeout.as_dict()}
            request = httpx.Request(method, target, headers=bare, extensions=timeout)
            response = self._send(request)
            location = response.headers.get("location")
            if not (response.is_redirect and location):
                return response
            response.close()
            target = _url(location, base=target)
        raise SourceRefused(f"over {self.settings.max_redirects} redirects from {shown(first)}",
                            code="source_redirects")  # fmt: skip

    def close(self) -> None:
        self._transport.close()

    def _send(self, request: httpx.Request) -> httpx.Response:
        # Only a connection that failed fast is tried again here (nothing reached the host).
        for attempt in range(1, _CONNECT_ATTEMPTS + 1):
            try:
                response = self._transport.handle_request(request)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt == _CONNECT_ATTEMPTS:
                    raise unavailable(exc, request) from None
                time.sleep(0.05)
                continue
            except httpx.TransportError as exc:
                raise unavailable(exc, request) from None
            response.request = request
            return response
        raise AssertionError("unreachable")  # pragma: no cover


def _url(text: str, *, base: httpx.URL | None = None) -> httpx.URL:
    try:
        return base.join(text) if base is not None else httpx.URL(text)
    except httpx.InvalidURL:
        where = f" (a redirect from {shown(base)})" if base is not None else ""
        raise SourceRefused(f"not a URL that can be fetched{where}", code="source_refused") from None


def shown(url: httpx.URL) -> str:
    """``url`` fit for an error message: no credentials, query or fragment (a signed URL's query is a
    credential), at most 500 characters."""
    return snippet(safe_url(url))


def answer_error(response: httpx.Response) -> SourceError:
    """The error for a source's non-2xx answer: its status and that status's standard phrase, never its
    body or its own reason phrase. A 408, 429 or 5xx may pass (the stage is retried); any other is
    permanent."""
    status = response.status_code
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "(unknown status)"
    message = f"source {response.request.method} {shown(response.request.url)}: {status} {phrase}"
    if status == 429:
        return SourceUnavailable(message, status_code=status, code="source_throttled")
    if status == 408 or status >= 500:
        return SourceUnavailable(message, status_code=status, code="source_unavailable")
    return SourceRefused(message, status_code=status, code="source_refused")


def unavailable(exc: httpx.RequestError, request: httpx.Request) -> SourceUnavailable:
    """A transport failure on the way to a source, named by its kind only (no remote text)."""
    return SourceUnavailable(f"source {request.method} {shown(request.url)}: {type(exc).__name__}",
                             code="source_unavailable")  # fmt: skip
