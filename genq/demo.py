"""``genq demo``: the main job on one machine, with nothing installed beyond the package."""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from genq.processes import free_port, start_flower, start_webhooks, start_worker, stop, worker_env
from genq.redis_server import redis_for_run
from producers import Producer
from schemas import JobRecord, JobStatus, StageStatus
from simulators.config import SimConfig, SyncSoSimConfig
from simulators.server import SimulatorServer
from worker.limits import Pool, RateBudget, RedisLimiter, budgets_from
from worker.settings import Settings, SyncSoSettings

STAGES = ("create", "wait", "download")
SIM_KEY = "sim-syncso-key"
WEBHOOK_SECRET = "whsec_demo_0123456789abcdef"
# The simulator enforces sync.so's real limits for this plan (15 generations in flight, 60 creates a
# minute, 600 other calls a minute) and the workers spend exactly those budgets.
PLAN = "scale"
MODELS = ("lipsync-2", "lipsync-2-pro", "lipsync-1.9.0-beta")


def sample_requests(count: int, media_dir: Path) -> list[dict[str, Any]]:
    """A mix of what backends send: URL inputs, local files to upload, and text-to-speech."""
    video, audio = media_dir / "speaker.mp4", media_dir / "voice.wav"
    video.write_bytes(os.urandom(512 * 1024))
    audio.write_bytes(os.urandom(128 * 1024))
    requests: list[dict[str, Any]] = []
    for i in range(count):
        request: dict[str, Any] = {
            "kind": "lipsync",
            "model": MODELS[i % len(MODELS)],
            "output_file_name": f"demo_{i:03d}",
            "options": {"sync_mode": "loop"},
        }
        match i % 3:
            case 0:
                request |= {
                    "video": f"https://media.example.com/in/{i}.mp4",
                    "audio": f"https://media.example.com/in/{i}.wav",
                }
            case 1:
                request |= {"video": str(video), "audio": str(audio)}
            case _:
                request |= {
                    "video": f"https://media.example.com/in/{i}.mp4",
                    "tts": {"voice_id": "demo-voice", "script": f"Hello from genq job {i}."},
                }
        requests.append(request)
    return requests


def _progress_of(record: JobRecord) -> float:
    done = sum(1 for s in STAGES if record.stages.get(s) and record.stages[s].status is StageStatus.DONE)
    return float(len(STAGES) if record.status is JobStatus.SUCCEEDED else done)


def _describe(record: JobRecord) -> str:
    running = [f"{n} {s.status.value}" for n, s in record.stages.items() if s.status is not StageStatus.DONE]
    return f"{record.id[-8:]} {record.status.value:9} {running[-1] if running else ''}"


@contextlib.contextmanager
def _services(run_dir: Path, workers: int, concurrency: int) -> Iterator[tuple[str, str, str]]:
    console = Console()
    syncso = SyncSoSimConfig(
        api_key=SIM_KEY, pending_s=1.0, processing_s=4.0, plan=PLAN, webhook_secret=WEBHOOK_SECRET
    )
    config = SimConfig(syncso=syncso)
    webhooks_port = free_port()
    with redis_for_run() as redis_url, SimulatorServer(config) as sim, contextlib.ExitStack() as stack:
        env = worker_env(
            redis_url,
            syncso_url=sim.base_url,
            syncso_key=SIM_KEY,
            artifact_dir=run_dir / "artifacts",
            extra={
                # sync.so signs a webhook when a generation ends; the sweep checks every 5 s besides.
                "GENQ_SYNCSO__CHECK_INTERVAL_S": "5",
                "GENQ_SYNCSO__WEBHOOK_SECRET": WEBHOOK_SECRET,
                "GENQ_WEBHOOKS__BASE_URL": f"http://127.0.0.1:{webhooks_port}",
                "GENQ_SYNCSO__PLAN": PLAN,
            },
        )
        receiver = start_webhooks(env, port=webhooks_port, log_path=run_dir / "webhooks.log")
        stack.callback(stop, receiver)
        for n in range(workers):
            proc = start_worker(
                env, name=f"demo{n}", concurrency=concurrency, log_path=run_dir / f"worker{n}.log"
            )
            stack.callback(stop, proc)
        flower_port = free_port()
        flower = start_flower(env, port=flower_port, log_path=run_dir / "flower.log")
        stack.callback(stop, flower)
        flower_url = f"http://127.0.0.1:{flower_port}"
        console.print(
            f"redis      {redis_url}\nsimulator  {sim.base_url}  (stats: {sim.base_url}/_sim/stats)"
        )
        console.print(f"webhooks   http://127.0.0.1:{webhooks_port}/syncso")
        console.print(f"flower     {flower_url}\nlogs       {run_dir}")
        yield redis_url, flower_url, sim.base_url


