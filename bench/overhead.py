"""genq's overhead per job: the same sync.so lipsync jobs through genq and through a bare Celery chain a
user would write by hand (``bench/bare_chain.py``), side by side in one run, on one private Redis.

Both sides make the same provider calls against one sync.so simulator (in this process), configured so
that a generation ends at once and no budget is ever near (generations are never PENDING or PROCESSING;
genq's and the simulator's rates and concurrency far above what is sent):

- ``genq``: ``Producer.submit_many`` of N lipsync jobs (URL inputs), run by ``celery -A worker`` workers:
  ``genq.start`` → ``create`` → ``wait`` (parks; the status sweep, ``GET /v2/generations?ids=...``,
  wakes it) → ``download``, with job records, run leases, the limiter, the schedule, task events;
- ``bare``: N chains ``create | wait | download | record`` (``POST /v2/generate``, ``GET
  /v2/generate/{id}`` retried with a countdown while running, ``GET`` the output into a file, ``HSET``
  of a result hash), sent with ``apply_async``, run by ``celery -A bench.bare_chain`` workers: Celery
  with late acks and a prefetch of one like genq, no task events (``--bare-events``: with them, like
  genq), no result backend.

Each side runs on its own: its workers (``--workers`` processes x ``--concurrency``, pool ``--pool``, the
same for both) are started, sent ``--warmup`` jobs at once and then ``--alone`` jobs one at a time, each
after a random pause of up to 1 s (the latency of a job alone), left idle 2 s (their idle Redis commands
per second), then sent N jobs at once (timed), and stopped before the other side starts; Redis is
flushed between them. ``--rounds`` timed runs per side, in the order genq, bare, bare, genq, genq, ...
so that a slow moment of this shared machine does not fall on one side only; figures are pooled over
the rounds: ``ms/job`` (and ``jobs/s``) is the median of the rounds', the ratio genq / bare the median of
each round's, every other figure the sum over the rounds divided by their jobs.

Columns (per job: divided by the jobs of the timed runs):
- ``ms/job``: from the first submit to the last job's end, divided by N (1000 / ``jobs/s``);
- ``alone ms``: median latency of a job submitted alone (submit to its recorded end); genq's includes
  the wait for its status sweep (see below);
- ``cmds``: Redis commands (``INFO stats`` ``total_commands_processed``, which counts the commands Lua
  scripts run too), ``round trips``: replies Redis wrote (``total_writes_processed``: one per request
  or pipeline, plus pub/sub messages pushed), both over the timed run, this script's own polling left
  out; idle commands of the workers (``idle cmds/s``) are included, since background loops are part
  of a side's cost;
- ``worker CPU``, ``Redis CPU``: CPU time of the worker processes (all of each worker's process group,
  from ``/proc``) and of redis-server; ``sync.so``: requests per job the simulator answered, by route.

How to read genq's time. A burst runs in phases, since each queue is first in, first out: every job's
``genq.start``, then every ``create``, then every ``wait`` (which parks), then the woken ``wait`` runs,
then every ``download``: five task runs per job against bare's four. Between the parks and the wakes is
the status sweep's delay: ``--poll-s`` (``GENQ_SYNCSO__CHECK_INTERVAL_S``) after a park, but an idle
account's sweep thread naps up to min(1 s, ``GENQ_WAITS__SWEEP_LEASE_S`` / 3) and a park does not wake it.
That costs up to about 1 s once per burst (a large share of 200 jobs' time, less of more jobs) and is
most of ``alone ms``; ``--genq-env GENQ_WAITS__SWEEP_LEASE_S=1`` shortens the nap to a third of a second.

The ratio genq / bare of ms/job is the figure of the issue (goal: at most 1.5). ``--stages`` adds genq's
stage runs per job (from the job records' ``stages`` attempts) and Redis commands per stage run, and
each side's commands per job by name. Figures are printed and written to ``bench/out/overhead.md``,
never asserted. Linux only (``/proc``).

    python -m bench.overhead [--jobs 200] [--workers 2] [--concurrency 4] [--rounds 4] [--stages]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import redis

from genq.processes import start_worker, stop_all, wait_ready, worker_env
from genq.redis_server import EmbeddedRedis
from producers import Producer
from schemas import TERMINAL_STATUSES, JobStatus
from schemas import layout as L
from simulators.config import SimConfig
from simulators.server import SimulatorServer
from simulators.syncso.config import SyncSoSimConfig

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).parent / "out"
SIM_KEY = "bench-overhead-key"
REQUEST = {"kind": "lipsync", "model": "lipsync-2", "video": "https://x.test/v.mp4",
           "audio": "https://x.test/a.wav"}  # fmt: skip
FAR = 1_000_000  # budgets far above anything sent
# A generation is COMPLETED as soon as it is created.
SIM = {"api_key": SIM_KEY, "pending_s": 0.0, "processing_s": 0.0, "duration_jitter": 0.0, "plan": "scale",
       "concurrency": FAR, "create_rate_limit": FAR, "other_rate_limit": FAR}  # fmt: skip
GENQ_ENV = {
    "GENQ_SYNCSO__API_KEY": SIM_KEY,
    "GENQ_SYNCSO__PLAN": "scale",
    "GENQ_SYNCSO__CONCURRENCY": str(FAR),
    "GENQ_SYNCSO__CREATE_RATE__LIMIT": str(FAR),
    "GENQ_SYNCSO__CREATE_RATE__PERIOD_S": "1",
    "GENQ_SYNCSO__OTHER_RATE__LIMIT": str(FAR),
    "GENQ_SYNCSO__OTHER_RATE__PERIOD_S": "1",
}
IDLE_S = 2.0
ALONE_GAP_S = 1.0  # the longest pause before each job sent alone
POLL_S = 0.2  # how often this script looks for ended jobs during a timed run
RUN_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Options:
    jobs: int
    workers: int
    concurrency: int
    pool: str
    rounds: int
    warmup: int
    alone: int
    poll_s: float
    stages: bool
    bare_events: bool
    genq_env: dict[str, str]


@dataclass
class Counts:
    """What Redis, the workers and the simulator did over one timed run (or several, added up)."""

    jobs: int = 0
    seconds: float = 0.0
    round_ms: list[float] = field(default_factory=list)  # ms per job of each timed run
    commands: int = 0
    round_trips: int = 0
    worker_cpu_s: float = 0.0
    redis_cpu_s: float = 0.0
    idle_commands_per_s: list[float] = field(default_factory=list)
    alone_s: list[float] = field(default_factory=list)
    stage_runs: int = 0
    failed: int = 0
    by_command: Counter[str] = field(default_factory=Counter)
    http: Counter[str] = field(default_factory=Counter)

    def add(self, other: Counts) -> None:
        self.jobs += other.jobs
        self.seconds += other.seconds
        self.round_ms += other.round_ms
        self.commands += other.commands
        self.round_trips += other.round_trips
        self.worker_cpu_s += other.worker_cpu_s
        self.redis_cpu_s += other.redis_cpu_s
        self.idle_commands_per_s += other.idle_commands_per_s
        self.alone_s += other.alone_s
        self.stage_runs += other.stage_runs
        self.failed += other.failed
        self.by_command.update(other.by_command)
        self.http.update(other.http)

    def per_job(self, value: float) -> float:
        return value / self.jobs

    @property
    def ms_per_job(self) -> float:
        """Of this run, or the median of the rounds' (a slow moment of the machine moves it least)."""
        return statistics.median(self.round_ms) if self.round_ms else 1000 * self.seconds / self.jobs


