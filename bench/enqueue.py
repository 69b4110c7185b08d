"""Enqueue speed: genq's ``Producer`` against Celery's ``send_task`` and a raw Redis ceiling.

What it measures. Jobs enqueued per second, side by side on one private Redis (an ``EmbeddedRedis`` on
a free port, never the machine's own), in one process, for four modes:

- ``send_task``: Celery's own ``app.send_task("genq.start", args=[job id], queue="syncso")`` in a loop,
  with genq's app (``worker.app``, as a backend would configure it: JSON, sent events on). It writes
  the message only: no validation, no job record. This is the baseline of every ratio.
- ``submit``: ``Producer.submit(request)`` one job at a time: validation, the job record and the first
  message in one script call.
- ``submit_many``: ``Producer.submit_many(requests)`` in calls of ``--batch`` requests: the same per
  job, all validated before anything is written.
- ``lpush``: redis-py pipelined ``LPUSH`` of the same message bytes, built beforehand (no validation,
  no record, no message building): the ceiling of what Redis takes from one Python client.

Requests are typical lipsync jobs with URL inputs (options, an output name and a tenant), each with its
own URLs, given as dicts as a backend would send them. Redis is flushed before every run; each mode
runs ``--repeat`` times (interleaved, so a slow moment of the machine does not fall on one mode) and
the table shows the median and the best run, and the median's ratio to ``send_task``'s median. After
each run the queue length (and the number of job records) is checked against the jobs submitted. A
short untimed run of each mode comes first (connections, pools, the script cache).

Targets (DESIGN.md, "Bulk enqueue"): ``submit_many`` at least 25x ``send_task``, ``submit`` at least
4x, and ``submit_many`` within 3x of ``lpush``. Figures are printed, never asserted; exit status 0
unless ``--strict`` and a target was missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import redis

from genq.redis_server import EmbeddedRedis
from producers import Producer
from producers.producer import new_job_id
from schemas import layout as L
from schemas.wire import task_message

MODES = ("send_task", "submit", "submit_many", "lpush")
QUEUE = L.QUEUE_FOR_KIND["lipsync"]
LPUSH_CHUNK = 1000
WARMUP_JOBS = 500
TARGETS = {"submit_many": 25.0, "submit": 4.0}  # x send_task
CEILING_SHARE = 1 / 3.0  # submit_many at least a third of raw LPUSH


def typical_request(i: int) -> dict[str, Any]:
    return {
        "kind": "lipsync",
        "model": "lipsync-2",
        "video": f"https://cdn.example.com/speakers/{i:08d}.mp4",
        "audio": f"https://cdn.example.com/voices/{i:08d}.wav",
        "options": {"sync_mode": "loop", "temperature": 0.5},
        "output_file_name": f"speaker_{i:08d}_en",
        "tenant": "acme",
    }


@dataclass(frozen=True)
class Options:
    jobs: int
    batch: int
    repeat: int
    modes: list[str]
    strict: bool


@dataclass
class Result:
    mode: str
    jobs: int
    seconds: list[float] = field(default_factory=list)

    def rates(self) -> list[float]:
        return [self.jobs / s for s in self.seconds]

    @property
    def median(self) -> float:
        return statistics.median(self.rates())

    @property
    def best(self) -> float:
        return max(self.rates())


class Bench:
    """The four modes against one Redis; each ``run_<mode>`` returns its elapsed seconds."""

    def __init__(self, url: str, opts: Options) -> None:
        os.environ["GENQ_REDIS_URL"] = url  # the Celery app reads its settings at import
        from worker.app import app  # noqa: PLC0415

        self.app = app
        self.opts = opts
        self.redis = redis.Redis.from_url(url)
        self.producer = Producer(url)
        self.requests = [typical_request(i) for i in range(opts.jobs)]

    def close(self) -> None:
        self.producer.close()
        self.redis.close()
        self.app.close()

    def run_send_task(self) -> float:
        send, task = self.app.send_task, L.START_TASK
        began = time.perf_counter()
        for _ in range(self.opts.jobs):
            send(task, args=[new_job_id()], queue=QUEUE)
        return time.perf_counter() - began

    def run_submit(self) -> float:
        submit = self.producer.submit
        began = time.perf_counter()
        for request in self.requests:
            submit(request)
        return time.perf_counter() - began

    def run_submit_many(self) -> float:
        batch = self.opts.batch
        began = time.perf_counter()
        for start in range(0, len(self.requests), batch):
            self.producer.submit_many(self.requests[start : start + batch])
        return time.perf_counter() - began

    def run_lpush(self) -> float:
        messages = [task_message(L.START_TASK, [new_job_id()], QUEUE) for _ in range(self.opts.jobs)]
        began = time.perf_counter()
        for start in range(0, len(messages), LPUSH_CHUNK):
            with self.redis.pipeline(transaction=False) as pipe:
                for message in messages[start : start + LPUSH_CHUNK]:
                    pipe.lpush(QUEUE, message)
                pipe.execute()
        return time.perf_counter() - began

    def warm_up(self, runs: dict[str, Callable[[], float]]) -> None:
        """One short untimed run of each mode: connections, pools and imports are in place before timing."""
        jobs, requests = self.opts.jobs, self.requests
        self.opts = replace(self.opts, jobs=min(jobs, WARMUP_JOBS))
        self.requests = requests[: self.opts.jobs]
        try:
            for run in runs.values():
                run()
        finally:
            self.opts, self.requests = replace(self.opts, jobs=jobs), requests

    def check(self, mode: str) -> None:
        """Every job's message is in the queue, and (for the producer's modes) every record is stored."""
        queued = self.redis.llen(QUEUE)
        records = sum(1 for _ in self.redis.scan_iter(L.job_key("*"), count=10_000))
        want_records = self.opts.jobs if mode in ("submit", "submit_many") else 0
        if queued != self.opts.jobs or records != want_records:
            raise RuntimeError(f"{mode}: {queued} messages and {records} records after {self.opts.jobs} jobs")

    def measure(self) -> dict[str, Result]:
        runs: dict[str, Callable[[], float]] = {m: getattr(self, f"run_{m}") for m in self.opts.modes}
        results = {m: Result(m, self.opts.jobs) for m in self.opts.modes}
        self.warm_up(runs)
        for repetition in range(self.opts.repeat):
            for mode, run in runs.items():
                self.redis.flushall()
                seconds = run()
                self.check(mode)
                results[mode].seconds.append(seconds)
                print(
                    f"  run {repetition + 1}: {mode:<12} {self.opts.jobs / seconds:>10,.0f} jobs/s",
                    flush=True,
                )
        self.redis.flushall()
        return results


def format_table(results: dict[str, Result]) -> str:
    base = results.get("send_task")
    lines = [
        "| mode | jobs/s (median) | best | x send_task |",
        "|---|---|---|---|",
    ]
    for mode, result in results.items():
        ratio = f"{result.median / base.median:.1f}x" if base else "-"
        lines.append(f"| {_label(mode)} | {result.median:,.0f} | {result.best:,.0f} | {ratio} |")
    return "\n".join(lines)


def _label(mode: str) -> str:
    return {
        "send_task": "Celery `send_task`",
        "submit": "`Producer.submit`",
        "submit_many": "`Producer.submit_many`",
        "lpush": "redis-py pipelined `LPUSH`",
    }[mode]


def verdict(results: dict[str, Result]) -> list[tuple[bool, str]]:
    """(met, line) for each target whose modes were measured."""
    lines: list[tuple[bool, str]] = []
    base = results.get("send_task")
    for mode, target in TARGETS.items():
        if base and mode in results:
            ratio = results[mode].median / base.median
            lines.append((ratio >= target, f"{mode}: {ratio:.2f}x send_task (target >= {target:g}x)"))
    if "submit_many" in results and "lpush" in results:
        share = results["submit_many"].median / results["lpush"].median
        lines.append((share >= CEILING_SHARE, f"submit_many: {share:.0%} of raw LPUSH (target >= 33%)"))
    return lines


def _parse(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per run and mode (default 10,000)")
    parser.add_argument("--batch", type=int, default=10_000, help="requests per submit_many call (10,000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each mode (default 5)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"{','.join(MODES)} (default all)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target was missed")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or set(modes) - set(MODES):
        parser.error(f"--modes: choose from {', '.join(MODES)}")
    if args.jobs < 1 or args.batch < 1 or args.repeat < 1:
        parser.error("--jobs, --batch and --repeat must be positive")
    return Options(args.jobs, args.batch, args.repeat, modes, args.strict)


def main(argv: Sequence[str] | None = None) -> int:
    opts = _parse(argv)
    print(
        f"enqueue speed: {opts.jobs:,} lipsync jobs per run, submit_many in calls of {opts.batch:,}, "
        f"{opts.repeat} runs of each mode, one embedded Redis on loopback",
        flush=True,
    )
    with EmbeddedRedis() as server:
        bench = Bench(server.url, opts)
        try:
            results = bench.measure()
        finally:
            bench.close()
    print()
    print(format_table(results))
    print()
    lines = verdict(results)
    for met, line in lines:
        print(f"{'PASS' if met else 'FAIL'} {line}")
    return 1 if opts.strict and not all(met for met, _ in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
