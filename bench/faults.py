"""Faults survived, with figures: lipsync jobs through real Celery workers and the sync.so simulator while
things go wrong, then a count of what was lost and what was done twice.

Scenarios (each on a fresh embedded Redis with an AOF, ``appendfsync everysec`` as compose runs it):
- ``storm``: the simulator answers a share of every sync.so request with a 5xx (20 %), a 429 (10 %, half
  ``rate_limit_exceeded`` and half ``concurrency_limit_reached``), a timeout (5 %: the request is
  processed and its answer held past the workers' read timeout) or a dropped connection (2 %: processed,
  then the connection is cut mid-answer), over 200 jobs;
- ``redis``: Redis is SIGKILLed while jobs are in flight and restarted from its AOF;
- ``workers``: a worker is SIGKILLed while each kind of stage is running (the simulator holds that stage's
  answer), and another takes over.

Columns: ``jobs``; ``succeeded``/``failed``; ``lost``: jobs not ended at the deadline; ``dup gens``:
generations beyond one per job (by Idempotency-Key, plus any created without one); ``gens``: generations
created; ``orphaned``: jobs found running with no message anywhere (queue, schedule, parked wait, a worker's
hands) in two samples a second apart, as the reconciler finds what it repairs; ``repairs``: the reconciler's
repairs by kind (``genq_repairs_total``); ``s``: wall time. Every scenario should show 0 lost, 0 duplicate
generations and 0 orphaned, but for the Redis kill, whose lost writes leave orphans that the reconciler
repairs. Figures are printed and written to ``bench/out/faults.md``, never asserted here;
``tests/integration/test_faults.py`` runs the same scenarios and asserts them.

    python bench/faults.py [--jobs 200] [--only storm,redis,workers]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from genq.processes import start_worker, stop, stop_all, worker_env
from genq.redis_server import EmbeddedRedis
from producers import Producer
from schemas import JobRecord, JobStatus
from schemas.layout import DEFAULT_QUEUE, REPAIRS_KEY, text
from simulators.config import SimConfig
from simulators.server import SimulatorServer
from simulators.syncso.config import SyncSoSimConfig
from worker.app import PROVIDER_QUEUES
from worker.context import Context
from worker.reconcile import Reconciler
from worker.settings import RunSettings, Settings

OUT = Path(__file__).parent / "out"
SIM_KEY = "bench-faults-key"
STORM = {"providers": ["syncso"], "share_5xx": 0.2, "share_429": 0.1, "share_timeout": 0.05,
         "share_drop": 0.02, "timeout_s": 1.5, "retry_after_s": 0.2, "seed": 7}  # fmt: skip
# Fast, forgiving settings: short backoffs and read timeout (the storm's held answers outlast it), and a
# visibility timeout of 2 s so a killed worker's messages come back soon.
WORKER_ENV = {
    "GENQ_SYNCSO__API_KEY": SIM_KEY,
    "GENQ_SYNCSO__PLAN": "scale",
    "GENQ_SYNCSO__CREATE_RATE__LIMIT": "1000",
    "GENQ_SYNCSO__CREATE_RATE__PERIOD_S": "1",
    "GENQ_SYNCSO__OTHER_RATE__LIMIT": "1000",
    "GENQ_SYNCSO__OTHER_RATE__PERIOD_S": "1",
    "GENQ_SYNCSO__CHECK_INTERVAL_S": "0.2",
    "GENQ_SYNCSO__HTTP__READ_TIMEOUT_S": "1",
    "GENQ_RETRY__BACKOFF_BASE_S": "0.1",
    "GENQ_RETRY__BACKOFF_CAP_S": "0.5",
    "GENQ_RETRY__MAX_RETRIES": "12",
    "GENQ_LIMITS__PAUSE_S": "0.2",
    "GENQ_LIMITS__SWEEP_INTERVAL_S": "0.2",
    "GENQ_WAITS__SWEEP_LEASE_S": "1",
    "GENQ_VISIBILITY_TIMEOUT_S": "2",
    "GENQ_RUNS__HEARTBEAT_S": "0.5",
    "GENQ_RUNS__STALE_S": "3",
    "GENQ_RUNS__RECONCILE_EVERY_S": "1",
}
# The defaults of the visibility timeout, the heartbeat and the reconciler (its stale_s and pass interval):
# recovery from a Redis restart is measured as a fleet configured by default gets it.
_RUNS = RunSettings()
DEFAULT_RUNS = {
    "GENQ_VISIBILITY_TIMEOUT_S": str(Settings.model_fields["visibility_timeout_s"].default),
    "GENQ_RUNS__HEARTBEAT_S": str(_RUNS.heartbeat_s),
    "GENQ_RUNS__STALE_S": str(_RUNS.stale_s),
    "GENQ_RUNS__RECONCILE_EVERY_S": str(_RUNS.reconcile_every_s),
}
FAST_SIM = {"api_key": SIM_KEY, "pending_s": 0.1, "processing_s": 0.3, "duration_jitter": 0.0,
            "plan": "scale", "create_rate_limit": 100_000, "other_rate_limit": 100_000}  # fmt: skip


@dataclass
class Outcome:
    scenario: str
    jobs: int
    succeeded: int
    failed: int
    lost: int
    duplicate_generations: int
    generations: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    struck: dict[str, int] = field(default_factory=dict)  # the storm's answers by kind
    # per kill point: (create requests sent, of which sync.so replayed by Idempotency-Key)
    creates: dict[str, tuple[int, int]] = field(default_factory=dict)
    recovery_s: float | None = None  # after a Redis restart: from Redis answering to the last job's end
    # Running jobs with no message anywhere (queue, schedule, parked wait, a worker's hands), seen in two
    # samples a second apart during the run, and at its end; and the reconciler's repairs by kind.
    orphaned: set[str] = field(default_factory=set)
    orphans_at_end: set[str] = field(default_factory=set)
    repairs: dict[str, int] = field(default_factory=dict)

    def row(self) -> str:
        repairs = ", ".join(f"{k} {v}" for k, v in sorted(self.repairs.items())) or "0"
        cells = [self.scenario, self.jobs, self.succeeded, self.failed, self.lost, self.duplicate_generations,
                 self.generations, len(self.orphaned), repairs, f"{self.seconds:.1f}",
                 "; ".join(self.notes)]  # fmt: skip
        return "| " + " | ".join(str(c) for c in cells) + " |"


HEADER = (
    "| scenario | jobs | succeeded | failed | lost | dup gens | gens | orphaned | repairs | s | notes |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


class Rig:
    """A Redis with an AOF, the simulator, subprocess workers and a producer, for one scenario."""

    def __init__(self, workdir: Path, sim: SimulatorServer) -> None:
        self.workdir = workdir
        self.sim = sim
        self.redis = EmbeddedRedis(appendonly=True, data_dir=workdir / "redis")
        self.workers: list[subprocess.Popen[bytes]] = []
        self.http = httpx.Client(base_url=sim.base_url, timeout=10)
        self.orphaned: set[str] = set()
        self._orphans: set[str] = set()  # the last sample's

    def __enter__(self) -> Rig:
        self.redis.start()
        self.producer = Producer(self.redis.url)
        syncso = {"api_key": SIM_KEY, "base_url": self.sim.base_url}
        ctx = Context(Settings(redis_url=self.redis.url, syncso=syncso))
        self.reconciler = Reconciler.of(ctx, [DEFAULT_QUEUE, *PROVIDER_QUEUES])
        return self

    def __exit__(self, *exc: object) -> None:
        stop_all(self.workers, kill=True)  # the scenario has been measured: nothing to wind down
        self.producer.close()
        self.http.close()
        self.redis.stop()

    def env(self, **overrides: str) -> dict[str, str]:
        extra = {**WORKER_ENV, "GENQ_SYNCSO__BASE_URL": self.sim.base_url, **overrides}
        return worker_env(self.redis.url, artifact_dir=self.workdir / "artifacts", extra=extra)

    def worker(self, name: str, concurrency: int = 4, **overrides: str) -> subprocess.Popen[bytes]:
        process = start_worker(self.env(**overrides), name=name, concurrency=concurrency,
                               log_path=self.workdir / f"{name}.log")  # fmt: skip
        self.workers.append(process)
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        stop(process, kill=True)
        self.workers.remove(process)

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.http.get("/_sim/stats").raise_for_status().json()["syncso"]
        return stats

    def processed(self, route: str, since: float) -> bool:
        """Whether the simulator has processed (and recorded) a request of ``route`` since ``since``."""
        events = self.http.get("/_sim/events", params={"since": since}).raise_for_status().json()
        return any(e["route"] == route for e in events)

    def control(self, method: str, path: str, **kwargs: Any) -> None:
        self.http.request(method, path, **kwargs).raise_for_status()

    def wait_all(self, ids: Sequence[str], timeout_s: float) -> list[JobRecord]:
        """Until every job of ``ids`` ended (or ``timeout_s``), sampling orphans every second."""
        deadline = time.monotonic() + timeout_s
        records: dict[str, JobRecord] = {}
        next_sample = 0.0
        while len(records) < len(ids) and time.monotonic() < deadline:
            for job_id in ids:
                if job_id not in records:
                    record = self.producer.get(job_id)
                    if record.is_terminal:
                        records[job_id] = record
            if time.monotonic() >= next_sample:
                self.sample_orphans()
                next_sample = time.monotonic() + 1.0
            time.sleep(0.2)
        return [records.get(job_id) or self.producer.get(job_id) for job_id in ids]

    def sample_orphans(self) -> set[str]:
        """The running jobs with no message anywhere now; a job found so twice in a row is orphaned
        (what the reconciler would repair). Redis unreachable (killed on purpose) is no sample."""
        try:
            found = self.reconciler.orphans()
        except redis.RedisError:
            return set()
        self.orphaned |= found & self._orphans
        self._orphans = found
        return found

    def outcome(
        self, scenario: str, ids: Sequence[str], records: Sequence[JobRecord], started: float
    ) -> Outcome:
        stats = self.stats()
        by_key = stats["generations_by_idempotency_key"]
        duplicates = (
            sum(len(gens) - 1 for gens in by_key.values()) + stats["generations_without_idempotency_key"]
        )
        count = {status: sum(r.status is status for r in records) for status in JobStatus}
        outcome = Outcome(scenario, len(ids), count[JobStatus.SUCCEEDED], count[JobStatus.FAILED],
                          sum(not r.is_terminal for r in records), duplicates, stats["generations_created"],
                          time.monotonic() - started)  # fmt: skip
        outcome.orphaned = set(self.orphaned)
        outcome.orphans_at_end = self.sample_orphans()
        repairs = self.producer.redis.hgetall(REPAIRS_KEY)
        outcome.repairs = {text(k): int(v) for k, v in repairs.items()}
        return outcome


def lipsync(i: int) -> dict[str, object]:
    return {"kind": "lipsync", "model": "lipsync-2", "video": f"https://media.example.com/{i}.mp4",
            "audio": f"https://media.example.com/{i}.wav", "output_file_name": f"clip_{i:04d}"}  # fmt: skip


@contextlib.contextmanager
def simulator() -> Iterator[SimulatorServer]:
    with SimulatorServer(SimConfig(syncso=SyncSoSimConfig(**FAST_SIM))) as sim:
        yield sim


def reset(sim: SimulatorServer, **syncso: Any) -> None:
    with httpx.Client(base_url=sim.base_url, timeout=10) as http:
        http.delete("/_sim/faults").raise_for_status()
        http.delete("/_sim/storm").raise_for_status()
        http.post("/_sim/reset").raise_for_status()
        http.post("/_sim/config", json={"syncso": {**FAST_SIM, **syncso}}).raise_for_status()


def storm(sim: SimulatorServer, workdir: Path, *, jobs: int = 200, timeout_s: float = 240) -> Outcome:
    """``jobs`` lipsync jobs through the storm (``STORM``) on 2 workers x 8."""
    reset(sim)
    with Rig(workdir / "storm", sim) as rig:
        rig.worker("storm-a", concurrency=8)
        rig.worker("storm-b", concurrency=8)
        rig.control("POST", "/_sim/storm", json=STORM)
        started = time.monotonic()
        ids = rig.producer.submit_many([lipsync(i) for i in range(jobs)])
        records = rig.wait_all(ids, timeout_s)
        result = rig.outcome("storm", ids, records, started)
        counts = rig.http.get("/_sim/storm").raise_for_status().json()
        rig.control("DELETE", "/_sim/storm")
    result.struck = dict(counts["counters"]["syncso"])
    result.notes.append(", ".join(f"{k} {v}" for k, v in result.struck.items()))
    return result


# A slot release in the second of writes a Redis crash loses leaves that slot held until its lease lapses
# (GENQ_LIMITS__LEASE_TTL_S, 180 s): a job waiting for it ends that much later, so the deadline is past it.
def redis_restart(sim: SimulatorServer, workdir: Path, *, jobs: int = 60, timeout_s: float = 240) -> Outcome:
    """SIGKILL Redis once a third of the generations exist (the submits are in the AOF, the workers'
    latest writes may not be), restart it from its AOF 1 s later; ``timeout_s`` counts from when Redis
    answers again. The pool lease (GENQ_LIMITS__LEASE_TTL_S, 180 s), the visibility timeout and the
    reconciler keep their defaults: a slot whose release was lost and a run whose message was lost come
    back through the reconciler, within two of its passes, not by a lease lapsing."""
    reset(sim, processing_s=2.0)
    with Rig(workdir / "redis", sim) as rig:
        rig.worker("redis-a", concurrency=8, **DEFAULT_RUNS)
        rig.worker("redis-b", concurrency=8, **DEFAULT_RUNS)
        started = time.monotonic()
        ids = rig.producer.submit_many([lipsync(i) for i in range(jobs)])
        rig.redis.wait_aof_written()  # the submits are durable; what the workers write next may not be
        deadline = time.monotonic() + 60
        while rig.stats()["generations_created"] < jobs // 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        rig.redis.kill()  # up to the last second of the workers' writes is lost, as in production
        killed_at = time.monotonic()
        time.sleep(1.0)
        rig.redis.restart()
        answering_at = time.monotonic()
        records = rig.wait_all(ids, timeout_s)
        result = rig.outcome("redis SIGKILL + AOF restart", ids, records, started)
        ended = time.monotonic()
        result.notes.append(f"the last job ended {ended - killed_at:.1f} s after the kill, "
                            f"{ended - answering_at:.1f} s after Redis answered again")  # fmt: skip
        result.recovery_s = ended - answering_at
    return result


# (what is running when the worker dies, the simulator route whose answer is held meanwhile, the
# simulator config that makes it last). The job has a local file over the direct-upload limit and a
# cost cap, so it runs every lipsync stage: upload, estimate, create, wait (the sweep), download.
KILL_POINTS: Sequence[tuple[str, str, dict[str, Any]]] = (
    ("upload", "syncso.asset_put", {}),
    ("estimate", "syncso.estimate", {}),
    ("create", "syncso.create", {}),
    ("wait", "syncso.list", {"processing_s": 2.0}),
    ("download", "syncso.download", {}),
)
HOLD_S = 3.0


def worker_kills(sim: SimulatorServer, workdir: Path, *, timeout_s: float = 90) -> Outcome:
    """For each kill point in turn: one job, its stage's answer held ``HOLD_S``, the worker SIGKILLed
    meanwhile, and a new worker takes over (after the visibility timeout, 2 s here); that worker is the
    one killed at the next point. Every job must end, each with one generation."""
    reset(sim)
    started = time.monotonic()
    notes = []
    creates_sent: dict[str, tuple[int, int]] = {}
    with Rig(workdir / "kills", sim) as rig:
        media = rig.workdir / "media"
        media.mkdir(parents=True)
        video = media / "talk.mp4"
        video.write_bytes(os.urandom(256 * 1024))
        roots = {"GENQ_INPUT_ROOTS": str(media), "GENQ_SYNCSO__MAX_UPLOAD_BYTES": str(64 * 1024)}
        job = {**lipsync(0), "video": str(video), "max_cost_usd": 5.0}
        current = rig.worker("kill-0", concurrency=2, **roots)
        ids = []
        for n, (stage, route, config) in enumerate(KILL_POINTS, start=1):
            rig.control("POST", "/_sim/config", json={"syncso": {**FAST_SIM, **config}})
            stats = rig.stats()
            creates, replays = stats["requests"].get("create", 0), stats["idempotency_replays"]
            rig.control("POST", "/_sim/faults", json={"route": route, "hold_s": HOLD_S, "times": 1})
            submitted_at = time.time()
            with input_roots(media):  # the producer's roots: this process submits
                ids.append(rig.producer.submit(job))
            # The simulator records a request once it has processed it, before holding its answer: the
            # worker dies with the work done and its answer not back (not while still sending the body).
            held = _until(lambda: rig.processed(route, since=submitted_at), 30)  # noqa: B023
            rig.kill(current)
            current = rig.worker(f"kill-{n}", concurrency=2, **roots)
            record = rig.wait_all(ids[-1:], timeout_s)[0]
            stats = rig.stats()
            sent = (stats["requests"].get("create", 0) - creates, stats["idempotency_replays"] - replays)
            notes.append(f"{stage}: {'killed while held' if held else 'NOT HELD'}, {record.status.value}, "
                         f"{sent[0]} create(s), {sent[1]} replayed")  # fmt: skip
            creates_sent[stage] = sent
        records = rig.wait_all(ids, timeout_s)
        outcome = rig.outcome("worker SIGKILL per stage", ids, records, started)
    outcome.notes = notes
    outcome.creates = creates_sent
    return outcome


@contextlib.contextmanager
def input_roots(root: Path) -> Iterator[None]:
    """``GENQ_INPUT_ROOTS`` of this process set to ``root`` for a while (the producer reads it)."""
    before = os.environ.get("GENQ_INPUT_ROOTS")
    os.environ["GENQ_INPUT_ROOTS"] = str(root)
    try:
        yield
    finally:
        if before is None:
            del os.environ["GENQ_INPUT_ROOTS"]
        else:
            os.environ["GENQ_INPUT_ROOTS"] = before


def _until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


SCENARIOS: dict[str, Callable[..., Outcome]] = {
    "storm": storm,
    "redis": redis_restart,
    "workers": worker_kills,
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=200, help="jobs of the storm scenario")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="scenarios, comma-separated")
    args = parser.parse_args(argv)
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="genq-faults-") as tmp, simulator() as sim:
        for name in args.only.split(","):
            options = {"jobs": args.jobs} if name == "storm" else {}
            outcome = SCENARIOS[name](sim, Path(tmp), **options)
            print(outcome.row(), flush=True)
            outcomes.append(outcome)
    table = HEADER + "\n" + "\n".join(o.row() for o in outcomes)
    print("\n" + table)
    OUT.mkdir(exist_ok=True)
    (OUT / "faults.md").write_text(table + "\n")


if __name__ == "__main__":
    os.environ.pop("GENQ_REDIS_URL", None)
    main()
