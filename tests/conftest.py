"""Session services, started before any test module imports ``worker`` (it reads settings at import):
a private Redis on a free port and the provider simulators on loopback. Nothing here uses the
machine's own Redis. Tests that kill Redis or workers start their own (see ``tests/integration``)."""

from __future__ import annotations

import faulthandler
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import redis

from genq.redis_server import EmbeddedRedis
from producers import Producer
from schemas import TERMINAL_STATUSES, JobStatus
from schemas import layout as L
from simulators.aimi.config import AimiSimConfig
from simulators.aistudios.config import AIStudiosSimConfig
from simulators.config import SimConfig
from simulators.server import SimulatorServer
from simulators.syncso.config import SyncSoSimConfig

if TYPE_CHECKING:
    from worker.limits import Pool

# The smallest job of each kind the simulators run to the end (URL inputs: nothing to upload). Tests
# derive their own with {**LIPSYNC, ...}; never change these.
LIPSYNC = {"kind": "lipsync", "model": "lipsync-2", "video": "https://x.test/v.mp4",
           "audio": "https://x.test/a.wav"}  # fmt: skip
AVATAR = {"kind": "avatar", "script": "Hello.", "model": "M000045058", "clothes": "BG00002320"}
SIM_KEY = "sim-test-key-0123456789"
# Fast provider timings: a generation takes about 0.3 s.
FAST_SYNCSO = {"pending_s": 0.1, "processing_s": 0.2, "plan": "scale", "create_rate_limit": 10_000,
               "other_rate_limit": 100_000, "duration_jitter": 0.0, "batch_pending_s": 0.1}  # fmt: skip
# Renders take about 0.3 s.
FAST_AISTUDIOS = {"render_s": 0.3, "render_jitter": 0.0}
AISTUDIOS_APP, AISTUDIOS_KEY = "sim-test-app", "sim-test-user-key-0123456789"
# Executions take about 0.5 s; one execution's status may be asked every 0.2 s (Aimi: 5 s).
FAST_AIMI = {"execution_s": 0.5, "status_cooldown_s": 0.2, "analysis_s": 0.05}
AIMI_KEY = "sim-test-aimi-token-0123456789"
WORKER_ENV = {
    "GENQ_SYNCSO__API_KEY": SIM_KEY,
    "GENQ_AISTUDIOS__APP_ID": AISTUDIOS_APP,
    "GENQ_AISTUDIOS__USER_KEY": AISTUDIOS_KEY,
    "GENQ_AISTUDIOS__CHECK_INTERVAL_S": "0.1",
    "GENQ_AISTUDIOS__RATE__LIMIT": "1000",
    "GENQ_AISTUDIOS__RATE__PERIOD_S": "1",
    "GENQ_AISTUDIOS__CONCURRENCY": "8",
    "GENQ_AIMI__API_KEY": AIMI_KEY,
    "GENQ_AIMI__STATUS_INTERVAL_S": "0.2",
    "GENQ_AIMI__CHECK_INTERVAL_S": "0.2",
    "GENQ_AIMI__RATE__LIMIT": "1000",
    "GENQ_AIMI__RATE__PERIOD_S": "1",
    "GENQ_SYNCSO__CHECK_INTERVAL_S": "0.1",
    # Local inputs of the tests live in pytest's temporary directories.
    "GENQ_INPUT_ROOTS": tempfile.gettempdir(),
    "GENQ_SYNCSO__BATCH_CHECK_INTERVAL_S": "0.2",
    "GENQ_SYNCSO__MAX_UPLOAD_BYTES": "65536",
    "GENQ_SYNCSO__UPLOAD_RATE__LIMIT": "1000",
    "GENQ_SYNCSO__UPLOAD_RATE__PERIOD_S": "1",
    "GENQ_WAITS__SWEEP_LEASE_S": "1",
    "GENQ_RETRY__BACKOFF_BASE_S": "0.1",
    "GENQ_RETRY__BACKOFF_CAP_S": "1",
    "GENQ_RETRY__MAX_RETRIES": "4",
    # The simulator's plan (FAST_SYNCSO), which runs batches; budgets far above what the tests send, except
    # where a test sets its own.
    "GENQ_SYNCSO__PLAN": "scale",
    "GENQ_SYNCSO__CONCURRENCY": "6",
    "GENQ_SYNCSO__CREATE_RATE__LIMIT": "1000",
    "GENQ_SYNCSO__CREATE_RATE__PERIOD_S": "1",
    "GENQ_SYNCSO__OTHER_RATE__LIMIT": "1000",
    "GENQ_SYNCSO__OTHER_RATE__PERIOD_S": "1",
    "GENQ_LIMITS__SWEEP_INTERVAL_S": "0.2",
    # The tests' source videos are served on loopback, which the egress policy refuses unless allowed.
    "GENQ_EGRESS__ALLOW": "127.0.0.0/8,::1",
}


