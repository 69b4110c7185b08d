"""In-flight scale: thousands of sync.so generations in flight at once, polling only and with webhooks.

What it measures. For each mode and level N (default 100, 1,000 and 10,000) it submits N lipsync jobs to
genq workers driving the sync.so simulator, whose plan concurrency and create budget are raised far
enough that all N generations are in flight together, while the *status* budget stays at sync.so's real
600 requests a minute (genq's ``syncso.other`` budget and the simulator's limit alike).

Jobs are submitted with ``Producer.submit_many`` in chunks at ``--submit-rate`` jobs a second (40; 0: all
at once), and each generation lasts ``--duration-s`` or, for a level whose submission takes longer, 1.1 x
that time + 10 s, so all N are in flight together, give or take ``--jitter-s`` (6 s: more than half a
check interval, so that when a generation ends is not in step with its checks; a duration that is a
multiple of the check interval would otherwise end each one just before a check and flatter polling).
Generations all last about as long, so they end at the rate they were created: the submit rate must stay
below what the workers finish per second (on a 2-core machine, 2 x 8 threads, with the simulator, the
receiver and Redis on the same cores: about 46 jobs/s while generations end), or the latency measured is
the workers' backlog, not genq's waking path (at 50/s, webhook p99 was 8 s at 10,000 while the wake
itself took 0.54 s). Hence 10,000 jobs take 250 s to create at the default 40/s and their generations
last 285 s.

- ``poll``: genq learns that a generation ended only from its status sweep (``GET /v2/generations?ids=``
  pages, one check of each parked generation every ``GENQ_SYNCSO__CHECK_INTERVAL_S``, 10 s).
- ``webhook``: as ``poll``, plus signed webhook deliveries from the simulator to ``genq webhooks``.

Each run has a fresh embedded Redis, the simulator as a subprocess (``python -m simulators``), optionally
``genq webhooks``, and the Celery workers; a warm-up of a few short jobs runs first, then the "idle"
figures are taken, then the simulator is reconfigured to the long generations and reset.

How to read the table:
- ``peak``: most generations in flight at once (the simulator's ``peak_in_flight``); must reach N.
- ``status/min``: status requests (``syncso.list`` + ``syncso.get`` at the simulator) in the busiest
  sliding 60 s of the run, against the budget of 600. ``status total``: all of them in the run, and ``429``
  the provider's refusals of any request.
- ``p50``/``p99``/``max``: completion latency after the provider finished: the job's ``finished_at`` minus
  the generation's ``terminal_at`` (``/_sim/syncso/generations``), succeeded jobs only.
- ``RSS``: resident memory of every worker process (each worker's process group: main process and pool
  children), summed, from ``/proc/<pid>/status``: at idle (after the warm-up) and at peak in flight
  (the largest sample taken while at least 95 % of the peak was in flight), with the change.
- ``Redis``: ``used_memory`` at idle and at peak in flight (job records are kept 7 days, so it grows
  with the jobs submitted; it is reported, not a target).
Diagnostics below the table: creates and completions per second, p99 from the generation's end to the
woken wait stage's end (the waking path alone, without the download), ids per status request (from the
workers' httpx log lines) against the page size, queue and parked peaks, CPU per component.

Targets (DESIGN.md, "In-flight scale"): at most 600 status requests a minute at the largest level; p99
latency at most one sweep period (``SWEEP_TARGET_S``, 15 s) by polling and 1 s with webhooks; worker RSS
at peak within 10 % of idle at every level. Figures are printed, never asserted; exit status 0 unless
``--strict`` and a target was missed. Writes ``bench/out/inflight.md`` and ``bench/out/inflight.png``.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import hashlib
import json
import math
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import redis

from genq.processes import free_port, start_webhooks, start_worker, wait_http, worker_env
from genq.processes import sigterm_as_interrupt as _sigterm_as_interrupt
from genq.processes import stop_all as _stop_all
from genq.processes import wait_ready as _wait_ready
from genq.redis_server import EmbeddedRedis
from producers import Producer
from schemas import layout as L

MODES = ("poll", "webhook")
SIM_KEY = "bench-syncso-key"
STATUS_LIMIT = 600  # sync.so: every endpoint but create, 600 per minute (kept real)
STATUS_PERIOD_S = 60.0
CREATE_LIMIT = 1_000_000  # raised: creates must not be what keeps N from being in flight together
PLAN_CONCURRENCY = 50_000  # raised likewise (plan concurrency of the account)
CHECK_INTERVAL_S = 10.0  # GENQ_SYNCSO__CHECK_INTERVAL_S default: the sweep period
SWEEP_TARGET_S = 15.0  # p99 latency target by polling: one sweep period (with its margin)
WEBHOOK_TARGET_S = 1.0
RSS_TARGET = 0.10
OUTPUT_BYTES = 1024
SAMPLE_EVERY_S = 2.0
FOLLOW_EVERY_S = 2.0
PLATEAU_SHARE = 0.95  # "at peak in flight": samples taken while at least this share of the peak ran
WARMUP_JOBS = 12
WARMUP_PENDING_S = 0.2
WARMUP_PROCESSING_S = 0.5
SUBMIT_CHUNK = 1000
PACED_CHUNK = 50  # jobs per submit_many call when submitting at --submit-rate
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
UNPACED_CREATES_PER_S = 60.0  # creates per second this 2-core machine manages with every job queued at once
REQUEST = {
    "kind": "lipsync",
    "model": "lipsync-2",
    "video": "https://x.test/v.mp4",
    "audio": "https://x.test/a.wav",
}
WAIT_STAGE = L.STAGE_PREFIX + "wait"
LIST_URL = "/v2/generations?"
# Ids one sweep request can carry: GenerationWatcher.page_size at GENQ_SYNCSO__MAX_URL_BYTES=8000.
PAGE_SIZE = (8000 - len(LIST_URL)) // (len("ids=&") + 36)
GENERATION_FIELD = L.PROVIDER_ID_PREFIX + "generation"
ACCOUNT = hashlib.sha256(SIM_KEY.encode()).hexdigest()[:12]  # worker.providers.syncso.watch.account_label
PARKED_KEY = L.WAIT_DUE_KEY.format(provider="syncso", account=ACCOUNT)
SLOTS_KEY = L.POOL_KEY.format(name="syncso.generations") + ":leases"


@dataclass(frozen=True)
class Options:
    levels: list[int]
    modes: list[str]
    webhook_levels: list[int]
    workers: int
    pool: str
    concurrency: int
    duration_s: float  # shortest generation (pending + processing)
    submit_rate: float | None  # jobs submitted per second (None: all at once)
    jitter_s: float  # largest deviation of a generation's duration from the level's duration
    out_dir: Path
    strict: bool
    keep_logs: bool

    @property
    def creates_per_s(self) -> float:
        return self.submit_rate or UNPACED_CREATES_PER_S

    def duration_for(self, level: int) -> float:
        """A generation outlasts the creates of all ``level`` jobs by a margin, so all are in flight."""
        return max(self.duration_s, 1.1 * level / self.creates_per_s + 10.0)

    def jitter_share(self, level: int) -> float:
        return min(0.5, self.jitter_s / self.duration_for(level))

    def timeout_for(self, level: int) -> float:
        return self.duration_for(level) + 2.0 * level / self.creates_per_s + 120.0

    def runs(self) -> list[tuple[str, int]]:
        plan = []
        for level in self.levels:
            plan += [(mode, level) for mode in self.modes if mode == "poll" or level in self.webhook_levels]
        return plan


@dataclass
class Sample:
    t: float
    rss_kb: int
    redis_bytes: int
    queued: int  # messages waiting in the syncso and default queues
    parked: int  # stages parked until their generation ends
    slots: int  # concurrency slots held
    cpu_s: dict[str, float]  # CPU seconds (user + system) so far, per component


@dataclass
class Run:
    """What one (mode, level) run measured; times are unix seconds."""

    mode: str
    level: int
    duration_s: float
    submitted_at: float
    idle_rss_kb: int = 0
    idle_redis_bytes: int = 0
    succeeded: int = 0
    failed: int = 0
    unfinished: int = 0
    last_end: float | None = None
    peak_in_flight: int = 0
    responses_429: int = 0
    status_times: list[float] = field(default_factory=list)  # syncso.list and syncso.get responses
    create_times: list[float] = field(default_factory=list)  # accepted creates
    spans: list[tuple[float, float]] = field(default_factory=list)  # generations: created, terminal
    latencies: list[float] = field(default_factory=list)  # job finished_at - generation terminal_at
    wake_latencies: list[float] = field(default_factory=list)  # wait stage done - terminal_at
    webhooks: dict[str, int] = field(default_factory=dict)
    ids_per_request: list[int] = field(default_factory=list)  # of each status sweep request (worker logs)
    samples: list[Sample] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.mode} {self.level}"

    def busiest_minute(self) -> int:
        return _max_in_window(self.status_times, STATUS_PERIOD_S)

    def in_flight_at(self, t: float) -> int:
        starts = sorted(c for c, _ in self.spans)
        ends = sorted(e for _, e in self.spans)
        return bisect.bisect_right(starts, t) - bisect.bisect_right(ends, t)

    def plateau_samples(self) -> list[Sample]:
        if not self.samples or not self.spans:
            return []
        starts = sorted(c for c, _ in self.spans)
        ends = sorted(e for _, e in self.spans)
        floor = PLATEAU_SHARE * self.peak_in_flight
        return [
            s
            for s in self.samples
            if bisect.bisect_right(starts, s.t) - bisect.bisect_right(ends, s.t) >= floor
        ]

    def peak_rss_kb(self) -> int | None:
        plateau = self.plateau_samples()
        return max(s.rss_kb for s in plateau) if plateau else None

    def peak_redis_bytes(self) -> int | None:
        plateau = self.plateau_samples()
        return max(s.redis_bytes for s in plateau) if plateau else None

    def max_rss_kb(self) -> int | None:
        return max((s.rss_kb for s in self.samples), default=None)

    def rss_change(self) -> float | None:
        peak = self.peak_rss_kb()
        return None if peak is None or not self.idle_rss_kb else peak / self.idle_rss_kb - 1.0

    def latency(self, q: float) -> float | None:
        return _quantile(self.latencies, q)

    def completions_per_s(self) -> float | None:
        """Jobs finished per second from the first generation's end to the last job's end."""
        if not self.spans or self.last_end is None:
            return None
        first_end = min(e for _, e in self.spans)
        return self.succeeded / (self.last_end - first_end) if self.last_end > first_end else None

    def create_span_s(self) -> float | None:
        if len(self.create_times) < 2:
            return None
        return self.create_times[-1] - self.create_times[0]

    def cpu_shares(self) -> dict[str, float]:
        """Each component's CPU use over the run (first to last sample), in cores."""
        if len(self.samples) < 2:
            return {}
        first, last = self.samples[0], self.samples[-1]
        wall = last.t - first.t
        return {name: (last.cpu_s[name] - first.cpu_s.get(name, 0.0)) / wall for name in last.cpu_s}

    def latency_target(self) -> float:
        return WEBHOOK_TARGET_S if self.mode == "webhook" else SWEEP_TARGET_S

    def misses(self, largest: int) -> list[str]:
        """Targets this run missed (empty: met)."""
        problems = []
        if self.succeeded != self.level:
            problems.append(f"{self.succeeded}/{self.level} jobs succeeded")
        if self.peak_in_flight < self.level:
            problems.append(f"peak in flight {self.peak_in_flight} < {self.level}")
        if self.level == largest and self.busiest_minute() > STATUS_LIMIT:
            problems.append(f"{self.busiest_minute()} status requests in a minute > {STATUS_LIMIT}")
        p99 = self.latency(0.99)
        if p99 is None or p99 > self.latency_target():
            problems.append(f"p99 latency {_secs(p99)} > {self.latency_target():g} s")
        change = self.rss_change()
        if change is None or change > RSS_TARGET:
            problems.append(f"worker RSS {_pct(change)} over idle > {RSS_TARGET:.0%}")
        return problems


