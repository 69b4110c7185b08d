"""Real Celery workers: one in-process worker (threads pool) for the session, consuming the session
Redis; tests that kill or scale workers start subprocess workers on a Redis of their own."""

from __future__ import annotations

import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from celery.contrib.testing import worker as celery_testing
from celery.result import _set_task_join_will_block

from genq.processes import start_worker, stop, stop_all, wait_ready, worker_env
from genq.redis_server import EmbeddedRedis
from genq.s3_server import S3Server, s3_server
from producers import Producer
from storage import OutputSettings
from tests.conftest import WORKER_ENV, Services, until


@pytest.fixture(scope="session")
def celery_worker(services: Services) -> Iterator[Any]:
    # Imported here, not at the top: `pytest tests/integration` loads this file before pytest_configure
    # has started the session Redis, and the app reads its settings at import.
    from worker.app import PROVIDER_QUEUES, TASK_MODULES, app  # noqa: PLC0415

    for module in TASK_MODULES:
        __import__(module)
    with celery_testing.start_worker(
        app,
        pool="threads",
        concurrency=8,
        perform_ping_check=False,
        loglevel="WARNING",
        queues=["default", *PROVIDER_QUEUES],
        shutdown_timeout=10,
    ) as worker:
        _set_task_join_will_block(True)
        yield worker


@pytest.fixture
def producer(services: Services, celery_worker: Any) -> Iterator[Producer]:
    p = Producer(services.redis.url)
    yield p
    p.close()


@pytest.fixture
def own_redis() -> Iterator[EmbeddedRedis]:
    """A Redis of the test's own: its workers share nothing with the session's."""
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
def env(own_redis: EmbeddedRedis, services: Services, tmp_path: Path) -> dict[str, str]:
    """Subprocess workers' environment: the test's Redis, the session simulator, fast settings and a
    short visibility timeout, so a killed worker's messages come back within seconds."""
    extra = {**WORKER_ENV, "GENQ_VISIBILITY_TIMEOUT_S": "4", "GENQ_RUNS__HEARTBEAT_S": "1"}
    from worker.providers.registry import PROVIDERS  # noqa: PLC0415 (settings are read at import)

    sim_urls = {f"GENQ_{name.upper()}__BASE_URL": services.sim.base_url for name in PROVIDERS}
    return worker_env(own_redis.url, artifact_dir=tmp_path / "artifacts", extra={**sim_urls, **extra})


class Workers:
    """Subprocess workers of one test, on its own Redis; every one is stopped at the end of the test.

    ``workers(name, **env_overrides)`` starts one and, unless ``ready=False``, returns once it has logged
    ``ready.``, so that a test's clock never includes a worker's start. ``took_part(name)`` counts the
    stage runs a worker logged: a test that claims several processes shares a budget shows that each
    ran some."""

    def __init__(self, env: dict[str, str], tmp_path: Path) -> None:
        self.env, self.tmp_path = env, tmp_path
        self.started: dict[str, subprocess.Popen[bytes]] = {}

    def __call__(
        self,
        name: str,
        concurrency: int = 2,
        queues: tuple[str, ...] | None = None,
        *,
        ready: bool = True,
        **overrides: str,
    ) -> subprocess.Popen[bytes]:
        process = start_worker({**self.env, **overrides}, name=name, concurrency=concurrency, queues=queues,
                               log_path=self.log_path(name))  # fmt: skip
        self.started[name] = process
        if ready:
            self.wait_ready(name)
        return process

    def stop(self, process: subprocess.Popen[bytes], *, kill: bool = False) -> None:
        """Stop one worker (``kill``: SIGKILL the whole worker, no warm shutdown, no ack, no requeue)."""
        stop(process, kill=kill)
        self.started = {name: p for name, p in self.started.items() if p is not process}

    def log_path(self, name: str) -> Path:
        return self.tmp_path / f"{name}.log"

    def wait_ready(self, *names: str) -> None:
        """Until each named worker (every one started, by default) has logged ``ready.``."""
        names = names or tuple(self.started)
        wait_ready([self.started[n] for n in names], [self.log_path(n) for n in names])

    def took_part(self, name: str, task_prefix: str = "genq.") -> int:
        """How many task runs (of tasks named ``task_prefix…``) the worker logged as received."""
        text = self.log_path(name).read_text(errors="replace")
        return len(re.findall(rf"Task {re.escape(task_prefix)}\S*\[[^\]]+\] received", text))

    def stop_all(self, *, kill: bool = False) -> None:
        """Stop every worker at once (each warm shutdown takes a second or more); ``kill``: SIGKILL."""
        stop_all(list(self.started.values()), kill=kill)


@pytest.fixture
def workers(env: dict[str, str], tmp_path: Path) -> Iterator[Workers]:
    """Start subprocess workers (``workers(name, **env_overrides)``); all are SIGKILLed at the end: what
    a test checks has been checked, and a killed worker sends the simulator nothing more."""
    started = Workers(env, tmp_path)
    yield started
    started.stop_all(kill=True)


class AppServer:
    """An ASGI app served by uvicorn on a free loopback port in a daemon thread."""

    def __init__(self, app: Any) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        daemon=True)  # fmt: skip

    def __enter__(self) -> AppServer:
        self._thread.start()
        until(lambda: self._server.started, 10, "the app server to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """A real S3 server (SeaweedFS ``weed mini``) on free loopback ports with one identity (signatures
    checked) and the bucket ``genq``, for the session; tests keep apart by their own key prefixes."""
    with s3_server(bucket="genq") as server:
        yield server


def s3_client_for(server: S3Server) -> Any:
    """A boto3 client of ``server`` with its credentials, for assertions on the bucket."""
    from storage.s3 import s3_client  # noqa: PLC0415

    return s3_client(output_settings(server))


def output_settings(server: S3Server, prefix: str = "outputs", **changes: Any) -> OutputSettings:
    env = {k.removeprefix("GENQ_OUTPUTS__").lower(): v for k, v in server.env(prefix).items()}
    return OutputSettings.model_validate({**env, **changes})


def keys_under(server: S3Server, prefix: str) -> list[str]:
    """Every object key under ``prefix`` in the server's bucket."""
    listed = s3_client_for(server).list_objects_v2(Bucket=server.bucket, Prefix=prefix)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def uploads_under(server: S3Server, prefix: str) -> list[str]:
    """The keys of the incomplete multipart uploads under ``prefix``."""
    listed = s3_client_for(server).list_multipart_uploads(Bucket=server.bucket, Prefix=prefix)
    return sorted(u["Key"] for u in listed.get("Uploads", []))


class _Unavailable(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        body = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
        self.send_response(503)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def unavailable() -> Iterator[str]:
    """An S3 endpoint that answers every request 503 SlowDown."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