def run_demo(*, jobs: int, workers: int, concurrency: int, timeout_s: float, keep: bool) -> int:
    console = Console()
    run_dir = Path("artifacts") / time.strftime("demo-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True)
    run_dir = run_dir.resolve()
    with _services(run_dir, workers, concurrency) as (redis_url, flower_url, sim_url):
        producer = Producer(redis_url)
        media = run_dir / "media"
        media.mkdir()
        ids = producer.submit_many(sample_requests(jobs, media))
        console.print(f"submitted {len(ids)} lipsync jobs")
        records = _follow(producer, ids, timeout_s)
        console.print(_summary(records, run_dir / "artifacts"))
        console.print(_simulator_line(sim_url))
        ok = all(r.status is JobStatus.SUCCEEDED for r in records)
        console.print(f"{sum(r.status is JobStatus.SUCCEEDED for r in records)}/{len(records)} succeeded")
        if keep:
            console.print(f"still running; Flower at {flower_url}. Ctrl-C to stop.")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(1)
    return 0 if ok else 1


def _budget_line(limiter: RedisLimiter, pool: Pool, rate: RateBudget) -> str:
    slots, creates = limiter.state(pool), limiter.state(rate)
    return (f"all jobs · sync.so slots {slots.in_use}/{slots.limit}, {slots.waiting} parked · "
            f"creates {creates.in_use:.0f}/{creates.limit} a minute")  # fmt: skip


def _follow(producer: Producer, ids: list[str], timeout_s: float) -> list[JobRecord]:
    deadline = time.monotonic() + timeout_s
    budgets = budgets_from(Settings(syncso=SyncSoSettings(plan=PLAN)))
    limiter = RedisLimiter(producer.redis)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns) as progress:
        overall = progress.add_task("all jobs", total=len(ids))
        bars = {job_id: progress.add_task(job_id[-8:], total=len(STAGES)) for job_id in ids}
        while True:
            records = [producer.get(job_id) for job_id in ids]
            for record in records:
                progress.update(
                    bars[record.id], completed=_progress_of(record), description=_describe(record)
                )
            progress.update(
                overall,
                completed=sum(r.is_terminal for r in records),
                description=_budget_line(limiter, budgets.syncso_generations, budgets.syncso_create),
            )
            if all(r.is_terminal for r in records) or time.monotonic() > deadline:
                return records
            time.sleep(0.3)


def _summary(records: list[JobRecord], artifact_dir: Path) -> Table:
    table = Table(title=f"genq demo: outputs under {artifact_dir}", title_justify="left")
    table.add_column("job", no_wrap=True)
    table.add_column("status")
    table.add_column("duration", justify="right")
    table.add_column("output", overflow="fold")
    for r in records:
        end = r.finished_at or r.updated_at
        duration = f"{(end - r.created_at).total_seconds():.1f} s"
        if r.outputs:
            detail = str(Path(r.outputs[0].path).relative_to(artifact_dir))
        else:
            detail = r.error.message if r.error else ""
        table.add_row(r.id, r.status.value, duration, detail)
    return table


def _simulator_line(sim_url: str) -> str:
    with urllib.request.urlopen(f"{sim_url}/_sim/stats", timeout=5) as response:
        stats = json.load(response)["syncso"]
    throttled, hooks = stats["throttled"], stats["webhooks"]
    return (
        f"sync.so simulator: {stats['generations_created']} generations, "
        f"peak {stats['peak_in_flight']} in flight, 429s: {throttled['rate_limit_exceeded']} rate, "
        f"{throttled['concurrency_limit_reached']} concurrency; {stats['requests']['list']} status "
        f"sweeps; webhooks: {hooks['delivered']} delivered, {hooks['refused']} refused"
    )
