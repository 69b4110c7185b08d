"""Rate budgets under saturation: genq's global limiter against Celery's own per-task ``rate_limit``.

What it measures. For 1, 2 and 4 Celery worker processes (prefork, 4 children each) it runs the same
lipsync jobs twice against the sync.so simulator, whose real limits are scaled for time by ``--scale``
(create: 60 per 60/scale s; every other endpoint: 600 per window; plan ``scale``, 15 generations in
flight), once per mode:

- ``genq``: genq's limiter on; every worker shares one create budget and one concurrency pool in Redis.
- ``celery``: genq's limiter off (``GENQ_LIMITS__ENABLED=false``) and Celery's per-worker ``rate_limit``
  on the create task set to the account's rate, as a Celery user would; a provider 429 makes the stage
  run again after Retry-After, so jobs still complete.

Every job is submitted at once, so creates are saturated from the first to the last one. Generations are
short (``--pending-s``/``--processing-s``) so that the create rate, not the plan's concurrency, is the
binding limit. Everything is measured at the simulator (its stats and request log), not in genq.

How to read the table:
- ``429 rate`` / ``429 conc``: 429 responses by error code (``rate_limit_exceeded``,
  ``concurrency_limit_reached``), every route.
- ``rate used``: accepted creates (201) per second from the first to the last one, (n - 1) / span, as a
  share of the allowed rate (60 per window). genq plans each window 0.1 s wider (``guard_s``), so its
  ceiling is 60 / (window + 0.1) per second: 98.4 % at scale 10.
- ``max/window``: most accepted creates in any sliding window (the simulator refuses the 61st).
- ``peak in flight``: most generations in PENDING or PROCESSING at once, against the plan's 15.
- ``jobs/min``: succeeded jobs / (last job's end - submit) * 60.
Then genq's ratios against the Celery baseline at the same worker count, and PASS/FAIL for genq's
targets (DESIGN.md): 0 provider 429s and at least 95 % of the allowed rate, every job succeeded. A
diagnostic line gives genq's rate used without the first two windows: the difference from ``rate used``
is what the start-up burst costs (every job's first message arrives at once, and the workers take a
moment to park the jobs that find the pool full). A stage whose turn is reserved re-queues at the front
of its queue, so the burst does not make turns lapse. Time scaling shrinks the window, not the machine's
message handling, so any start-up cost weighs ``--scale`` times more than it would at the real rate.

The PNG (``--out``) has a row per worker count and a column per mode: accepted creates per bin
(window / 10) as bars with the 429s stacked in red, the budget per bin as a line, and on the right axis
the generations in flight, exact: each generation counts from its creation to its terminal time as the
in-process simulator fixed them (the same intervals its concurrency check uses).

Figures are printed, never asserted; exit status 0 unless ``--strict`` and a genq target was missed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from genq.processes import sigterm_as_interrupt as _sigterm_as_interrupt
from genq.processes import start_worker, worker_env
from genq.processes import stop_all as _stop_all
from genq.processes import wait_ready as _wait_ready
from genq.redis_server import EmbeddedRedis
from producers import Producer
from schemas import JobStatus
from simulators.config import SimConfig
from simulators.server import SimulatorServer
from simulators.syncso.config import SyncSoSimConfig

MODES = ("genq", "celery")
SIM_KEY = "bench-syncso-key"
CREATE_LIMIT = 60  # sync.so: POST /v2/generate 60 per minute
OTHER_LIMIT = 600  # every other endpoint 600 per minute
PLAN = "scale"
PLAN_CONCURRENCY = 15
GUARD_S = 0.1
CONCURRENCY_PER_WORKER = 4
BINS_PER_WINDOW = 10
TARGET_SHARE = 0.95
REQUEST = {
    "kind": "lipsync",
    "model": "lipsync-2",
    "video": "https://x.test/v.mp4",
    "audio": "https://x.test/a.wav",
}


@dataclass(frozen=True)
class Options:
    workers: list[int]
    modes: list[str]
    scale: float
    jobs: int
    out: Path
    pending_s: float
    processing_s: float
    jitter: float
    timeout_s: float
    strict: bool
    keep_logs: bool = False

    @property
    def window_s(self) -> float:
        return 60.0 / self.scale

    @property
    def allowed_per_s(self) -> float:
        return CREATE_LIMIT / self.window_s


@dataclass
class Run:
    """What one (mode, workers) run measured; times are unix seconds."""

    mode: str
    workers: int
    jobs: int
    window_s: float
    submitted_at: float
    succeeded: int = 0
    failed: int = 0
    unfinished: int = 0
    last_end: float | None = None
    throttled: dict[str, int] = field(default_factory=dict)
    responses_429: int = 0
    peak_in_flight: int = 0
    creates: list[float] = field(default_factory=list)  # accepted creates (201)
    refused: list[float] = field(default_factory=list)  # 429s on create
    spans: list[tuple[float, float]] = field(default_factory=list)  # generations: created, terminal

    @property
    def rate_429(self) -> int:
        return self.throttled.get("rate_limit_exceeded", 0)

    @property
    def conc_429(self) -> int:
        return self.throttled.get("concurrency_limit_reached", 0)

    @property
    def creates_per_s(self) -> float | None:
        """Accepted creates per second over the saturated span, first to last accepted create."""
        if len(self.creates) < 2 or self.creates[-1] <= self.creates[0]:
            return None
        return (len(self.creates) - 1) / (self.creates[-1] - self.creates[0])

    def rate_share(self) -> float | None:
        per_s = self.creates_per_s
        return None if per_s is None else per_s / (CREATE_LIMIT / self.window_s)

    def steady_share(self, skip_windows: int = 2) -> float | None:
        """``rate_share`` without the first ``skip_windows`` windows after the first create (start-up)."""
        if not self.creates:
            return None
        later = [t for t in self.creates if t >= self.creates[0] + skip_windows * self.window_s]
        if len(later) < 2 or later[-1] <= later[0]:
            return None
        return (len(later) - 1) / (later[-1] - later[0]) / (CREATE_LIMIT / self.window_s)

    def max_in_window(self) -> int:
        """Most accepted creates in any window (t - window, t], as the simulator's sliding log counts."""
        best, first = 0, 0
        for last, t in enumerate(self.creates):
            while self.creates[first] <= t - self.window_s:
                first += 1
            best = max(best, last - first + 1)
        return best

    @property
    def jobs_per_min(self) -> float | None:
        if self.last_end is None or self.last_end <= self.submitted_at or not self.succeeded:
            return None
        return self.succeeded / (self.last_end - self.submitted_at) * 60.0

    def misses(self) -> list[str]:
        """genq's targets this run missed (empty: met)."""
        problems = []
        if self.succeeded != self.jobs:
            problems.append(f"{self.succeeded}/{self.jobs} jobs succeeded")
        if self.responses_429:
            problems.append(f"{self.responses_429} 429s")
        share = self.rate_share()
        if share is None or share < TARGET_SHARE:
            problems.append(f"rate used {_pct(share)} < {TARGET_SHARE:.0%}")
        return problems


