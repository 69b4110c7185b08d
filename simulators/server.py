"""Running the simulator: in a background thread (tests, benchmarks) or in the foreground (CLI)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette

from simulators.app import create_app
from simulators.config import SimConfig

STARTUP_TIMEOUT_S = 10.0


def _uvicorn_config(app: Starlette, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",  # the shutdown event closes the webhook client and cancels pending deliveries
        ws="none",
        # Long-polls last up to 10 s; do not let them hold a shutdown that long.
        timeout_graceful_shutdown=1,
    )


class SimulatorServer:
    """The simulator on 127.0.0.1 in a daemon thread; `with SimulatorServer() as sim: sim.base_url`.

    `port=0` picks a free port. The socket is bound before the thread starts, so `base_url` is
    valid as soon as `start()` returns. `storm_plan` (a `POST /_sim/storm` body) starts a fault storm.
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        storm_plan: Mapping[str, Any] | None = None,
    ) -> None:
        self.config = config or SimConfig()
        self.app = create_app(self.config, storm_plan)
        self.host = host
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and without
        # it every small response waits ~40 ms on Nagle plus delayed ACK.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.port: int = self._socket.getsockname()[1]
        self._server = uvicorn.Server(_uvicorn_config(self.app, host, self.port))
        self._thread = threading.Thread(target=self._run, name=f"simulator-{self.port}", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"simulator did not start on {self.base_url}")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=STARTUP_TIMEOUT_S)
        self._socket.close()

    def _run(self) -> None:
        self._server.run(sockets=[self._socket])

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (0: a free port), for ``serve``: bound before anything is
    announced, so what is announced is where the simulators are (``OSError`` if it cannot be)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def serve(
    host: str,
    port: int,
    config: SimConfig,
    storm_plan: Mapping[str, Any] | None = None,
    *,
    sock: socket.socket | None = None,
) -> None:
    """Serve in the foreground until interrupted (used by `genq sim` and `python -m simulators`), on
    ``sock`` if given (``listen``)."""
    sock = sock or listen(host, port)
    app = create_app(config, storm_plan)
    uvicorn.Server(_uvicorn_config(app, host, sock.getsockname()[1])).run(sockets=[sock])