class Side(Protocol):
    """One way of running the jobs: how its workers start, how jobs are sent and where each job ends."""

    name: str

    def start_workers(self, opts: Options, logs: Path) -> list[subprocess.Popen[bytes]]: ...

    def submit(self, count: int) -> list[str]:
        """Send ``count`` jobs at once; return the keys of their records."""
        ...

    def ended(self, status: bytes | None) -> bool: ...

    def results(self, keys: Sequence[str]) -> list[tuple[bool, float, int]]:
        """Per job: (succeeded, end time (Unix s), stage runs)."""
        ...


class Genq:
    name = "genq"

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.producer = Producer(rig.redis.url)

    def start_workers(self, opts: Options, logs: Path) -> list[subprocess.Popen[bytes]]:
        extra = {**GENQ_ENV, "GENQ_SYNCSO__BASE_URL": self.rig.sim.base_url,
                 "GENQ_SYNCSO__CHECK_INTERVAL_S": str(opts.poll_s), **opts.genq_env}  # fmt: skip
        env = worker_env(self.rig.redis.url, artifact_dir=self.rig.workdir / "genq-artifacts", extra=extra)
        workers = []
        for i in range(opts.workers):
            log = logs / f"genq-{i}.log"
            workers.append(start_worker(env, name=f"genq-{i}", concurrency=opts.concurrency, pool=opts.pool,
                                        log_path=log))  # fmt: skip
        return workers

    def submit(self, count: int) -> list[str]:
        return [L.job_key(job_id) for job_id in self.producer.submit_many([REQUEST] * count)]

    def ended(self, status: bytes | None) -> bool:
        return status is not None and JobStatus(status.decode()) in TERMINAL_STATUSES

    def results(self, keys: Sequence[str]) -> list[tuple[bool, float, int]]:
        out = []
        for key in keys:
            record = self.producer.get(key.rsplit(":", 1)[1])
            ended = record.finished_at.timestamp() if record.finished_at else float("nan")
            runs = sum(state.attempts for state in record.stages.values())
            out.append((record.status is JobStatus.SUCCEEDED, ended, runs))
        return out

    def close(self) -> None:
        self.producer.close()