def _log(label: str, message: str) -> None:
    print(f"  [{label}] {message}", flush=True)


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.1f}%"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _rate_text(per_s: float) -> str:
    return f"{per_s:g}/s"


def mode_env(mode: str, opts: Options) -> dict[str, str]:
    window = f"{opts.window_s:g}"
    env = {
        "GENQ_SYNCSO__PLAN": PLAN,
        "GENQ_SYNCSO__CREATE_RATE__LIMIT": str(CREATE_LIMIT),
        "GENQ_SYNCSO__CREATE_RATE__PERIOD_S": window,
        "GENQ_SYNCSO__CREATE_RATE__GUARD_S": f"{GUARD_S:g}",
        "GENQ_SYNCSO__OTHER_RATE__LIMIT": str(OTHER_LIMIT),
        "GENQ_SYNCSO__OTHER_RATE__PERIOD_S": window,
        "GENQ_SYNCSO__CHECK_INTERVAL_S": "0.3",
        "GENQ_LIMITS__SWEEP_INTERVAL_S": "0.2",
        "GENQ_RETRY__BACKOFF_BASE_S": "0.2",
    }
    if mode == "celery":
        env["GENQ_LIMITS__ENABLED"] = "false"
        rate = _rate_text(opts.allowed_per_s)
        env["GENQ_LIMITS__CELERY_RATE_LIMITS"] = json.dumps({"genq.syncso.create": rate})
    return env


def sim_config(opts: Options) -> SimConfig:
    return SimConfig(
        syncso=SyncSoSimConfig(
            api_key=SIM_KEY,
            create_rate_limit=CREATE_LIMIT,
            other_rate_limit=OTHER_LIMIT,
            rate_window_s=opts.window_s,
            plan=PLAN,
            pending_s=opts.pending_s,
            processing_s=opts.processing_s,
            duration_jitter=opts.jitter,
            output_bytes=16384,
            seed=1,
        )
    )