def until(condition: Callable[[], bool], timeout_s: float = 15.0, what: str = "the condition") -> None:
    """Poll ``condition`` every 50 ms until it holds; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Services:
    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="genq-tests-"))
        self.redis = EmbeddedRedis()
        aistudios = AIStudiosSimConfig(app_id=AISTUDIOS_APP, user_key=AISTUDIOS_KEY, **FAST_AISTUDIOS)
        syncso = SyncSoSimConfig(api_key=SIM_KEY, **FAST_SYNCSO)
        aimi = AimiSimConfig(api_key=AIMI_KEY, **FAST_AIMI)
        self.sim = SimulatorServer(SimConfig(syncso=syncso, aistudios=aistudios, aimi=aimi))

    def start(self) -> None:
        self.redis.start()
        self.sim.start()
        self.sim_initial = httpx.get(f"{self.sim.base_url}/_sim/config").raise_for_status().json()
        os.environ.update(
            GENQ_REDIS_URL=self.redis.url,
            GENQ_SYNCSO__BASE_URL=self.sim.base_url,
            GENQ_AISTUDIOS__BASE_URL=self.sim.base_url,
            GENQ_AIMI__BASE_URL=self.sim.base_url,
            GENQ_ARTIFACT_DIR=str(self.tmp / "artifacts"),
            **WORKER_ENV,
        )

    def stop(self) -> None:
        self.sim.stop()
        self.redis.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


_services = Services()


def _runs_tests(config: pytest.Config) -> bool:
    """False in the pytest-xdist controller, which only hands tests to its workers: each worker process
    starts services of its own, so no two processes share a Redis, a simulator or a Celery worker."""
    return hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None)


def pytest_configure(config: pytest.Config) -> None:
    # `kill -USR1 <pid>` prints every thread's stack of a test process that seems to hang.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    if not _runs_tests(config):
        return
    for name in [k for k in os.environ if k.startswith("GENQ_")]:
        del os.environ[name]
    _services.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _runs_tests(config):
        _services.stop()


# A test that takes longer than this without the `slow` mark is named at the end of the run.
SLOW_S = 3.0


@pytest.hookimpl(trylast=True)  # after pytest-randomly's shuffle, whose order it keeps within each part
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each test process runs its share of the slow tests first, so that the processes end about together
    rather than one running a 40 s test alone at the end. pytest-xdist's ``worksteal`` hands each of its
    N processes a contiguous part of the collection (``len(pending) // processes left`` tests each), and
    an idle process takes the second half of the longest queue left: the collection is laid out as N such
    parts, each its share of the slow tests (dealt in turn) and then of the rest."""
    processes = getattr(config, "workerinput", {}).get("workercount", 1)
    slow = [item for item in items if item.get_closest_marker("slow")]
    rest = [item for item in items if not item.get_closest_marker("slow")]
    sizes, left = [], len(items)
    for n in range(processes, 0, -1):
        sizes.append(left // n)
        left -= sizes[-1]
    parts = [slow[k::processes] for k in range(processes)]
    for part, size in zip(parts, sizes, strict=True):
        fill = max(0, size - len(part))
        part.extend(rest[:fill])
        del rest[:fill]
    items[:] = [item for part in parts for item in part] + rest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    unmarked = sorted(
        f"{r.duration:.1f} s {r.nodeid}"
        for r in terminalreporter.stats.get("passed", [])
        if r.when == "call" and r.duration > SLOW_S and "slow" not in r.keywords
    )
    if unmarked:
        terminalreporter.write_sep("-", f"over {SLOW_S:.0f} s, not marked slow (mark them: they run first)")
        for line in unmarked:
            terminalreporter.write_line(line)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test's report carries every thread's stack at the failure: what the in-process worker's
    loops (sweeps, mover, reconciler) were doing, when a job did not end in time."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        names = {t.ident: t.name for t in threading.enumerate()}
        stacks = [
            f"--- {names.get(ident, ident)}\n" + "".join(traceback.format_stack(frame))
            for ident, frame in sys._current_frames().items()
        ]
        report.sections.append(("threads at the failure", "\n".join(stacks)))


class Sim:
    """The simulator's control surface (``/_sim/``), as tests use it."""

    def __init__(self, base_url: str, initial: dict[str, Any]) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=10)
        self.initial = initial  # the whole configuration the session started with

    def stats(self, provider: str = "syncso") -> dict[str, Any]:
        return self.http.get("/_sim/stats").raise_for_status().json()[provider]

    def configure(self, provider: str = "syncso", /, **fields: Any) -> None:
        self.http.post("/_sim/config", json={provider: fields}).raise_for_status()

    def fault(self, **fault: Any) -> None:
        self.http.post("/_sim/faults", json=fault).raise_for_status()

    def events(self, since: float = 0.0) -> list[dict[str, Any]]:
        return self.http.get("/_sim/events", params={"since": since}).raise_for_status().json()

    def reset(self) -> None:
        self.http.delete("/_sim/faults").raise_for_status()
        self.http.post("/_sim/reset").raise_for_status()
        self.http.post("/_sim/config", json=self.initial).raise_for_status()