class Bare:
    name = "bare"

    def __init__(self, rig: Rig, opts: Options) -> None:
        self.rig = rig
        os.environ["BARE_REDIS_URL"] = rig.redis.url  # the app reads its broker at import
        os.environ["BARE_EVENTS"] = "1" if opts.bare_events else ""
        from bench import bare_chain  # noqa: PLC0415

        self.chain = bare_chain
        self.client = redis.Redis.from_url(rig.redis.url)

    def start_workers(self, opts: Options, logs: Path) -> list[subprocess.Popen[bytes]]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GENQ_", "BARE_"))}
        env.update(BARE_REDIS_URL=self.rig.redis.url, BARE_SYNCSO_URL=self.rig.sim.base_url,
                   BARE_SYNCSO_KEY=SIM_KEY, BARE_ARTIFACT_DIR=str(self.rig.workdir / "bare-artifacts"),
                   BARE_POLL_S=str(opts.poll_s), BARE_EVENTS="1" if opts.bare_events else "",
                   PYTHONUNBUFFERED="1")  # fmt: skip
        workers = []
        for i in range(opts.workers):
            command = [
                sys.executable, "-m", "celery", "-A", "bench.bare_chain", "worker", "-n", f"bare-{i}@%h",
                "-c", str(opts.concurrency), "-P", opts.pool, "--loglevel", "INFO",
                "--without-gossip", "--without-mingle",
            ]  # fmt: skip
            with open(logs / f"bare-{i}.log", "ab") as log:  # the worker keeps its own descriptor
                worker = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)  # fmt: skip
            workers.append(worker)
        return workers

    def submit(self, count: int) -> list[str]:
        keys = []
        for _ in range(count):
            job_id = uuid.uuid4().hex
            self.chain.chain_for(job_id, REQUEST).apply_async()
            keys.append(self.chain.RECORD_KEY.format(job_id=job_id))
        return keys

    def ended(self, status: bytes | None) -> bool:
        return status is not None

    def results(self, keys: Sequence[str]) -> list[tuple[bool, float, int]]:
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(key, "status", "finished_at")
            rows = pipe.execute()
        return [(status == b"succeeded", float(ended), 4) for status, ended in rows]

    def close(self) -> None:
        self.client.close()