def _follow(producer: Producer, ids: list[str], run: Run, label: str, timeout_s: float) -> None:
    """Poll every job until it is terminal or the timeout passes; fill in the run's outcome."""
    open_ids = set(ids)
    deadline = time.monotonic() + timeout_s
    next_note = time.monotonic() + 5.0
    while open_ids and time.monotonic() < deadline:
        for job_id in list(open_ids):
            record = producer.get(job_id)
            if not record.is_terminal:
                continue
            open_ids.discard(job_id)
            if record.status is JobStatus.SUCCEEDED:
                run.succeeded += 1
            else:
                run.failed += 1
            end = record.finished_at.timestamp() if record.finished_at else time.time()
            run.last_end = max(run.last_end or end, end)
        if time.monotonic() >= next_note:
            done = len(ids) - len(open_ids)
            _log(label, f"{done}/{len(ids)} jobs ended after {time.time() - run.submitted_at:.0f} s")
            next_note += 5.0
        time.sleep(0.5)
    run.unfinished = len(open_ids)
    if open_ids:
        _log(label, f"timeout: {len(open_ids)} jobs still open after {timeout_s:.0f} s")


def _generation_spans(sim: SimulatorServer) -> list[tuple[float, float]]:
    """(created, terminal) of every generation, exact, from the in-process simulator's state."""
    state: Any = sim.app.state.control.providers["syncso"].state
    return sorted((g.created_at, g.terminal_at) for g in list(state.generations.values()))


def _measure(run: Run, sim: SimulatorServer) -> None:
    with httpx.Client(base_url=sim.base_url, timeout=30) as http:
        stats = http.get("/_sim/stats").raise_for_status().json()["syncso"]
        events = http.get("/_sim/events", params={"since": 0}).raise_for_status().json()
    run.throttled = {str(k): int(v) for k, v in stats["throttled"].items()}
    run.responses_429 = int(stats["responses"].get("429", 0))
    run.peak_in_flight = int(stats["peak_in_flight"])
    creates = [e for e in events if e["route"] == "syncso.create"]
    run.creates = sorted(float(e["t"]) for e in creates if e["status"] == 201)
    run.refused = sorted(float(e["t"]) for e in creates if e["status"] == 429)
    run.spans = _generation_spans(sim)


