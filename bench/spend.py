"""Spend budgets under concurrency: never past the limit, and one tenant's refusals cost another nothing.

1. ``--runs`` times (default 10): 500 lipsync jobs of one tenant submitted at once to 4 worker processes
   (4 threads each) against a budget that admits exactly 100 of them (the simulator estimates each at
   $0.50; the budget is $50.00 a day, a new tenant each run). Printed per run: generations created
   (must be 100), jobs refused with ``genq_budget_exceeded`` (must be 400), the largest spent + reserved
   sampled every 20 ms while the jobs ran (must not pass $50.00), and spent and reserved at the end.
2. Two tenants: 100 jobs of a tenant without a budget, alone; then the same 100 submitted with 400 jobs of
   a tenant whose budget admits 10, interleaved. Printed: how long the first tenant's 100 took each time
   (first submit to last end) and the ratio.

Same embedded Redis, simulator and workers throughout. Figures are printed, never asserted.

    python -m bench.spend [--runs 10] [--jobs 500]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import redis

from genq.processes import start_worker, stop_all, wait_ready, worker_env
from genq.redis_server import EmbeddedRedis
from producers import Producer
from schemas import JobRecord, JobStatus
from simulators.config import SimConfig
from simulators.server import SimulatorServer
from simulators.syncso.config import SyncSoSimConfig
from worker.spend import Budget, Spend

KEY = "bench-spend-key"
JOB = {"kind": "lipsync", "model": "lipsync-2", "video": "https://media.example.com/v.mp4",
       "audio": "https://media.example.com/a.wav"}  # fmt: skip
ESTIMATE_USD = 0.5  # 10 s of media at $0.05 a second


def sim_config() -> SimConfig:
    return SimConfig(syncso=SyncSoSimConfig(api_key=KEY, plan="scale", pending_s=0.1, processing_s=0.3,
                                            create_rate_limit=100_000, other_rate_limit=100_000,
                                            price_per_s={"lipsync-2": 0.05}))  # fmt: skip


def env(redis_url: str, base_url: str, workdir: Path) -> dict[str, str]:
    extra = {"GENQ_SYNCSO__BASE_URL": base_url, "GENQ_SYNCSO__API_KEY": KEY, "GENQ_SYNCSO__PLAN": "scale",
             "GENQ_SYNCSO__CREATE_RATE__LIMIT": "100000", "GENQ_SYNCSO__OTHER_RATE__LIMIT": "100000",
             "GENQ_SYNCSO__CHECK_INTERVAL_S": "0.2", "GENQ_SYNCSO__CONCURRENCY": "15"}  # fmt: skip
    return worker_env(redis_url, artifact_dir=workdir / "artifacts", extra=extra)


def wait_all(
    producer: Producer, ids: Sequence[str], sample: Callable[[], None] | None = None
) -> list[JobRecord]:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if sample is not None:
            sample()
        records = [r for r in producer.get_many(list(ids), presign=False) if r is not None]
        if len(records) == len(ids) and all(r.is_terminal for r in records):
            return records
        time.sleep(0.02)
    raise TimeoutError("jobs did not end within 600 s")


def one_run(n: int, producer: Producer, spend: Spend, http: httpx.Client, jobs: int) -> dict[str, Any]:
    http.post("/_sim/reset").raise_for_status()
    budget = Budget(f"acme-{n}", ESTIMATE_USD * 100, "day")
    spend.set_budget(budget)
    peak = [0.0]

    def sample() -> None:
        usage = spend.usage(budget)
        peak[0] = max(peak[0], usage.spent_usd + usage.reserved_usd)

    records = wait_all(producer, producer.submit_many([{**JOB, "tenant": budget.tenant}] * jobs), sample)
    usage = spend.usage(budget)
    refused = sum(1 for r in records if r.error is not None and r.error.code == "genq_budget_exceeded")
    created = http.get("/_sim/stats").raise_for_status().json()["syncso"]["generations_created"]
    return {"created": created, "refused": refused, "peak": peak[0], "spent": usage.spent_usd,
            "reserved": usage.reserved_usd}  # fmt: skip


def other_tenant(producer: Producer, spend: Spend, *, spender: str | None) -> float:
    """Seconds from submitting 100 jobs of a tenant without a budget to the last one's end; with
    ``spender``, each of them behind 4 jobs of that tenant (whose budget admits 10, if it has one)."""
    mixed: list[dict[str, Any]] = []
    for _ in range(100):
        mixed += [{**JOB, "tenant": spender}] * (4 if spender else 0) + [{**JOB, "tenant": "other"}]
    started = time.monotonic()
    ids = producer.submit_many(mixed)
    mine = [job_id for job_id, request in zip(ids, mixed, strict=True) if request["tenant"] == "other"]
    records = wait_all(producer, mine)
    took = time.monotonic() - started
    if not all(r.status is JobStatus.SUCCEEDED for r in records):
        print("warning: some jobs of the tenant without a budget did not succeed")
    wait_all(producer, ids)
    return took


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=500)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="genq-bench-spend-"))
    with EmbeddedRedis() as server, SimulatorServer(sim_config()) as sim:
        environ = env(server.url, sim.base_url, workdir)
        logs = [workdir / f"w{n}.log" for n in range(4)]
        procs = [
            start_worker(environ, name=f"w{n}", concurrency=4, log_path=log) for n, log in enumerate(logs)
        ]
        try:
            wait_ready(procs, logs)
            producer, spend = Producer(server.url), Spend(redis.Redis.from_url(server.url))
            with httpx.Client(base_url=sim.base_url, timeout=30) as http:
                header = f"{'run':>4} {'created':>8} {'refused':>8} {'peak spent+reserved':>20} {'spent':>8}"
                print(f"{header} {'reserved':>9}")
                for n in range(1, args.runs + 1):
                    r = one_run(n, producer, spend, http, args.jobs)
                    print(f"{n:>4} {r['created']:>8} {r['refused']:>8} {r['peak']:>20.2f} {r['spent']:>8.2f} "
                          f"{r['reserved']:>9.2f}")  # fmt: skip
                spend.set_budget(Budget("spender", ESTIMATE_USD * 10, "day"))
                alone = other_tenant(producer, spend, spender=None)
                refused = other_tenant(producer, spend, spender="spender")
                admitted = other_tenant(producer, spend, spender="unlimited")
        finally:
            stop_all(procs)
    print(
        f"\nbudget ${ESTIMATE_USD * 100:.2f} a day, each job estimated at ${ESTIMATE_USD:.2f}: 100 admitted"
    )
    print(f"100 jobs of a tenant without a budget: {alone:.1f} s alone")
    print(f"  among 400 jobs of a tenant over its budget: {refused:.1f} s (ratio {refused / alone:.2f})")
    print(f"  among 400 jobs of a tenant without one: {admitted:.1f} s (ratio {admitted / alone:.2f})")


if __name__ == "__main__":
    main()
