"""The egress policy: which addresses a worker may fetch a job's URL from, checked on every redirect hop
where the connection is made (on the resolved address, not the name), with bytes that must keep coming
and errors that quote nothing the remote host sent. Real HTTP on loopback: one server is "the internet"
(the allow-list names its address and port), another on loopback is "internal" and must never be
reached."""

from __future__ import annotations

import http.server
import ipaddress
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import pytest

from worker.providers.egress import (
    Egress,
    EgressPolicy,
    EgressSettings,
    answer_error,
    parse_allow,
    refusal,
    system_resolver,
)
from worker.providers.errors import EgressRefused, SourceRefused, SourceUnavailable, Throttled
from worker.settings import Settings

SECRET = "INTERNAL-SECRET-4f1a"


@dataclass
class Server:
    """A loopback HTTP server: ``routes`` maps a path to (status, headers, body, seconds per byte)."""

    routes: dict[str, tuple[int, dict[str, str], bytes, float]] = field(default_factory=dict)
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, Host)
    reason: str | None = None  # a reason phrase of its own, instead of the standard one

    def __post_init__(self) -> None:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append((self.command, self.path, self.headers.get("host", "")))
                route = self.path.split("?", 1)[0]
                status, headers, body, per_byte_s = server.routes.get(route, (404, {}, b"", 0.0))
                self.send_response(status, server.reason)
                for name, value in {"content-length": str(len(body)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                if self.command == "HEAD":
                    return
                if not per_byte_s:
                    self.wfile.write(body)
                    return
                for byte in body:  # a trickle, until the client gives up on it
                    try:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                    except (BrokenPipeError, ConnectionResetError):
                        return
                    time.sleep(per_byte_s)

            do_HEAD = do_GET

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def outside() -> Iterator[Server]:
    server = Server()
    yield server
    server.close()


@pytest.fixture
def internal() -> Iterator[Server]:
    server = Server({"/secret": (200, {}, SECRET.encode(), 0.0)})
    server.routes["/"] = server.routes["/secret"]
    yield server
    server.close()


Factory = Callable[..., Egress]


@pytest.fixture
def egress(outside: Server) -> Iterator[Factory]:
    """The policy with only ``outside`` allowed (its address and port), as a deployment allows one host;
    every one made is closed after the test."""
    made: list[Egress] = []

    def make(resolver: Callable[[str, int], Sequence[str]] | None = None, **fields: object) -> Egress:
        fields.setdefault("allow", f"127.0.0.1:{outside.port}")
        made.append(Egress(EgressSettings(**fields), resolver=resolver))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for each in made:
        each.close()


def names(table: dict[str, str]) -> Callable[[str, int], Sequence[str]]:
    """A resolver that knows ``table`` (names to one address) and takes an address as itself."""

    def resolve(host: str, port: int) -> list[str]:
        return [table.get(host, host)]

    return resolve


# --- which addresses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.9.9.9", "10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "169.254.169.254",
        "169.254.1.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "240.0.0.1", "192.0.2.1", "198.18.0.1",
        "::1", "::", "fe80::1", "fd00:ec2::254", "fc00::1", "ff02::1", "2001:db8::1", "::ffff:127.0.0.1",
        "::ffff:169.254.169.254", "::ffff:10.0.0.1", "::127.0.0.1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::a00:1",
        "2002:7f00:1::1", "2002:a9fe:a9fe::1",
    ],
)  # fmt: skip
def test_loopback_private_link_local_cgnat_multicast_and_metadata_are_refused(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_global_unicast_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


def test_the_allow_list_names_networks_and_addresses_with_or_without_a_port() -> None:
    rules = parse_allow(" 10.0.0.0/8, 127.0.0.1:8080 ,[::1]:9000, fd12::/16 ")
    allowed = EgressPolicy(rules)
    assert len(rules) == 4
    assert allowed.check_address("10.9.9.9", 443, "10.9.9.9") == "10.9.9.9"
    assert allowed.check_address("127.0.0.1", 8080, "127.0.0.1") == "127.0.0.1"
    assert allowed.check_address("::1", 9000, "::1") == "::1"
    assert allowed.check_address("fd12::5", 80, "fd12::5") == "fd12::5"
    for address, port in [("127.0.0.1", 8081), ("::1", 80), ("169.254.169.254", 80), ("192.168.0.1", 80)]:
        with pytest.raises(EgressRefused):
            allowed.check_address(address, port, address)


@pytest.mark.parametrize(
    "entry", ["10.0.0.0/33", "localhost", "127.0.0.1:0", "127.0.0.1:http", "[::1", "10.0.0.1/8"]
)
def test_a_bad_allow_list_entry_is_a_settings_error(entry: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENQ_EGRESS__ALLOW", entry)
    with pytest.raises(ValueError, match="allow"):
        Settings()


def test_the_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GENQ_EGRESS__ALLOW")  # the tests' own allowance of loopback
    settings = Settings().egress
    assert settings.allowed == ()
    assert (settings.max_redirects, settings.connect_timeout_s, settings.read_timeout_s) == (5, 5.0, 30.0)
    assert (settings.progress_bytes, settings.progress_window_s) == (1048576, 30.0)


# --- redirect chains over real HTTP --------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{internal}/secret",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[::1]:{internal}/secret",
        "http://[::ffff:127.0.0.1]:{internal}/secret",
        "http://internal.test:{internal}/secret",  # a name the resolver turns into 127.0.0.1
        "http://metadata.test/latest/meta-data/",  # a name the resolver turns into 169.254.169.254
        "http://localhost:{internal}/secret",  # the system's resolver
        "http://2130706433:{internal}/secret",  # 127.0.0.1 written as a number
    ],
)
def test_a_redirect_chain_to_an_internal_address_is_refused_before_it_connects(
    target: str, outside: Server, internal: Server, egress: Factory
) -> None:
    resolver = names({"internal.test": "127.0.0.1", "metadata.test": "169.254.169.254"})
    resolved = {"localhost", "2130706433"}
    final = target.format(internal=internal.port)
    outside.routes["/start"] = (302, {"location": "/hop"}, b"", 0.0)
    outside.routes["/hop"] = (307, {"location": final}, b"", 0.0)

    def resolve(host: str, port: int) -> Sequence[str]:
        return system_resolver(host, port) if host in resolved else resolver(host, port)

    with pytest.raises(EgressRefused) as refused:
        egress(resolve).open("GET", outside.url("/start"))
    assert [path for _, path, _ in outside.requests] == ["/start", "/hop"]  # every hop before it was fetched
    assert internal.requests == []  # and the internal server never saw a request
    assert SECRET not in str(refused.value)
    assert refused.value.code == "egress_refused" and not refused.value.retryable