def run_one(mode: str, workers: int, opts: Options) -> Run:
    """One configuration on a fresh Redis and a fresh simulator; every process is stopped on the way out."""
    label = f"{mode} x{workers}"
    tmp = Path(tempfile.mkdtemp(prefix=f"genq-bench-{mode}{workers}-"))
    redis_server = EmbeddedRedis()
    sim = SimulatorServer(sim_config(opts))
    processes: list[subprocess.Popen[bytes]] = []
    keep_tmp = False
    try:
        redis_server.start()
        sim.start()
        sim_env = {"GENQ_SYNCSO__BASE_URL": sim.base_url, "GENQ_SYNCSO__API_KEY": SIM_KEY}
        env = worker_env(
            redis_server.url, artifact_dir=tmp / "artifacts", extra={**sim_env, **mode_env(mode, opts)}
        )
        logs = [tmp / f"worker{i}.log" for i in range(workers)]
        started = time.monotonic()
        for i, log_path in enumerate(logs):
            processes.append(
                start_worker(
                    env, name=f"bench-{mode}-{i}", concurrency=CONCURRENCY_PER_WORKER, log_path=log_path
                )
            )
        _wait_ready(processes, logs)
        _log(
            label,
            f"{workers} worker process(es) x {CONCURRENCY_PER_WORKER} ready "
            f"in {time.monotonic() - started:.1f} s; submitting {opts.jobs} jobs",
        )
        producer = Producer(redis_server.url)
        try:
            submitted_at = time.time()
            ids = producer.submit_many([dict(REQUEST) for _ in range(opts.jobs)])
            run = Run(mode, workers, opts.jobs, opts.window_s, submitted_at)
            _follow(producer, ids, run, label, opts.timeout_s)
        finally:
            producer.close()
        _measure(run, sim)
        keep_tmp = opts.keep_logs or run.succeeded != run.jobs
        _log(
            label,
            f"{run.succeeded}/{run.jobs} ok, {run.responses_429} 429s, rate used "
            f"{_pct(run.rate_share())}, {_num(run.jobs_per_min)} jobs/min",
        )
        return run
    except BaseException:
        keep_tmp = True
        raise
    finally:
        _stop_all(processes)
        sim.stop()
        redis_server.stop()
        if keep_tmp:
            print(f"  [{label}] worker logs kept in {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def format_table(runs: Sequence[Run]) -> str:
    header = [
        "mode",
        "workers",
        "jobs ok",
        "429 rate",
        "429 conc",
        "rate used",
        f"max/{CREATE_LIMIT}",
        f"peak/{PLAN_CONCURRENCY}",
        "jobs/min",
    ]
    rows = [header]
    for r in runs:
        rows.append(
            [
                r.mode,
                str(r.workers),
                f"{r.succeeded}/{r.jobs}",
                str(r.rate_429),
                str(r.conc_429),
                _pct(r.rate_share()),
                f"{r.max_in_window()}/{CREATE_LIMIT}",
                f"{r.peak_in_flight}/{PLAN_CONCURRENCY}",
                _num(r.jobs_per_min),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_ratios(runs: Sequence[Run]) -> list[str]:
    by_key = {(r.mode, r.workers): r for r in runs}
    lines = []
    for workers in sorted({r.workers for r in runs}):
        ours, base = by_key.get(("genq", workers)), by_key.get(("celery", workers))
        if ours is None or base is None:
            continue
        ratio = (
            f"x{ours.jobs_per_min / base.jobs_per_min:.2f}"
            if ours.jobs_per_min and base.jobs_per_min
            else "-"
        )
        lines.append(
            f"genq vs celery rate_limit, {workers} worker process(es): jobs/min {ratio} "
            f"({_num(ours.jobs_per_min)} vs {_num(base.jobs_per_min)}), "
            f"429s {ours.responses_429} vs {base.responses_429}, "
            f"rate used {_pct(ours.rate_share())} vs {_pct(base.rate_share())}"
        )
    return lines


def verdict(runs: Sequence[Run]) -> tuple[bool, str] | None:
    ours = [r for r in runs if r.mode == "genq"]
    if not ours:
        return None
    misses = [f"{r.workers} workers: {', '.join(r.misses())}" for r in ours if r.misses()]
    counts = ", ".join(str(r.workers) for r in ours)
    if misses:
        return False, "FAIL genq targets (0 429s, >= 95% of the allowed rate): " + "; ".join(misses)
    return True, f"PASS genq targets: 0 429s and >= 95% of the allowed rate with {counts} worker process(es)"


def plot(runs: Sequence[Run], opts: Options) -> None:
    import matplotlib  # noqa: PLC0415 - only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    workers = sorted({r.workers for r in runs})
    modes = [m for m in opts.modes if any(r.mode == m for r in runs)]
    by_key = {(r.mode, r.workers): r for r in runs}
    bin_s = opts.window_s / BINS_PER_WINDOW
    budget_per_bin = CREATE_LIMIT / BINS_PER_WINDOW
    fig, axes = plt.subplots(
        len(workers), len(modes), figsize=(6.5 * len(modes), 3.0 * len(workers)), sharey=True, squeeze=False
    )
    twins = []
    for row, n in enumerate(workers):
        for col, mode in enumerate(modes):
            ax = axes[row][col]
            run = by_key.get((mode, n))
            if run is None:
                ax.set_visible(False)
                continue
            t0 = run.submitted_at
            end_s = max([run.last_end or t0, *run.creates, *run.refused]) - t0
            edges = np.arange(0.0, end_s + 2 * bin_s, bin_s)
            ok, _ = np.histogram([t - t0 for t in run.creates], bins=edges)
            refused, _ = np.histogram([t - t0 for t in run.refused], bins=edges)
            ax.bar(edges[:-1], ok, width=bin_s, align="edge", color="tab:blue", label="creates accepted")
            ax.bar(edges[:-1], refused, width=bin_s, align="edge", bottom=ok, color="tab:red", label="429s")
            ax.axhline(
                budget_per_bin,
                color="black",
                linestyle="--",
                linewidth=1,
                label=f"budget ({CREATE_LIMIT}/window)",
            )
            ax.set_title(
                f"{mode}, {n} worker process(es): {run.responses_429} 429s, "
                f"rate used {_pct(run.rate_share())}",
                fontsize=9,
            )
            if col == 0:
                ax.set_ylabel(f"creates per {bin_s:g} s")
            ax.set_xlabel("seconds since submit", fontsize=8)
            twin = ax.twinx()
            twins.append(twin)
            times, counts = _in_flight_steps(run.spans, t0)
            twin.step(times, counts, where="post", color="tab:green", linewidth=1, label="in flight")
            twin.axhline(
                PLAN_CONCURRENCY,
                color="tab:green",
                linestyle=":",
                linewidth=1,
                label=f"plan ({PLAN_CONCURRENCY})",
            )
            if col == len(modes) - 1:
                twin.set_ylabel("generations in flight")
            if row == 0 and col == 0:
                handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
                ax.legend(handles=handles, fontsize=7, loc="upper right")
    for twin in twins:
        twin.set_ylim(0, PLAN_CONCURRENCY * 1.6)
    fig.suptitle(
        f"sync.so creates against the budget, limits scaled x{opts.scale:g}: {CREATE_LIMIT} creates "
        f"per {opts.window_s:g} s, plan {PLAN} ({PLAN_CONCURRENCY} in flight), {opts.jobs} jobs"
    )
    fig.tight_layout()
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(opts.out, dpi=110)
    plt.close(fig)


def _in_flight_steps(spans: Sequence[tuple[float, float]], t0: float) -> tuple[list[float], list[int]]:
    """Generations in flight as a step function: +1 at creation, -1 at the terminal time."""
    changes = sorted(
        [(c - t0, 1) for c, _ in spans] + [(e - t0, -1) for _, e in spans], key=lambda x: (x[0], x[1])
    )  # ends before starts at the same instant
    times, counts, level = [0.0], [0], 0
    for t, delta in changes:
        level += delta
        times.append(t)
        counts.append(level)
    return times, counts


def _parse(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--workers", default="1,2,4", help="worker process counts (default 1,2,4)")
    parser.add_argument("--modes", default="genq,celery", help="genq,celery (default both)")
    parser.add_argument("--scale", type=float, default=10.0, help="time scale of the limits (default 10)")
    parser.add_argument("--jobs", type=int, default=150, help="jobs per run (default 150)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "ratelimit.png")
    parser.add_argument("--pending-s", type=float, default=0.1, help="simulated PENDING time (0.1)")
    parser.add_argument("--processing-s", type=float, default=0.4, help="simulated PROCESSING time (0.4)")
    parser.add_argument("--jitter", type=float, default=0.2, help="duration jitter share (0.2)")
    parser.add_argument(
        "--timeout-s",
        type=float,
        default=None,
        help="per run (default: 60 s + 5x the jobs' time at the allowed rate)",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when genq misses a target")
    parser.add_argument("--keep-logs", action="store_true", help="keep every run's worker logs")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(modes) - set(MODES)
    if unknown or not modes:
        parser.error(f"--modes: choose from {', '.join(MODES)}")
    try:
        workers = [int(w) for w in args.workers.split(",") if w.strip()]
    except ValueError:
        parser.error("--workers: a comma-separated list of integers")
    if not workers or min(workers) < 1 or args.jobs < 1 or args.scale <= 0:
        parser.error("--workers, --jobs and --scale must be positive")
    allowed_per_s = CREATE_LIMIT * args.scale / 60.0
    timeout_s = args.timeout_s or 60.0 + 5.0 * args.jobs / allowed_per_s
    return Options(
        workers,
        modes,
        args.scale,
        args.jobs,
        args.out,
        args.pending_s,
        args.processing_s,
        args.jitter,
        timeout_s,
        args.strict,
        args.keep_logs,
    )


def main(argv: Sequence[str] | None = None) -> int:
    opts = _parse(argv)
    began = time.monotonic()
    print(
        f"rate budgets: {', '.join(opts.modes)} x {','.join(map(str, opts.workers))} worker process(es) "
        f"(prefork x{CONCURRENCY_PER_WORKER}), {opts.jobs} jobs per run; "
        f"sync.so limits scaled x{opts.scale:g}: "
        f"{CREATE_LIMIT} creates per {opts.window_s:g} s ({opts.allowed_per_s:g}/s), {OTHER_LIMIT} other "
        f"requests per {opts.window_s:g} s, plan {PLAN} ({PLAN_CONCURRENCY} in flight); generations "
        f"{opts.pending_s:g} s + {opts.processing_s:g} s +-{opts.jitter:.0%}",
        flush=True,
    )
    runs: list[Run] = []
    try:
        with _sigterm_as_interrupt():
            for workers in opts.workers:
                for mode in opts.modes:
                    print(f"{mode}, {workers} worker process(es):", flush=True)
                    runs.append(run_one(mode, workers, opts))
    except KeyboardInterrupt:
        print("interrupted; every process this benchmark started is stopped", file=sys.stderr)
        return 130
    print()
    print(format_table(runs))
    print()
    for line in format_ratios(runs):
        print(line)
    plot(runs, opts)
    print(f"timeline: {opts.out}")
    result = verdict(runs)
    if result is not None:
        steady = ", ".join(f"{r.workers} workers {_pct(r.steady_share())}" for r in runs if r.mode == "genq")
        print(f"(diagnostic, not the target) genq rate used without the first 2 windows: {steady}")
        print(result[1])
    print(f"total {time.monotonic() - began:.0f} s")
    return 1 if opts.strict and result is not None and not result[0] else 0


if __name__ == "__main__":
    sys.exit(main())
