"""``genq demo``: the main jobs on one machine, with nothing installed beyond the package: an embedded
Redis, every provider's simulator, workers, the webhook receiver and Flower; then sample jobs of each
kind asked for, with progress bars and a summary. A provider's kind has a bar per job; pipelines, a bar
per step, counting that step's runs ended across the pipelines."""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from genq.processes import (
    free_port,
    sigterm_as_interrupt,
    start_flower,
    start_webhooks,
    start_worker,
    stop,
    worker_env,
)
from genq.redis_server import redis_for_run
from producers import Producer
from producers.cli import render_pipeline, show, step_jobs
from schemas import KINDS, JobRecord, JobStatus, StageStatus
from schemas.inputs import ENV as INPUT_ROOTS_ENV
from schemas.pipeline import MEMBER_KINDS, OUTCOME_PREFIX, PipelineRequest
from schemas.redis_url import CA_FILE_ENV, redacted
from simulators.config import SimConfig
from simulators.demo import Demo
from simulators.registry import SIMULATORS
from simulators.server import SimulatorServer
from worker.context import budgets_from
from worker.limits import RedisLimiter
from worker.settings import Settings

# Every provider's demo, from the simulators' registry: its stand-in and sample jobs of its kind.
DEMOS: Mapping[str, Demo] = {spec.demo.kind: spec.demo for spec in SIMULATORS if spec.demo is not None}
STAGES = 3  # at least: create, wait, download (a music job has more, and as many as its branches)
JOBS = 20  # of each kind, unless --jobs says otherwise
LANGUAGES = ("fr", "de", "es")


def pipeline_requests(count: int, media_dir: Path) -> list[dict[str, Any]]:
    """README "Pipelines"'s example, its outputs named ``promo_<n>…``: an avatar video, lipsynced onto a
    dub in each of three languages (each its own audio and output name), with music scored to each dub.
    Every input is a URL or an earlier step's output."""
    made: list[dict[str, Any]] = []
    for i in range(count):
        name = f"promo_{i:03d}"
        avatar = {"kind": "avatar", "script": "Welcome to genq.", "model": "M000045058",
                  "clothes": "BG00002320", "output_file_name": name}  # fmt: skip
        dubs = [{"audio": f"https://media.example.com/dubs/{lang}.wav", "output_file_name": f"{name}_{lang}"}
                for lang in LANGUAGES]  # fmt: skip
        dub = {"kind": "lipsync", "model": "lipsync-2", "video": {"from": "avatar"}}
        score = {"kind": "music", "video": {"from": "dub"}, "output_file_name": f"{name}_score"}
        steps = {"avatar": {"request": avatar}, "dub": {"request": dub, "for_each": dubs},
                 "score": {"request": score}}  # fmt: skip
        made.append({"kind": "pipeline", "steps": steps})
    return made


@dataclass(frozen=True)
class Sample:
    """What the demo runs of one kind: its jobs, how many by default, and the stand-ins they need (a
    pipeline's: those of its steps' kinds)."""

    kind: str
    requests: Callable[[int, Path], list[dict[str, Any]]]
    stand_ins: tuple[Demo, ...]
    count: int = JOBS


SAMPLES: Mapping[str, Sample] = {
    **{kind: Sample(kind, demo.requests, (demo,)) for kind, demo in DEMOS.items()},
    "pipeline": Sample("pipeline", pipeline_requests, tuple(DEMOS[k] for k in MEMBER_KINDS), count=1),
}


def settings_from(env: Mapping[str, str]) -> Settings:
    """The worker settings ``env`` gives (as a worker started with it reads them)."""
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        return Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _progress_of(record: JobRecord) -> tuple[float, float]:
    """(stages done, stages known so far) of the job."""
    total = max(STAGES, len(record.stages))
    done = sum(1 for s in record.stages.values() if s.status is StageStatus.DONE)
    return float(total if record.status is JobStatus.SUCCEEDED else done), float(total)


def _describe(record: JobRecord) -> str:
    running = [f"{n} {s.status.value}" for n, s in record.stages.items() if s.status is not StageStatus.DONE]
    return f"{record.kind:8} {record.id[-8:]} {record.status.value:9} {running[-1] if running else ''}"


