"""Start and stop Celery workers and Flower as child processes (for ``genq demo`` and the tests)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType

READY_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def worker_env(redis_url: str, *, artifact_dir: Path, extra: Mapping[str, str] = {}) -> dict[str, str]:
    """The environment of a worker pointed at one Redis; ``extra`` names the providers (their
    ``GENQ_<PROVIDER>__...`` base URLs and credentials) and any other setting. No ``GENQ_`` variable of
    this process leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENQ_")}
    env.update(GENQ_REDIS_URL=redis_url, GENQ_ARTIFACT_DIR=str(artifact_dir), PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def start_worker(
    env: Mapping[str, str],
    *,
    name: str,
    queues: Sequence[str] | None = None,
    concurrency: int = 4,
    pool: str = "prefork",
    log_path: Path | None = None,
) -> subprocess.Popen[bytes]:
    """``celery -A worker worker`` in its own process group, so a test can SIGKILL all of it at once.
    ``queues``: all of them (default and every provider's) unless given."""
    queue_option = ["-Q", ",".join(queues)] if queues else []
    command = [
        sys.executable, "-m", "celery", "-A", "worker", "worker", *queue_option,
        "-n", f"{name}@%h", "-c", str(concurrency), "-P", pool,
        "--loglevel", "INFO", "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    return _spawn(command, env, log_path)


def start_flower(
    env: Mapping[str, str], *, port: int, log_path: Path | None = None
) -> subprocess.Popen[bytes]:
    """``celery -A worker flower`` on 127.0.0.1:port, its HTTP API open (a local demo or test only)."""
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker",
        "flower",
        f"--port={port}",
        "--address=127.0.0.1",
    ]
    flower_env = {**env, "FLOWER_UNAUTHENTICATED_API": "true"}
    return _spawn(command, flower_env, log_path)


def start_webhooks(
    env: Mapping[str, str], *, port: int, log_path: Path | None = None
) -> subprocess.Popen[bytes]:
    """``genq webhooks`` on 127.0.0.1:port, with the workers' settings (Redis, webhook secrets)."""
    command = [sys.executable, "-m", "genq.cli", "webhooks", "--host", "127.0.0.1", "--port", str(port)]
    return _spawn(command, env, log_path)


def _spawn(command: list[str], env: Mapping[str, str], log_path: Path | None) -> subprocess.Popen[bytes]:
    """A child in its own process group (a test can SIGKILL all of it), output appended to ``log_path``."""
    if log_path is None:
        return subprocess.Popen(
            command,
            env=dict(env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    with open(log_path, "ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            command, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_http(url: str, *, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1.0):
                return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout_s} s")
        time.sleep(0.2)


def stop(process: subprocess.Popen[bytes], *, timeout_s: float = 15.0, kill: bool = False) -> None:
    """Stop a child and its process group: SIGTERM (warm shutdown), then SIGKILL. ``kill`` skips SIGTERM."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def wait_ready(processes: Sequence[subprocess.Popen[bytes]], logs: Sequence[Path]) -> None:
    """Block until every worker logged ``ready.`` (so that all of them compete from the first job)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    pending = set(range(len(logs)))
    while pending:
        for i in list(pending):
            if processes[i].poll() is not None:
                raise RuntimeError(f"worker {i} exited with {processes[i].returncode}; see {logs[i]}")
            if logs[i].exists() and " ready." in logs[i].read_text(errors="replace"):
                pending.discard(i)
        if time.monotonic() > deadline:
            raise TimeoutError(f"workers {sorted(pending)} not ready after {READY_TIMEOUT_S:.0f} s")
        time.sleep(0.05)


def stop_all(
    processes: Sequence[subprocess.Popen[bytes]], *, timeout_s: float = 15.0, kill: bool = False
) -> None:
    """``stop`` every child at once (``kill``: SIGKILL each, no warm shutdown)."""
    if processes:
        with ThreadPoolExecutor(len(processes)) as pool:
            list(pool.map(lambda p: stop(p, timeout_s=timeout_s, kill=kill), processes))


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so every ``finally`` stops its processes."""
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
