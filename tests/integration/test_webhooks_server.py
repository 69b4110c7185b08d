"""``genq webhooks`` itself (uvicorn on loopback, a child process with its caps set small) against senders
that misbehave on the socket: a huge declared body, a chunked body that never ends, a body sent a byte
at a time, and more connections than the cap. Each is refused early and costs the receiver nothing more:
the connection is closed, so the rest of a body is never read."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from genq.processes import free_port, start_webhooks, stop, wait_http, worker_env
from genq.redis_server import EmbeddedRedis
from tests.conftest import Services
from worker.providers.syncso.webhook import sign

SECRET = "whsec_server_test_0123456789abcdef"
MAX_BODY_BYTES = 65536
BODY_TIMEOUT_S = 1.0
MAX_CONCURRENCY = 4


class Receiver:
    def __init__(self, port: int, process: subprocess.Popen[bytes]) -> None:
        self.port, self.process = port, process
        self.url = f"http://127.0.0.1:{port}"

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return sock

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])


@pytest.fixture(scope="module")
def receiver(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    tmp = tmp_path_factory.mktemp("webhooks")
    env = worker_env(
        services.redis.url,
        artifact_dir=tmp / "artifacts",
        extra={
            "GENQ_SYNCSO__WEBHOOK_SECRET": SECRET,
            "GENQ_WEBHOOKS__MAX_BODY_BYTES": str(MAX_BODY_BYTES),
            "GENQ_WEBHOOKS__BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
            "GENQ_WEBHOOKS__MAX_CONCURRENCY": str(MAX_CONCURRENCY),
        },
    )
    port = free_port()
    process = start_webhooks(env, port=port, log_path=tmp / "webhooks.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        yield Receiver(port, process)
    finally:
        stop(process)


def status_of(sock: socket.socket) -> int:
    """The status code of the answer that comes back on ``sock``."""
    head = b""
    while b"\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, f"closed before an answer: {head!r}"
        head += chunk
    return int(head.split(b" ", 2)[1])


def send_until_closed(sock: socket.socket, limit_bytes: int) -> int:
    """Keep sending body bytes until the receiver closes the connection; how many got out (the kernel's
    buffers on both sides take some after the close is decided)."""
    sent, block = 0, b"x" * 65536
    sock.settimeout(5)
    try:
        while sent < limit_bytes:
            sent += sock.send(block)
    except (BrokenPipeError, ConnectionResetError):
        return sent
    except TimeoutError:  # buffers full and nobody reading: not closed, but not read either
        return sent
    return sent


def assert_closed(sock: socket.socket) -> None:
    """Read what is left of the answer on ``sock`` until the receiver closes it (fails after 5 s)."""
    sock.settimeout(5)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail("the receiver kept the connection open")


def test_a_body_declared_at_a_gigabyte_is_413_at_once_and_its_connection_closed(receiver: Receiver) -> None:
    before_kib = receiver.rss_kib()
    with receiver.connect() as sock:
        started = time.monotonic()
        sock.sendall(b"POST /syncso HTTP/1.1\r\nHost: hooks\r\nContent-Length: 1073741824\r\n\r\n")
        assert status_of(sock) == 413
        assert time.monotonic() - started < 2
        sent = send_until_closed(sock, 96 * 1024 * 1024)
        assert_closed(sock)
    grown_kib = receiver.rss_kib() - before_kib
    assert sent < 64 * 1024 * 1024  # of the gigabyte, little went out before the door closed
    assert grown_kib < 16 * 1024


def test_a_chunked_body_that_never_ends_is_413_once_past_the_cap(receiver: Receiver) -> None:
    with receiver.connect() as sock:
        sock.sendall(b"POST /syncso HTTP/1.1\r\nHost: hooks\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (16384, b"x" * 16384)
        for _ in range(MAX_BODY_BYTES // 16384 + 1):
            sock.sendall(chunk)
        assert status_of(sock) == 413
        send_until_closed(sock, 64 * 1024 * 1024)
        assert_closed(sock)


def test_a_body_sent_a_byte_at_a_time_is_408_at_the_body_timeout(receiver: Receiver) -> None:
    with receiver.connect() as sock:
        sock.sendall(b"POST /syncso HTTP/1.1\r\nHost: hooks\r\nContent-Length: 1000\r\n\r\n")
        started = time.monotonic()
        sock.settimeout(0.1)
        answer = b""
        while not answer and time.monotonic() - started < 10:
            sock.send(b"{")  # a byte every 0.1 s: always something coming, never the end
            try:
                answer = sock.recv(4096)
            except TimeoutError:
                continue
        took_s = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert BODY_TIMEOUT_S <= took_s < BODY_TIMEOUT_S + 2
        assert_closed(sock)


def test_connections_past_the_cap_are_503_and_served_again_once_they_close(receiver: Receiver) -> None:
    body = b'{"id": "g-over-cap", "status": "COMPLETED"}'
    held = [receiver.connect() for _ in range(MAX_CONCURRENCY)]  # open, silent
    try:
        time.sleep(0.2)
        refused = httpx.post(f"{receiver.url}/syncso", content=body)
        assert refused.status_code == 503
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    assert httpx.post(f"{receiver.url}/syncso", content=body).status_code == 401  # unsigned: served, refused


def test_a_signed_delivery_within_the_caps_is_accepted(receiver: Receiver) -> None:
    body = json.dumps(
        {"id": f"g-server-{time.time_ns()}", "status": "COMPLETED", "pad": "x" * 60_000}
    ).encode()
    t = int(time.time())
    response = httpx.post(
        f"{receiver.url}/syncso",
        content=body,
        headers={"Sync-Signature": f"t={t},v1={sign(SECRET, t, body)}"},
    )
    assert (response.status_code, response.json()) == (200, {"woken": False})


def test_health_checks_redis_and_says_what_is_wrong_without_its_password(tmp_path: Path) -> None:
    password = "s3cret-hooks-pw-1f0e"
    with EmbeddedRedis(password=password) as server:
        env = worker_env(server.url, artifact_dir=tmp_path / "artifacts")
        port = free_port()
        process = start_webhooks(env, port=port, log_path=tmp_path / "webhooks.log")
        try:
            wait_http(f"http://127.0.0.1:{port}/health")
            healthy = httpx.get(f"http://127.0.0.1:{port}/health")
            assert (healthy.status_code, healthy.json()) == (200, {"ok": True})
            server.kill()
            started = time.monotonic()
            down = httpx.get(f"http://127.0.0.1:{port}/health")
            assert time.monotonic() - started < 2
            error = f"redis: connection refused at 127.0.0.1:{server.port}"
            assert (down.status_code, down.json()) == (503, {"ok": False, "error": error})
            server.restart()
            assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
        finally:
            stop(process)
    log = (tmp_path / "webhooks.log").read_text()
    assert password not in log + down.text
    assert "Traceback" not in log