def _log(label: str, message: str) -> None:
    print(f"  [{label}] {message}", flush=True)


def _max_in_window(times: Sequence[float], window_s: float) -> int:
    """Most events in any window (t - window, t]; ``times`` sorted."""
    best, first = 0, 0
    for last, t in enumerate(times):
        while times[first] <= t - window_s:
            first += 1
        best = max(best, last - first + 1)
    return best


def _quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:+.1f}%"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _mb(kb_or_bytes: int | None, unit: int) -> str:
    return "-" if kb_or_bytes is None else f"{kb_or_bytes * unit / 2**20:.0f}"


# Process memory and the Redis figures, sampled in a thread while a run goes on.


def scan_processes(groups: Mapping[str, set[int]]) -> tuple[int, dict[str, float]]:
    """(VmRSS in kB summed over the ``workers`` process groups, CPU seconds per component), from /proc.
    A component is a set of process groups (each child started in a session of its own); a process
    counts if its group is in the set, so prefork children count with their worker."""
    by_group = {pgid: name for name, pgids in groups.items() for pgid in pgids}
    rss_kb, cpu = 0, dict.fromkeys(groups, 0.0)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()  # after "(comm)": state ppid pgrp ...
            name = by_group.get(int(fields[2]))
            if name is None:
                continue
            cpu[name] += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
            if name != "workers":
                continue
            for line in Path(f"/proc/{entry.name}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss_kb += int(line.split()[1])
                    break
        except (OSError, ValueError, IndexError):  # the process ended while we read it
            continue
    return rss_kb, cpu


def take_sample(client: redis.Redis, groups: Mapping[str, set[int]]) -> Sample:
    with client.pipeline(transaction=False) as pipe:
        pipe.info("memory")
        pipe.llen("syncso")
        pipe.llen(L.DEFAULT_QUEUE)
        pipe.zcard(PARKED_KEY)
        pipe.zcard(SLOTS_KEY)
        memory, syncso, default, parked, slots = pipe.execute()
    rss_kb, cpu = scan_processes(groups)
    return Sample(time.time(), rss_kb, int(memory["used_memory"]), syncso + default, parked, slots, cpu)


class Sampler:
    """Takes a ``Sample`` every ``SAMPLE_EVERY_S`` in a daemon thread until stopped."""

    def __init__(self, client: redis.Redis, groups: Mapping[str, set[int]]) -> None:
        self.client = client
        self.groups = groups
        self.samples: list[Sample] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def _run(self) -> None:
        while not self.stopped.is_set():
            with contextlib.suppress(redis.RedisError):
                self.samples.append(take_sample(self.client, self.groups))
            self.stopped.wait(SAMPLE_EVERY_S)

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(timeout=10)


# Processes.


def worker_settings(opts: Options, webhook_url: str | None, secret: str) -> dict[str, str]:
    env = {
        "GENQ_SYNCSO__CONCURRENCY": str(PLAN_CONCURRENCY),
        "GENQ_SYNCSO__CREATE_RATE__LIMIT": str(CREATE_LIMIT),
        "GENQ_SYNCSO__CREATE_RATE__PERIOD_S": f"{STATUS_PERIOD_S:g}",
        "GENQ_SYNCSO__OTHER_RATE__LIMIT": str(STATUS_LIMIT),
        "GENQ_SYNCSO__OTHER_RATE__PERIOD_S": f"{STATUS_PERIOD_S:g}",
        "GENQ_SYNCSO__CHECK_INTERVAL_S": f"{CHECK_INTERVAL_S:g}",
        "GENQ_SYNCSO__WEBHOOK_SECRET": secret,
    }
    if webhook_url is not None:
        env["GENQ_WEBHOOKS__BASE_URL"] = webhook_url
    return env


def start_simulator(port: int, secret: str, log_path: Path) -> subprocess.Popen[bytes]:
    """``python -m simulators`` in its own process group (its own GIL), with the warm-up's durations."""
    command = [
        sys.executable, "-m", "simulators", "--host", "127.0.0.1", "--port", str(port),
        "--syncso-api-key", SIM_KEY, "--syncso-pending-s", f"{WARMUP_PENDING_S:g}",
        "--syncso-processing-s", f"{WARMUP_PROCESSING_S:g}", "--syncso-duration-jitter", "0",
        "--syncso-create-rate-limit", str(CREATE_LIMIT), "--syncso-other-rate-limit", str(STATUS_LIMIT),
        "--syncso-rate-window-s", f"{STATUS_PERIOD_S:g}", "--syncso-concurrency", str(PLAN_CONCURRENCY),
        "--syncso-output-bytes", str(OUTPUT_BYTES), "--syncso-webhook-secret", secret,
    ]  # fmt: skip
    with open(log_path, "ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


# Following jobs.


def _follow(client: redis.Redis, ids: list[str], label: str, timeout_s: float, began: float) -> set[str]:
    """Poll the jobs' status (pipelined, open jobs only) until all ended or the timeout; return the open."""
    open_ids = set(ids)
    deadline = time.monotonic() + timeout_s
    next_note = time.monotonic() + 10.0
    while open_ids and time.monotonic() < deadline:
        batch = list(open_ids)
        with client.pipeline(transaction=False) as pipe:
            for job_id in batch:
                pipe.hget(L.job_key(job_id), L.F_STATUS)
            statuses = pipe.execute()
        for job_id, status in zip(batch, statuses, strict=True):
            if status is not None and L.text(status) in {"succeeded", "failed", "cancelled"}:
                open_ids.discard(job_id)
        if time.monotonic() >= next_note:
            _log(label, f"{len(ids) - len(open_ids)}/{len(ids)} jobs ended after {time.time() - began:.0f} s")
            next_note += 10.0
        if open_ids:
            time.sleep(FOLLOW_EVERY_S)
    return open_ids


def _submit(producer: Producer, count: int, per_s: float | None = None) -> list[str]:
    """Submit ``count`` jobs in ``submit_many`` chunks: all at once, or ``per_s`` jobs a second."""
    ids: list[str] = []
    chunk = SUBMIT_CHUNK if per_s is None else PACED_CHUNK
    began = time.monotonic()
    for start in range(0, count, chunk):
        if per_s is not None:
            time.sleep(max(0.0, began + start / per_s - time.monotonic()))
        ids += producer.submit_many([dict(REQUEST) for _ in range(min(chunk, count - start))])
    return ids


def _warm_up(producer: Producer, client: redis.Redis, label: str) -> None:
    ids = _submit(producer, WARMUP_JOBS)
    left = _follow(client, ids, label, 60.0, time.time())
    if left:
        raise RuntimeError(f"warm-up: {len(left)} of {WARMUP_JOBS} jobs did not end within 60 s")


def _idle(client: redis.Redis, groups: Mapping[str, set[int]]) -> tuple[int, int]:
    """Median worker RSS and Redis used_memory over three samples a second apart, once queues are empty."""
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline and take_sample(client, groups).queued:
        time.sleep(0.5)
    time.sleep(2.0)
    samples = []
    for _ in range(3):
        samples.append(take_sample(client, groups))
        time.sleep(1.0)
    return (
        int(statistics.median(s.rss_kb for s in samples)),
        int(statistics.median(s.redis_bytes for s in samples)),
    )


# Measuring.


def _measure(run: Run, sim_url: str, client: redis.Redis, ids: Sequence[str]) -> None:
    with httpx.Client(base_url=sim_url, timeout=60, trust_env=False) as http:
        stats = http.get("/_sim/stats").raise_for_status().json()["syncso"]
        events = http.get("/_sim/events", params={"since": 0}).raise_for_status().json()
        lifecycles = http.get("/_sim/syncso/generations").raise_for_status().json()
    run.peak_in_flight = int(stats["peak_in_flight"])
    run.responses_429 = int(stats["responses"].get("429", 0))
    run.webhooks = {str(k): int(v) for k, v in stats.get("webhooks", {}).items()}
    run.status_times = sorted(float(e["t"]) for e in events if e["route"] in {"syncso.list", "syncso.get"})
    run.create_times = sorted(
        float(e["t"]) for e in events if e["route"] == "syncso.create" and e["status"] == 201
    )
    terminal = {str(g["id"]): float(g["terminal_at"]) for g in lifecycles}
    run.spans = sorted((float(g["created_at"]), float(g["terminal_at"])) for g in lifecycles)
    fields = [L.F_STATUS, L.F_FINISHED, GENERATION_FIELD, WAIT_STAGE]
    with client.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hmget(L.job_key(job_id), fields)
        rows = pipe.execute()
    for status, finished, generation, wait_stage in rows:
        status_text = L.text(status) if status is not None else None
        if status_text == "succeeded":
            run.succeeded += 1
        elif status_text in {"failed", "cancelled"}:
            run.failed += 1
        else:
            run.unfinished += 1
            continue
        end = datetime.fromisoformat(L.text(finished)).timestamp() if finished else None
        if end is not None:
            run.last_end = max(run.last_end or end, end)
        done_at = terminal.get(L.text(generation)) if generation else None
        if status_text != "succeeded" or end is None or done_at is None:
            continue
        run.latencies.append(end - done_at)
        woken = _stage_finished(wait_stage)
        if woken is not None:
            run.wake_latencies.append(woken - done_at)


def sweep_pages(logs: Sequence[Path]) -> list[int]:
    """Ids carried by each status sweep request, from the workers' httpx log lines (they log each URL)."""
    counts = []
    for path in logs:
        with path.open(errors="replace") as lines:
            counts += [
                line.count("ids=") for line in lines if "HTTP Request: GET" in line and LIST_URL in line
            ]
    return counts


def _stage_finished(raw: bytes | str | None) -> float | None:
    if not raw:
        return None
    finished = json.loads(raw).get("finished_at")
    return datetime.fromisoformat(finished).timestamp() if finished else None


def run_one(mode: str, level: int, opts: Options) -> Run:
    """One (mode, level) on a fresh Redis, simulator and workers; every process is stopped on the way out."""
    label = f"{mode} {level}"
    tmp = Path(tempfile.mkdtemp(prefix=f"genq-inflight-{mode}{level}-"))
    redis_server = EmbeddedRedis()
    processes: list[subprocess.Popen[bytes]] = []
    keep_tmp = opts.keep_logs
    secret = "whsec_bench_" + secrets.token_hex(16)
    try:
        redis_server.start()
        sim_url = f"http://127.0.0.1:{free_port()}"
        processes.append(start_simulator(int(sim_url.rsplit(":", 1)[1]), secret, tmp / "sim.log"))
        wait_http(sim_url + "/_sim/stats")
        hook_url = None
        sim_env = {"GENQ_SYNCSO__BASE_URL": sim_url, "GENQ_SYNCSO__API_KEY": SIM_KEY}
        base_env = worker_env(redis_server.url, artifact_dir=tmp / "artifacts", extra=sim_env)
        if mode == "webhook":
            hook_port = free_port()
            hook_url = f"http://127.0.0.1:{hook_port}"
            hook_env = {**base_env, **worker_settings(opts, hook_url, secret)}
            processes.append(start_webhooks(hook_env, port=hook_port, log_path=tmp / "webhooks.log"))
            wait_http(hook_url + "/health")
        env = {**base_env, **worker_settings(opts, hook_url, secret)}
        logs = [tmp / f"worker{i}.log" for i in range(opts.workers)]
        workers = [
            start_worker(
                env, name=f"inflight-{i}", concurrency=opts.concurrency, pool=opts.pool, log_path=log_path
            )
            for i, log_path in enumerate(logs)
        ]
        processes += workers
        _wait_ready(workers, logs)
        groups = {"workers": {w.pid for w in workers}, "sim": {processes[0].pid}}
        groups |= {
            "redis": {redis_server.pid or 0},
            "webhooks": {p.pid for p in processes[1 : -len(workers)]},
            "bench": {os.getpgrp()},
        }
        run = _measured_run(mode, level, opts, redis_url=redis_server.url, sim_url=sim_url, groups=groups)
        run.ids_per_request = sweep_pages(logs)
        keep_tmp = keep_tmp or run.succeeded != run.level
        return run
    except BaseException:
        keep_tmp = True
        raise
    finally:
        _stop_all(processes)
        redis_server.stop()
        if keep_tmp:
            _log(label, f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _measured_run(
    mode: str, level: int, opts: Options, *, redis_url: str, sim_url: str, groups: Mapping[str, set[int]]
) -> Run:
    label = f"{mode} {level}"
    duration_s = opts.duration_for(level)
    client = redis.Redis.from_url(redis_url)
    producer = Producer(redis_url)
    try:
        _warm_up(producer, client, label)
        idle_rss, idle_redis = _idle(client, groups)
        pending_s = 0.2 * duration_s
        with httpx.Client(base_url=sim_url, timeout=30, trust_env=False) as http:
            config = {"pending_s": pending_s, "processing_s": duration_s - pending_s}
            http.post(
                "/_sim/config", json={"syncso": {**config, "duration_jitter": opts.jitter_share(level)}}
            )
            http.post("/_sim/reset").raise_for_status()
        _log(
            label,
            f"idle: workers {idle_rss / 1024:.0f} MB, Redis {idle_redis / 2**20:.1f} MB; submitting {level} "
            f"jobs, generations {duration_s:.0f} s",
        )
        submitted_at = time.time()
        run = Run(mode, level, duration_s, submitted_at, idle_rss, idle_redis)
        with Sampler(client, groups) as sampler:
            ids = _submit(producer, level, opts.submit_rate)
            _log(label, f"submitted in {time.time() - submitted_at:.1f} s")
            left = _follow(client, ids, label, opts.timeout_for(level), submitted_at)
        run.samples = sampler.samples
        if left:
            _log(label, f"timeout: {len(left)} jobs still open")
        _measure(run, sim_url, client, ids)
        _log(
            label,
            f"{run.succeeded}/{level} ok, peak in flight {run.peak_in_flight}, status busiest minute "
            f"{run.busiest_minute()}, p99 {_secs(run.latency(0.99))}, RSS {_pct(run.rss_change())}",
        )
        return run
    finally:
        producer.close()
        client.close()


# Reporting.

HEADER = [
    "mode",
    "N",
    "gen s",
    "jobs ok",
    "peak",
    f"status/min (<= {STATUS_LIMIT})",
    "status total",
    "429",
    "p50",
    "p99",
    "max",
    "worker RSS MB idle -> peak",
    "Redis MB idle -> peak",
]


def table_rows(runs: Sequence[Run]) -> list[list[str]]:
    rows = []
    for r in runs:
        rows.append(
            [
                r.mode,
                f"{r.level:,}",
                f"{r.duration_s:.0f}",
                f"{r.succeeded}/{r.level}",
                f"{r.peak_in_flight:,}",
                str(r.busiest_minute()),
                str(len(r.status_times)),
                str(r.responses_429),
                _secs(r.latency(0.5)),
                _secs(r.latency(0.99)),
                _secs(r.latency(1.0)),
                f"{_mb(r.idle_rss_kb, 1024)} -> {_mb(r.peak_rss_kb(), 1024)} ({_pct(r.rss_change())})",
                f"{_mb(r.idle_redis_bytes, 1)} -> {_mb(r.peak_redis_bytes(), 1)}",
            ]
        )
    return rows


def format_table(runs: Sequence[Run]) -> str:
    rows = [HEADER, *table_rows(runs)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def diagnostics(runs: Sequence[Run]) -> list[str]:
    lines = []
    for r in runs:
        span = r.create_span_s()
        rate = f"{(len(r.create_times) - 1) / span:.0f}/s" if span else "-"
        wake = _secs(_quantile(r.wake_latencies, 0.99))
        hooks = r.webhooks
        hook_text = (
            f", webhooks delivered {hooks.get('delivered', 0)}/{hooks.get('scheduled', 0)}"
            if r.mode == "webhook"
            else ""
        )
        max_rss = r.max_rss_kb()
        cpu = ", ".join(f"{name} {share:.2f}" for name, share in r.cpu_shares().items())
        pages = r.ids_per_request
        page_text = (
            f"status sweep requests {len(pages)}, {statistics.mean(pages):.1f} ids each on average "
            f"(a page holds {PAGE_SIZE}); "
            if pages
            else ""
        )
        lines.append(
            f"- {r.label}: creates took {_secs(span)} ({rate}); completions "
            f"{_num(r.completions_per_s())}/s; p99 terminal -> wait stage done {wake}; "
            f"{page_text}"
            f"worker RSS max over the run {_mb(max_rss, 1024)} MB; peak queued "
            f"{max((s.queued for s in r.samples), default=0)}, peak parked "
            f"{max((s.parked for s in r.samples), default=0)}{hook_text}; CPU cores used: {cpu}"
        )
    return lines


def verdict(runs: Sequence[Run]) -> tuple[bool, list[str]]:
    largest = max((r.level for r in runs), default=0)
    misses = [f"{r.label}: {', '.join(r.misses(largest))}" for r in runs if r.misses(largest)]
    if misses:
        return False, ["FAIL in-flight targets:", *[f"  {m}" for m in misses]]
    return True, [
        f"PASS in-flight targets: <= {STATUS_LIMIT} status requests a minute at {largest:,} in flight, p99 "
        f"<= {SWEEP_TARGET_S:g} s polling and <= {WEBHOOK_TARGET_S:g} s by webhook, worker RSS within "
        f"{RSS_TARGET:.0%} of idle"
    ]


def write_markdown(
    runs: Sequence[Run], opts: Options, setup: str, ok_lines: list[str], wall_s: float
) -> Path:
    path = opts.out_dir / "inflight.md"
    text = [
        "# In-flight scale (bench/inflight.py)",
        "",
        setup,
        "",
        format_table(runs),
        "",
        *ok_lines,
        "",
        "Diagnostics:",
        "",
        *diagnostics(runs),
        "",
        f"Wall time {wall_s:.0f} s.",
        "",
    ]
    path.write_text("\n".join(text))
    return path


def write_json(runs: Sequence[Run], opts: Options) -> Path:
    """The raw figures behind the table: each run's samples, latency quantiles and counters."""
    path = opts.out_dir / "inflight.json"
    data = [
        {
            "mode": r.mode,
            "level": r.level,
            "duration_s": r.duration_s,
            "submitted_at": r.submitted_at,
            "succeeded": r.succeeded,
            "peak_in_flight": r.peak_in_flight,
            "status_busiest_minute": r.busiest_minute(),
            "status_total": len(r.status_times),
            "latency_s": {f"p{round(q * 100)}": r.latency(q) for q in (0.5, 0.9, 0.99, 1.0)},
            "wake_latency_s": {f"p{round(q * 100)}": _quantile(r.wake_latencies, q) for q in (0.5, 0.99)},
            "ids_per_request": r.ids_per_request,
            "webhooks": r.webhooks,
            "idle_rss_kb": r.idle_rss_kb,
            "idle_redis_bytes": r.idle_redis_bytes,
            "samples": [s.__dict__ for s in r.samples],
        }
        for r in runs
    ]
    path.write_text(json.dumps(data))
    return path


def _status_per_minute(run: Run, t0: float, end_s: float) -> tuple[list[float], list[int]]:
    """Status requests in the trailing 60 s, every second."""
    times = [t - t0 for t in run.status_times]
    xs = [float(x) for x in range(int(end_s) + 1)]
    return xs, [bisect.bisect_right(times, x) - bisect.bisect_right(times, x - STATUS_PERIOD_S) for x in xs]


def _in_flight_steps(spans: Sequence[tuple[float, float]], t0: float) -> tuple[list[float], list[int]]:
    changes = sorted([(c - t0, 1) for c, _ in spans] + [(e - t0, -1) for _, e in spans])
    times, counts, level = [0.0], [0], 0
    for t, delta in changes:
        level += delta
        times.append(t)
        counts.append(level)
    return times, counts


COLORS = {"poll": "tab:blue", "webhook": "tab:orange"}


def _plot_status(ax: Any, top: Sequence[Run]) -> None:
    twin = ax.twinx()
    for r in top:
        end_s = (r.last_end or time.time()) - r.submitted_at + 5
        xs, per_min = _status_per_minute(r, r.submitted_at, end_s)
        ax.plot(xs, per_min, color=COLORS[r.mode], label=f"{r.mode}: status requests in the last 60 s")
        ts, counts = _in_flight_steps(r.spans, r.submitted_at)
        twin.step(ts, counts, where="post", color=COLORS[r.mode], linestyle=":", linewidth=1)
    first = top[0]
    needed = [math.ceil(s.parked / PAGE_SIZE) * 60.0 / CHECK_INTERVAL_S for s in first.samples]
    ax.plot(
        [s.t - first.submitted_at for s in first.samples],
        needed,
        color="gray",
        linestyle="--",
        linewidth=1,
        label=f"needed with full pages: ceil(parked / {PAGE_SIZE}) x {60 / CHECK_INTERVAL_S:g}",
    )
    ax.axhline(STATUS_LIMIT, color="red", linestyle="--", linewidth=1, label=f"budget {STATUS_LIMIT}/min")
    ax.set_ylim(0, STATUS_LIMIT * 1.25)
    ax.set_xlabel("seconds since submit")
    ax.set_ylabel("status requests per minute")
    twin.set_ylabel("generations in flight (dotted)")
    ax.set_title(f"{top[0].level:,} jobs: status requests against the budget", fontsize=10)
    ax.legend(fontsize=8, loc="lower center")


def _plot_latency(ax: Any, runs: Sequence[Run]) -> None:
    levels = sorted({r.level for r in runs})
    styles = {level: ("-", "--", "-.", ":")[min(3, len(levels) - 1 - i)] for i, level in enumerate(levels)}
    for r in runs:
        if not r.latencies:
            continue
        values = sorted(max(v, 1e-3) for v in r.latencies)
        ys = [(i + 1) / len(values) for i in range(len(values))]
        ax.step(values, ys, where="post", color=COLORS[r.mode], linestyle=styles[r.level], label=r.label)
    ax.axvline(WEBHOOK_TARGET_S, color="tab:orange", linestyle=":", linewidth=1)
    ax.axvline(SWEEP_TARGET_S, color="tab:blue", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("job finished - generation terminal (s), log scale")
    ax.set_ylabel("share of jobs")
    ax.set_title("completion latency after the provider finished (CDF; targets dotted)", fontsize=10)
    ax.legend(fontsize=8)


def _plot_rss(ax: Any, top: Sequence[Run]) -> None:
    for r in top:
        ax.plot(
            [s.t - r.submitted_at for s in r.samples],
            [s.rss_kb / 1024 for s in r.samples],
            color=COLORS[r.mode],
            label=f"{r.mode}: worker RSS",
        )
        ax.axhline(r.idle_rss_kb / 1024 * (1 + RSS_TARGET), color=COLORS[r.mode], linestyle="--", linewidth=1)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("seconds since submit")
    ax.set_ylabel("MB (dashed: idle + 10 %)")
    ax.set_title(f"{top[0].level:,} jobs: worker RSS, all processes summed", fontsize=10)
    ax.legend(fontsize=8)


def _plot_memory(ax: Any, runs: Sequence[Run]) -> None:
    xs = list(range(len(runs)))
    ax.bar([x - 0.2 for x in xs], [r.idle_rss_kb / 1024 for r in runs], width=0.4, label="worker RSS idle")
    peaks = [(r.peak_rss_kb() or 0) / 1024 for r in runs]
    ax.bar([x + 0.2 for x in xs], peaks, width=0.4, label="worker RSS at peak in flight")
    ax.set_xticks(xs, [r.label for r in runs], fontsize=8)
    ax.set_ylabel("MB")
    redis_ax = ax.twinx()
    redis_ax.plot(xs, [r.idle_redis_bytes / 2**20 for r in runs], "k^--", label="Redis idle")
    redis_ax.plot(xs, [(r.peak_redis_bytes() or 0) / 2**20 for r in runs], "ko-", label="Redis at peak")
    redis_ax.set_ylabel("Redis used_memory MB (black)")
    ax.set_title("memory idle and at peak in flight", fontsize=10)
    handles = ax.get_legend_handles_labels()[0] + redis_ax.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=8, loc="upper left")


def plot(runs: Sequence[Run], opts: Options) -> Path:
    import matplotlib  # noqa: PLC0415 - only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    largest = max(r.level for r in runs)
    top = [r for r in runs if r.level == largest]
    fig, axes = plt.subplots(2, 2, figsize=(14, 9))
    _plot_status(axes[0][0], top)
    _plot_latency(axes[0][1], runs)
    _plot_rss(axes[1][0], top)
    _plot_memory(axes[1][1], runs)
    fig.suptitle(
        f"sync.so in flight: {opts.workers} worker(s) x {opts.pool} x {opts.concurrency}, status budget "
        f"{STATUS_LIMIT}/min, check interval {CHECK_INTERVAL_S:g} s"
    )
    fig.tight_layout()
    path = opts.out_dir / "inflight.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _parse(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--levels", default="100,1000,10000", help="jobs in flight per run (100,1000,10000)")
    parser.add_argument("--modes", default="poll,webhook", help="poll,webhook (default both)")
    parser.add_argument("--webhook-levels", default=None, help="levels run with webhooks (default: all)")
    parser.add_argument("--quick", action="store_true", help="smoke run: levels 50,200, 20 s generations")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--pool", default="threads", help="Celery pool: threads or prefork (threads)")
    parser.add_argument("--concurrency", type=int, default=8, help="per worker process (8)")
    parser.add_argument("--duration-s", type=float, default=60.0, help="shortest generation (60 s)")
    parser.add_argument(
        "--submit-rate",
        type=float,
        default=40.0,
        help="jobs submitted per second; 0: all at once (40). Longer generations for larger levels",
    )
    parser.add_argument(
        "--jitter-s",
        type=float,
        default=6.0,
        help="largest deviation of a generation's duration (6 s: the sweep's phase is random)",
    )
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent / "out")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--keep-logs", action="store_true", help="keep every run's logs")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or set(modes) - set(MODES):
        parser.error(f"--modes: choose from {', '.join(MODES)}")
    try:
        levels = [50, 200] if args.quick else _ints(args.levels)
        webhook_levels = levels if args.webhook_levels is None else _ints(args.webhook_levels)
    except ValueError:
        parser.error("--levels, --webhook-levels: comma-separated integers")
    if not levels or min(levels) < 1 or args.workers < 1 or args.concurrency < 1:
        parser.error("--levels, --workers and --concurrency must be positive")
    return Options(
        levels=levels,
        modes=modes,
        webhook_levels=webhook_levels,
        workers=args.workers,
        pool=args.pool,
        concurrency=args.concurrency,
        duration_s=20.0 if args.quick else args.duration_s,
        submit_rate=args.submit_rate or None,
        jitter_s=args.jitter_s,
        out_dir=args.out_dir,
        strict=args.strict,
        keep_logs=args.keep_logs,
    )


def main(argv: Sequence[str] | None = None) -> int:
    opts = _parse(argv)
    began = time.monotonic()
    setup = (
        f"{opts.workers} worker process(es), pool {opts.pool} x {opts.concurrency}; status budget "
        f"{STATUS_LIMIT}/min (genq and simulator), create budget {CREATE_LIMIT:,}/min and plan concurrency "
        f"{PLAN_CONCURRENCY:,} (raised); check interval {CHECK_INTERVAL_S:g} s; generations at least "
        f"{opts.duration_s:g} s (20 % PENDING) +-{opts.jitter_s:g} s, outputs {OUTPUT_BYTES} bytes; "
        f"submitted {'all at once' if opts.submit_rate is None else f'{opts.submit_rate:g} jobs/s'}; "
        f"levels {', '.join(f'{n:,}' for n in opts.levels)}; modes {', '.join(opts.modes)}"
    )
    print(f"in-flight scale: {setup}", flush=True)
    runs: list[Run] = []
    try:
        with _sigterm_as_interrupt():
            for mode, level in opts.runs():
                print(f"{mode}, {level:,} jobs:", flush=True)
                runs.append(run_one(mode, level, opts))
    except KeyboardInterrupt:
        print("interrupted; every process this benchmark started is stopped", file=sys.stderr)
        return 130
    ok, lines = verdict(runs)
    wall_s = time.monotonic() - began
    print()
    print(format_table(runs))
    print()
    for line in [*lines, "", *diagnostics(runs)]:
        print(line)
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    print(f"table: {write_markdown(runs, opts, setup, lines, wall_s)}")
    print(f"plot: {plot(runs, opts)}")
    print(f"data: {write_json(runs, opts)}")
    print(f"total {time.monotonic() - began:.0f} s")
    return 1 if opts.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
