"""A big output streams through a worker into the S3 store without the worker holding it: the RSS of the
worker's processes is sampled while a 2 GiB lipsync output goes from the sync.so simulator through one
worker (prefork, one pool process) into a real S3 server (SeaweedFS), and the growth over the pool
process's RSS after a warm-up job (a small output through the same store, so boto3 is loaded) is printed.
Nothing is asserted here: the figure goes in the README (``GENQ_OUTPUTS__PART_BYTES`` is 8 MiB: a worker
holds about one part of each output it streams, plus the download's 1 MiB chunks).

    python bench/outputs.py [--gib 2] [--part-mib 8]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import httpx

from genq.processes import start_worker, stop, wait_ready, worker_env
from genq.redis_server import EmbeddedRedis
from genq.s3_server import s3_server
from producers import Producer
from schemas import JobStatus
from simulators.config import SimConfig
from simulators.server import SimulatorServer
from simulators.syncso.config import SyncSoSimConfig

SIM_KEY = "bench-outputs-key"
LIPSYNC = {"kind": "lipsync", "model": "lipsync-2", "video": "https://x.test/v.mp4",
           "audio": "https://x.test/a.wav"}  # fmt: skip
MIB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def group_pids(pgid: int) -> list[int]:
    """The processes of a process group (the worker and its pool)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid:
                    found.append(int(entry))
            except OSError:
                continue
    return found


class Sampler:
    """Samples the RSS of every process of a group every 50 ms; keeps each one's peak."""

    def __init__(self, pgid: int) -> None:
        self.pgid = pgid
        self.peak: dict[int, int] = {}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stopped.is_set():
            for pid in group_pids(self.pgid):
                self.peak[pid] = max(self.peak.get(pid, 0), rss_bytes(pid))
            self.stopped.wait(0.05)

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=2.0, help="size of the output (GiB)")
    parser.add_argument("--part-mib", type=int, default=8, help="GENQ_OUTPUTS__PART_BYTES in MiB")
    args = parser.parse_args()
    size = int(args.gib * 1024 * MIB)
    tmp = Path(tempfile.mkdtemp(prefix="genq-bench-outputs-"))
    syncso = SyncSoSimConfig(api_key=SIM_KEY, pending_s=0.1, processing_s=0.2, duration_jitter=0.0,
                             output_bytes=MIB)  # fmt: skip
    sim = SimulatorServer(SimConfig(syncso=syncso))
    with EmbeddedRedis() as redis_server, s3_server(directory=tmp / "s3") as s3:
        sim.start()
        env = worker_env(redis_server.url, artifact_dir=tmp / "artifacts", extra={
            "GENQ_SYNCSO__API_KEY": SIM_KEY, "GENQ_SYNCSO__BASE_URL": sim.base_url,
            "GENQ_SYNCSO__CHECK_INTERVAL_S": "0.2", **s3.env("bench"),
            "GENQ_OUTPUTS__PART_BYTES": str(args.part_mib * MIB),
        })  # fmt: skip
        log = tmp / "worker.log"
        worker = start_worker(env, name="bench", queues=["syncso"], concurrency=1, log_path=log)
        try:
            wait_ready([worker], [log])
            producer = Producer(redis_server.url)
            warm = producer.wait(producer.submit(LIPSYNC), timeout_s=60)
            assert warm.status is JobStatus.SUCCEEDED, warm.error
            baseline = {pid: rss_bytes(pid) for pid in group_pids(worker.pid)}
            post = httpx.post(f"{sim.base_url}/_sim/config", json={"syncso": {"output_bytes": size}})
            post.raise_for_status()
            started = time.monotonic()
            with Sampler(worker.pid) as sampler:
                record = producer.wait(producer.submit(LIPSYNC), timeout_s=1800)
            took_s = time.monotonic() - started
            assert record.status is JobStatus.SUCCEEDED, record.error
            (output,) = record.outputs
        finally:
            stop(worker)
            sim.stop()
    print(
        f"output: {output.bytes / MIB:,.0f} MiB to {output.store_url} in {took_s:.1f} s "
        f"({output.bytes / MIB / took_s:,.0f} MiB/s), part size {args.part_mib} MiB"
    )
    for pid, before in sorted(baseline.items()):
        peak = sampler.peak.get(pid, before)
        role = "main" if pid == worker.pid else "pool"
        print(f"worker {role} process {pid}: RSS {before / MIB:,.1f} MiB after warm-up, peak "
              f"{peak / MIB:,.1f} MiB while streaming: growth {(peak - before) / MIB:,.1f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