class Rig:
    """The Redis and the simulator both sides share, and the measurements around a side's run."""

    def __init__(self, workdir: Path, sim: SimulatorServer, opts: Options) -> None:
        self.workdir = workdir
        self.sim = sim
        self.opts = opts
        self.redis = EmbeddedRedis(data_dir=workdir / "redis")
        self.probe: redis.Redis
        self.http = httpx.Client(base_url=sim.base_url, timeout=10)
        self.own_commands = 0  # sent by this script during a timed run
        self.own_round_trips = 0

    def __enter__(self) -> Rig:
        self.redis.start()
        self.probe = redis.Redis.from_url(self.redis.url)
        return self

    def __exit__(self, *exc: object) -> None:
        self.probe.close()
        self.http.close()
        self.redis.stop()

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = self.probe.info("stats", "commandstats", "cpu")
        return info

    def wait_ended(self, side: Side, keys: Sequence[str], *, poll_s: float, timeout_s: float) -> None:
        """Until every job ended, polling its record's status (counted as this script's own commands)."""
        deadline = time.monotonic() + timeout_s
        pending = list(keys)
        while pending:
            with self.probe.pipeline(transaction=False) as pipe:
                for key in pending:
                    pipe.hget(key, "status")
                statuses = pipe.execute()
            self.own_commands += len(pending)
            self.own_round_trips += 1
            pending = [k for k, s in zip(pending, statuses, strict=True) if not side.ended(s)]
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"{side.name}: {len(pending)} jobs not ended in {timeout_s:.0f} s; see "
                                   f"the worker logs in {self.workdir}")  # fmt: skip
            if pending:
                time.sleep(poll_s)

    def run_side(self, side: Side, round_no: int) -> Counts:
        """Start ``side``'s workers, warm them up, measure one timed run of N jobs, stop them."""
        opts = self.opts
        logs = self.workdir / f"logs-{round_no}"
        logs.mkdir(parents=True, exist_ok=True)
        self.probe.flushall()
        workers = side.start_workers(opts, logs)
        counts = Counts()
        try:
            wait_ready(workers, [logs / f"{side.name}-{i}.log" for i in range(opts.workers)])
            if opts.warmup:
                self.wait_ended(side, side.submit(opts.warmup), poll_s=0.05, timeout_s=RUN_TIMEOUT_S)
            pauses = random.Random(round_no)
            for _ in range(opts.alone):
                time.sleep(pauses.uniform(0, ALONE_GAP_S))  # not in step with any worker's loop
                began = time.time()
                keys = side.submit(1)
                self.wait_ended(side, keys, poll_s=0.005, timeout_s=RUN_TIMEOUT_S)
                counts.alone_s.append(side.results(keys)[0][1] - began)
            before = self.info()
            time.sleep(IDLE_S)
            idle = self.info()
            counts.idle_commands_per_s.append(
                (idle["total_commands_processed"] - before["total_commands_processed"] - 1) / IDLE_S
            )
            self.http.post("/_sim/reset").raise_for_status()
            cpu_before = group_cpu_s(workers)
            self.own_commands = self.own_round_trips = 1  # the INFO that takes the first snapshot
            before = self.info()
            began = time.time()
            keys = side.submit(opts.jobs)
            self.wait_ended(side, keys, poll_s=POLL_S, timeout_s=RUN_TIMEOUT_S)
            after = self.info()
            cpu_after = group_cpu_s(workers)
            results = side.results(keys)
            stats = self.http.get("/_sim/stats").raise_for_status().json()["syncso"]
        finally:
            stop_all(workers)
        counts.jobs = opts.jobs
        counts.seconds = max(ended for _, ended, _ in results) - began
        counts.round_ms = [1000 * counts.seconds / counts.jobs]
        counts.failed = sum(not ok for ok, _, _ in results)
        counts.stage_runs = sum(runs for _, _, runs in results)
        counts.commands = after["total_commands_processed"] - before["total_commands_processed"]
        counts.commands -= self.own_commands
        counts.round_trips = after["total_writes_processed"] - before["total_writes_processed"]
        counts.round_trips -= self.own_round_trips
        counts.worker_cpu_s = cpu_after - cpu_before
        counts.redis_cpu_s = _redis_cpu(after) - _redis_cpu(before)
        counts.by_command = _calls(after) - _calls(before)
        counts.by_command["hget"] -= self.own_commands - 1
        counts.by_command["info"] -= 1
        counts.http = Counter({route: n for route, n in stats["requests"].items() if n})
        return counts