@contextlib.contextmanager
def _services(
    run_dir: Path, demos: Sequence[Demo], workers: int, concurrency: int
) -> Iterator[tuple[str, str, str, dict[str, str]]]:
    console = Console()
    config = SimConfig(
        **{s.name: s.demo.config() for s in SIMULATORS if s.demo is not None and s.demo in demos}
    )
    webhooks_port = free_port()
    with redis_for_run() as redis_url, SimulatorServer(config) as sim, contextlib.ExitStack() as stack:
        # The demo's local inputs are written under <run dir>/media: the one input root of its workers.
        extra = {"GENQ_WEBHOOKS__BASE_URL": f"http://127.0.0.1:{webhooks_port}",
                 INPUT_ROOTS_ENV: str(run_dir / "media")}  # fmt: skip
        for demo in demos:
            extra |= demo.env(sim.base_url)
        if os.environ.get(CA_FILE_ENV):  # a given rediss:// Redis: its CA, for every process
            extra[CA_FILE_ENV] = os.environ[CA_FILE_ENV]
        # The output store, if the shell names one (GENQ_OUTPUTS__URL=s3://…): else files under the run.
        extra |= {k: v for k, v in os.environ.items() if k.upper().startswith("GENQ_OUTPUTS__")}
        env = worker_env(redis_url, artifact_dir=run_dir / "artifacts", extra=extra)
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
            f"redis      {redacted(redis_url)}\nsimulator  {sim.base_url}  (stats: {sim.base_url}/_sim/stats)"
        )
        console.print(f"webhooks   http://127.0.0.1:{webhooks_port}")
        console.print(f"flower     {flower_url}\nlogs       {run_dir}")
        yield redis_url, flower_url, sim.base_url, env


def run_demo(
    *, kinds: Sequence[str], jobs: int | None, workers: int, concurrency: int, timeout_s: float, keep: bool
) -> int:
    """Run ``jobs`` jobs of each kind (default: each kind's ``Sample.count``) on a stack of their own."""
    console = Console()
    samples = [SAMPLES[kind] for kind in kinds]
    demos = [demo for demo in DEMOS.values() if any(demo in sample.stand_ins for sample in samples)]
    run_dir = Path("artifacts") / time.strftime("demo-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True)
    run_dir = run_dir.resolve()
    # SIGTERM unwinds like Ctrl-C, so the workers, Flower, the receiver and Redis are stopped.
    with (
        sigterm_as_interrupt(),
        _services(run_dir, demos, workers, concurrency) as (redis_url, flower_url, sim_url, env),
    ):
        producer = Producer(redis_url)
        media = run_dir / "media"
        media.mkdir()
        os.environ[INPUT_ROOTS_ENV] = str(media)  # this process submits them: the same root
        ids: list[str] = []
        for sample in samples:
            count = sample.count if jobs is None else jobs
            ids += producer.submit_many(sample.requests(count, media))
            console.print(f"submitted {count} {sample.kind} job{'s' if count != 1 else ''}")
        records = _follow(producer, ids, settings_from(env), timeout_s, {d.kind for d in demos})
        console.print(_summary(records, run_dir / "artifacts"))
        pipelines = [r for r in records if isinstance(r.request, PipelineRequest)]
        if pipelines:  # the first, as `genq status` shows it
            show(console, render_pipeline(pipelines[0], step_jobs(producer, pipelines[0])))
        for line in _simulator_lines(sim_url, demos):
            console.print(line)
        ok = all(r.status is JobStatus.SUCCEEDED for r in records)
        console.print(f"{sum(r.status is JobStatus.SUCCEEDED for r in records)}/{len(records)} succeeded")
        if keep:
            console.print(f"still running; Flower at {flower_url}. Ctrl-C to stop.")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(1)
    return 0 if ok else 1


def _budget_line(limiter: RedisLimiter, settings: Settings, kinds: set[str]) -> str:
    budgets = budgets_from(settings, configured_only=True)
    parts = []
    for kind in sorted(kinds):
        for pool in budgets.pools_of(KINDS[kind].provider):
            state = limiter.state(pool)
            parts.append(f"{pool.name} {state.in_use:.0f}/{state.limit}, {state.waiting} parked")
    return "all jobs · " + " · ".join(parts)


def _follow(
    producer: Producer, ids: list[str], settings: Settings, timeout_s: float, budget_kinds: set[str]
) -> list[JobRecord]:
    deadline = time.monotonic() + timeout_s
    limiter = RedisLimiter(producer.redis)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns) as progress:
        overall = progress.add_task("all jobs", total=len(ids))
        records = _records(producer, ids)
        bars = {
            r.id: progress.add_task(r.id[-8:], total=STAGES)
            for r in records
            if not isinstance(r.request, PipelineRequest)
        }
        steps: dict[str, TaskID] = {}
        while True:
            for record in records:
                if record.id in bars:
                    done, total = _progress_of(record)
                    progress.update(
                        bars[record.id], completed=done, total=total, description=_describe(record)
                    )
            for step, (ended, failed, total) in step_runs(records).items():
                if step not in steps:
                    steps[step] = progress.add_task(step, total=total)
                said = f"pipeline {step}" + (f", {failed} did not succeed" if failed else "")
                progress.update(steps[step], completed=ended, total=total, description=said)
            progress.update(
                overall,
                completed=sum(r.is_terminal for r in records),
                description=_budget_line(limiter, settings, budget_kinds),
            )
            if all(r.is_terminal for r in records) or time.monotonic() > deadline:
                return records
            time.sleep(0.3)
            records = _records(producer, ids)