@pytest.fixture(scope="session")
def services() -> Services:
    return _services


def jobs_in_flight(client: redis.Redis) -> list[str]:
    """The jobs on ``client``'s database that have not ended."""
    keys = list(client.scan_iter(L.JOB_KEY.format(job_id="*"), count=1000))
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hget(key, L.F_STATUS)
        statuses = pipe.execute()
    return [
        L.text(key).rsplit(":", 1)[1]
        for key, status in zip(keys, statuses, strict=True)
        if status and JobStatus(L.text(status)) not in TERMINAL_STATUSES
    ]


@pytest.fixture
def sim(services: Services) -> Iterator[Sim]:
    """The session's simulator, reset before and after the test, and with no job of an earlier test in
    flight on the session Redis, so what the simulator counts during the test is the test's own doing."""
    client = redis.Redis.from_url(services.redis.url)
    deadline = time.monotonic() + 30
    while (leftovers := jobs_in_flight(client)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for job_id in leftovers:  # still running after 30 s: cancelled, so that their stages stop
        Producer(client=client).cancel(job_id)
    client.close()
    control = Sim(services.sim.base_url, services.sim_initial)
    control.reset()
    yield control
    control.reset()
    control.http.close()


@pytest.fixture
def redis_client(services: Services) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(services.redis.url)
    yield client
    client.close()


# A database of the session Redis that no worker consumes (they all use 0).
SCRATCH_DB = 9


@pytest.fixture
def scratch_url(services: Services) -> Iterator[str]:
    """The URL of ``SCRATCH_DB``, empty before and after the test: what a test stores there is all there
    is, whatever ran before it. Tests of one process run one at a time, and each pytest-xdist process has
    a Redis of its own, so no two tests ever share it."""
    url = services.redis.url.rsplit("/", 1)[0] + f"/{SCRATCH_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def scratch(scratch_url: str) -> Iterator[redis.Redis]:
    """A client of ``scratch_url``."""
    client = redis.Redis.from_url(scratch_url)
    yield client
    client.close()


def lease_expiry_s(client: redis.Redis, pool: Pool, holder: str) -> float | None:
    """When ``holder``'s lease in ``pool`` lapses (unix seconds, the Redis server's clock), if it has one."""
    expires_ms = client.zscore(L.POOL_KEY.format(name=pool.name) + ":leases", holder)
    return None if expires_ms is None else expires_ms / 1000.0


def holds(client: redis.Redis, pool: Pool, holder: str) -> bool:
    """Whether ``holder`` has a live lease in ``pool``: a test asks about its own job, never about how
    many leases there are (other tests' jobs may hold some)."""
    expires_s = lease_expiry_s(client, pool, holder)
    return expires_s is not None and expires_s > float(client.time()[0])


@pytest.fixture
def media(tmp_path: Path) -> dict[str, str]:
    """Small local input files (the simulator does not decode media)."""
    video, audio = tmp_path / "in.mp4", tmp_path / "in.wav"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4096))
    audio.write_bytes(b"RIFF" + os.urandom(2048))
    return {"video": str(video), "audio": str(audio)}