def _calls(info: dict[str, Any]) -> Counter[str]:
    prefix = "cmdstat_"
    return Counter({k.removeprefix(prefix): v["calls"] for k, v in info.items() if k.startswith(prefix)})


def _redis_cpu(info: dict[str, Any]) -> float:
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def group_cpu_s(workers: Sequence[subprocess.Popen[bytes]]) -> float:
    """CPU seconds (user + system) used so far by every live process of the workers' process groups
    (each worker leads its own: its pool's processes are in it)."""
    groups = {w.pid for w in workers}
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # from field 3 (state) on
        if int(fields[2]) in groups:  # field 5: the process group
            ticks += int(fields[11]) + int(fields[12])  # fields 14 and 15: utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def format_table(results: dict[str, Counts]) -> str:
    lines = [
        "| side | jobs | jobs/s | ms/job | alone ms (p50) | cmds/job | round trips/job | idle cmds/s "
        "| worker CPU ms/job | Redis CPU ms/job | sync.so requests/job |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, c in results.items():
        http = ", ".join(f"{route} {c.per_job(n):.2f}" for route, n in sorted(c.http.items()))
        cells = [
            name, c.jobs, f"{1000 / c.ms_per_job:.1f}", f"{c.ms_per_job:.1f}",
            f"{1000 * statistics.median(c.alone_s):.0f}" if c.alone_s else "-",
            f"{c.per_job(c.commands):.1f}", f"{c.per_job(c.round_trips):.1f}",
            f"{statistics.mean(c.idle_commands_per_s):.0f}",
            f"{1000 * c.per_job(c.worker_cpu_s):.1f}", f"{1000 * c.per_job(c.redis_cpu_s):.2f}", http,
        ]  # fmt: skip
        lines.append("| " + " | ".join(str(x) for x in cells) + " |")
    return "\n".join(lines)


def ratios(results: dict[str, Counts]) -> list[str]:
    genq, bare = results["genq"], results["bare"]
    by_round = [g / b for g, b in zip(genq.round_ms, bare.round_ms, strict=True)]
    time_ratio = statistics.median(by_round)
    verdict = "within" if time_ratio <= 1.5 else "ABOVE"
    rounds = ", ".join(f"{r:.2f}" for r in by_round)

    def ratio(value: Callable[[Counts], float]) -> str:
        return f"{genq.per_job(value(genq)) / bare.per_job(value(bare)):.2f}x"

    return [
        f"genq / bare, time per job: {time_ratio:.2f}x, the median of the rounds' ({rounds}); {verdict} "
        "the goal of 1.5x",
        f"genq / bare, per job: Redis commands {ratio(lambda c: c.commands)}, round trips "
        f"{ratio(lambda c: c.round_trips)}, worker CPU {ratio(lambda c: c.worker_cpu_s)}, Redis CPU "
        f"{ratio(lambda c: c.redis_cpu_s)}",
    ]


def stage_lines(results: dict[str, Counts], top: int = 12) -> list[str]:
    genq = results["genq"]
    lines = [
        f"genq stage runs per job: {genq.per_job(genq.stage_runs):.2f} (job records' stage attempts; "
        f"plus one genq.start per job); Redis commands per stage run: "
        f"{genq.commands / genq.stage_runs:.1f}",
        f"bare task runs per job: 4; Redis commands per task run: "
        f"{results['bare'].commands / results['bare'].jobs / 4:.1f}",
    ]
    for name, c in results.items():
        common = c.by_command.most_common(top)
        calls = ", ".join(f"{cmd} {c.per_job(n):.1f}" for cmd, n in common if c.per_job(n) >= 0.05)
        lines.append(f"{name} commands per job by name (top {top}): {calls}")
    return lines


def measure(opts: Options) -> dict[str, Counts]:
    sim_config = SimConfig(syncso=SyncSoSimConfig.model_validate(SIM))
    with (
        tempfile.TemporaryDirectory(prefix="genq-overhead-") as tmp,
        SimulatorServer(sim_config) as sim,
        Rig(Path(tmp), sim, opts) as rig,
    ):
        genq, bare = Genq(rig), Bare(rig, opts)
        sides: dict[str, Side] = {"genq": genq, "bare": bare}
        results = {name: Counts() for name in sides}
        try:
            for round_no in range(opts.rounds):
                order = ["genq", "bare"] if round_no % 2 == 0 else ["bare", "genq"]
                for name in order:
                    counts = rig.run_side(sides[name], round_no)
                    results[name].add(counts)
                    failed = f", {counts.failed} FAILED" if counts.failed else ""
                    print(f"  round {round_no + 1}: {name:<4} {counts.jobs / counts.seconds:6.1f} jobs/s, "
                          f"{counts.ms_per_job:6.1f} ms/job, {counts.per_job(counts.commands):6.1f} cmds/job"
                          f"{failed}", flush=True)  # fmt: skip
        finally:
            genq.close()
            bare.close()
    return results


def _parse(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=200, help="jobs per timed run (default 200)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per side (default 2)")
    parser.add_argument("--concurrency", type=int, default=4, help="pool size of each worker (default 4)")
    parser.add_argument("--pool", default="prefork", help="Celery pool of both sides (default prefork)")
    parser.add_argument("--rounds", type=int, default=4, help="timed runs per side (default 4)")
    parser.add_argument("--warmup", type=int, default=20, help="jobs sent at once before timing (20)")
    parser.add_argument("--alone", type=int, default=5, help="jobs sent one at a time for latency (5)")
    parser.add_argument("--poll-s", type=float, default=0.1,
                        help="genq's check interval and bare's retry countdown (default 0.1)")  # fmt: skip
    parser.add_argument("--stages", action="store_true", help="commands per stage run and by name")
    parser.add_argument("--bare-events", action="store_true", help="the bare workers send task events")
    parser.add_argument("--genq-env", action="append", default=[], metavar="GENQ_X=VALUE",
                        help="a setting of the genq workers (repeatable)")  # fmt: skip
    args = parser.parse_args(argv)
    genq_env = dict(item.split("=", 1) for item in args.genq_env if "=" in item)
    if len(genq_env) != len(args.genq_env) or not all(k.startswith("GENQ_") for k in genq_env):
        parser.error("--genq-env takes GENQ_<SETTING>=<value>")
    if min(args.jobs, args.workers, args.concurrency, args.rounds) < 1 or min(args.warmup, args.alone) < 0:
        parser.error("--jobs, --workers, --concurrency and --rounds must be positive")
    return Options(args.jobs, args.workers, args.concurrency, args.pool, args.rounds, args.warmup,
                   args.alone, args.poll_s, args.stages, args.bare_events, genq_env)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    opts = _parse(argv)
    events = "with" if opts.bare_events else "without"
    header = (
        f"overhead: {opts.jobs} lipsync jobs per timed run, {opts.rounds} run(s) per side, "
        f"{opts.workers} workers x {opts.concurrency} ({opts.pool}) per side, check interval / retry "
        f"countdown {opts.poll_s:g} s, bare {events} task events; one embedded Redis, the sync.so "
        f"simulator in-process (generations end at once)"
    )
    if opts.genq_env:
        header += "; genq workers with " + ", ".join(f"{k}={v}" for k, v in opts.genq_env.items())
    print(header, flush=True)
    started = time.monotonic()
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    results = measure(opts)
    used = resource.getrusage(resource.RUSAGE_SELF)
    lines = [format_table(results), "", *ratios(results)]
    if opts.stages:
        lines += ["", *stage_lines(results)]
    failed = sum(c.failed for c in results.values())
    if failed:
        lines += ["", f"{failed} jobs FAILED: the figures are not comparable"]
    text = "\n".join(lines)
    print("\n" + text)
    print(f"\n({time.monotonic() - started:.0f} s; this process, with the simulator: "
          f"{used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime:.1f} s CPU)")  # fmt: skip
    OUT.mkdir(exist_ok=True)
    (OUT / "overhead.md").write_text(header + "\n\n" + text + "\n")


if __name__ == "__main__":
    os.environ.pop("GENQ_REDIS_URL", None)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # `python bench/overhead.py`: the workers import bench.bare_chain
    main()