def _records(producer: Producer, ids: list[str]) -> list[JobRecord]:
    """The jobs' records, in one round trip (a submitted job's record is kept 7 days after it ends)."""
    return [r for r in producer.get_many(ids, presign=False) if r is not None]


def step_runs(records: list[JobRecord]) -> dict[str, tuple[int, int, int]]:
    """For each step of the pipelines among ``records``, in graph order: how many of its runs ended, how
    many of those did not succeed, and how many it has, across the pipelines."""
    counts: dict[str, tuple[int, int, int]] = {}
    for record in records:
        if not isinstance(record.request, PipelineRequest):
            continue
        shape = record.request.shape()
        for step in shape.order:
            outcomes = [record.data.get(OUTCOME_PREFIX + node) for node in shape.nodes(step)]
            ended = [o for o in outcomes if o is not None]
            failed = sum(1 for o in ended if o.get("status") != JobStatus.SUCCEEDED.value)
            was = counts.get(step, (0, 0, 0))
            counts[step] = (was[0] + len(ended), was[1] + failed, was[2] + len(outcomes))
    return counts


def _summary(records: list[JobRecord], artifact_dir: Path) -> Table:
    in_s3 = any((o.store_url or "").startswith("s3://") for r in records for o in r.outputs)
    where = "in the S3 store (genq get <job> fetches them)" if in_s3 else f"under {artifact_dir}"
    table = Table(title=f"genq demo: outputs {where}", title_justify="left")
    table.add_column("job", no_wrap=True)
    table.add_column("kind")
    table.add_column("status")
    table.add_column("duration", justify="right")
    table.add_column("output", overflow="fold")
    for r in records:
        end = r.finished_at or r.updated_at
        duration = f"{(end - r.created_at).total_seconds():.1f} s"
        if r.outputs and in_s3:
            detail = r.outputs[0].store_url or r.outputs[0].path
        elif r.outputs:
            detail = str(Path(r.outputs[0].path).relative_to(artifact_dir))
        else:
            detail = r.error.message if r.error else ""
        table.add_row(r.id, r.kind, r.status.value, duration, detail)
    return table


def _simulator_lines(sim_url: str, demos: Sequence[Demo]) -> list[str]:
    with urllib.request.urlopen(f"{sim_url}/_sim/stats", timeout=5) as response:
        stats: dict[str, Any] = json.load(response)
    return [demo.summary(stats[KINDS[demo.kind].provider]) for demo in demos]