def test_without_a_check_the_same_chain_would_have_reached_the_internal_server(
    outside: Server, internal: Server, egress: Factory
) -> None:
    """The control: allowing the internal server's port too, the chain above reaches it."""
    outside.routes["/start"] = (302, {"location": internal.url("/secret")}, b"", 0.0)
    response = egress(allow=f"127.0.0.1:{outside.port},127.0.0.1:{internal.port}").open(
        "GET", outside.url("/start")
    )
    assert response.read() == SECRET.encode()
    assert len(internal.requests) == 1


def test_a_name_is_resolved_once_per_connection_and_the_checked_address_is_the_one_connected_to(
    outside: Server, egress: Factory
) -> None:
    outside.routes["/video"] = (200, {}, b"ok", 0.0)
    answers = iter([["127.0.0.1"]])  # a second lookup (a rebinding window) would fail the test

    def resolve(host: str, port: int) -> Sequence[str]:
        assert host == "cdn.test"
        return next(answers)

    response = egress(resolve).open("GET", f"http://cdn.test:{outside.port}/video")
    assert response.read() == b"ok"
    # The host connected to by address still heard its name (and TLS would verify that name).
    assert outside.requests == [("GET", "/video", f"cdn.test:{outside.port}")]


def test_a_name_with_one_internal_address_among_public_ones_is_refused(
    outside: Server, egress: Factory
) -> None:
    def resolve(host: str, port: int) -> Sequence[str]:
        return ["127.0.0.1", "10.0.0.5"]

    with pytest.raises(EgressRefused, match=r"resolves to 10\.0\.0\.5"):
        egress(resolve).open("GET", f"http://mixed.test:{outside.port}/video")
    assert outside.requests == []


@pytest.mark.parametrize("location", ["file:///etc/passwd", "gopher://127.0.0.1:70/", "ftp://example.com/x"])
def test_only_http_and_https_are_followed(location: str, outside: Server, egress: Factory) -> None:
    outside.routes["/start"] = (302, {"location": location}, b"", 0.0)
    with pytest.raises(EgressRefused, match="only http and https"):
        egress().open("GET", outside.url("/start"))


def test_redirects_are_bounded(outside: Server, egress: Factory) -> None:
    outside.routes["/loop"] = (302, {"location": "/loop"}, b"", 0.0)
    with pytest.raises(SourceRefused, match="over 3 redirects") as refused:
        egress(max_redirects=3).open("GET", outside.url("/loop"))
    assert len(outside.requests) == 4
    assert refused.value.code == "source_redirects"


# --- what a source says, and how fast ----------------------------------------------------------------


def test_an_error_answer_quotes_neither_its_body_nor_its_reason_phrase(
    outside: Server, egress: Factory
) -> None:
    outside.reason = SECRET
    outside.routes["/error"] = (500, {"content-type": "text/html"}, f"<h1>{SECRET}</h1>".encode(), 0.0)
    response = egress().open("GET", outside.url("/error") + "?sig=abc")
    error = answer_error(response)
    assert isinstance(error, SourceUnavailable) and error.retryable
    assert error.message == f"source GET http://127.0.0.1:{outside.port}/error: 500 Internal Server Error"
    assert SECRET not in str(error) and "sig=abc" not in str(error)


@pytest.mark.parametrize(
    ("status", "retryable"), [(429, True), (503, True), (408, True), (403, False), (404, False)]
)
def test_a_source_status_is_the_sources_error_and_never_a_providers_throttle(
    status: int, retryable: bool, outside: Server, egress: Factory
) -> None:
    outside.routes["/v"] = (status, {"retry-after": "86400"}, b"", 0.0)
    error = answer_error(egress().open("GET", outside.url("/v")))
    assert not isinstance(error, Throttled)
    assert (error.provider, error.status_code, error.retryable) == ("source", status, retryable)


def test_a_source_that_trickles_under_the_read_timeout_is_cut_after_one_window(
    outside: Server, egress: Factory
) -> None:
    outside.routes["/slow"] = (200, {}, b"x" * 100, 0.05)  # 20 bytes a second, never silent for long
    outside.routes["/fast"] = (200, {}, b"x" * 100_000, 0.0)
    policed = egress(progress_bytes=1000, progress_window_s=0.5, read_timeout_s=5)
    assert len(policed.open("GET", outside.url("/fast")).read()) == 100_000
    started = time.monotonic()
    with pytest.raises(SourceUnavailable, match="stalled") as stalled:
        policed.open("GET", outside.url("/slow")).read()
    assert time.monotonic() - started < 2.0
    assert stalled.value.code == "source_stalled" and stalled.value.retryable
