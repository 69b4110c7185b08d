"""Pipelines at volume: N pipelines (default 200) of the demo's shape (1 avatar, 3 lipsyncs on it, music
on each: 7 step jobs) submitted at once, against a baseline of the same 7N provider jobs submitted alone.

Both runs use the same embedded Redis, the three simulators on loopback and two subprocess workers. Each
simulator enforces rate and concurrency limits equal to the budgets genq's workers are given (sync.so 600
creates and 600 other calls a minute, plan concurrency 15; AI Studios 8 renders; Aimi 10 executions, a
5 s status cooldown per execution), so any request past a budget would be answered 429.

Printed per run: wall time, provider jobs created (AI Studios projects, sync.so generations, Aimi
executions), 429s per provider, and status requests per provider (sync.so ``list``+``get``, AI Studios
``progress``+``project``, Aimi ``status``) in all and per provider job. The pipeline layer itself makes no
provider request: its runs read and write Redis only, so its status requests per job should match the
baseline's (the ratio is printed). Figures are printed, never asserted.

    python -m bench.pipelines [--pipelines 200] [--workers 2] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from genq.processes import start_worker, stop_all, wait_ready, worker_env
from genq.redis_server import EmbeddedRedis
from producers import Producer
from schemas import JobRecord
from simulators.aimi.config import AimiSimConfig
from simulators.aistudios.config import AIStudiosSimConfig
from simulators.config import SimConfig
from simulators.server import SimulatorServer
from simulators.syncso.config import SyncSoSimConfig

SYNC_KEY, AIMI_KEY, APP, USER_KEY = "bench-sync-key", "bench-aimi-key", "bench-app", "bench-user-key"
LANGUAGES = ("fr", "de", "es")
STATUS_ROUTES = {"syncso": ("list", "get"), "aistudios": ("progress", "project"), "aimi": ("status",)}
CREATE_ROUTES = {"syncso": "create", "aistudios": "export", "aimi": "execute"}


def sim_config() -> SimConfig:
    return SimConfig(
        syncso=SyncSoSimConfig(
            api_key=SYNC_KEY,
            plan="scale",
            pending_s=0.5,
            processing_s=1.5,
            create_rate_limit=600,
            other_rate_limit=600,
            rate_window_s=60,
        ),
        aistudios=AIStudiosSimConfig(app_id=APP, user_key=USER_KEY, render_s=2.0, max_renders=8),
        aimi=AimiSimConfig(api_key=AIMI_KEY, execution_s=1.0, analysis_s=0.05, max_executions=10),
    )


def env(redis_url: str, base_url: str, workdir: Path) -> dict[str, str]:
    extra = {
        "GENQ_SYNCSO__BASE_URL": base_url, "GENQ_SYNCSO__API_KEY": SYNC_KEY, "GENQ_SYNCSO__PLAN": "scale",
        "GENQ_SYNCSO__CREATE_RATE__LIMIT": "600", "GENQ_SYNCSO__CREATE_RATE__PERIOD_S": "60",
        "GENQ_SYNCSO__OTHER_RATE__LIMIT": "600", "GENQ_SYNCSO__OTHER_RATE__PERIOD_S": "60",
        "GENQ_SYNCSO__CHECK_INTERVAL_S": "2",
        "GENQ_AISTUDIOS__BASE_URL": base_url, "GENQ_AISTUDIOS__APP_ID": APP,
        "GENQ_AISTUDIOS__USER_KEY": USER_KEY, "GENQ_AISTUDIOS__CONCURRENCY": "8",
        "GENQ_AISTUDIOS__CHECK_INTERVAL_S": "2",
        "GENQ_AIMI__BASE_URL": base_url, "GENQ_AIMI__API_KEY": AIMI_KEY, "GENQ_AIMI__CHECK_INTERVAL_S": "2",
        "GENQ_INPUT_ROOTS": str(workdir / "media"),
    }  # fmt: skip
    return worker_env(redis_url, artifact_dir=workdir / "artifacts", extra=extra)


def pipeline(n: int) -> dict[str, Any]:
    items = [{"audio": f"https://media.example.com/{n}/{lang}.wav", "output_file_name": f"p{n}_{lang}"}
             for lang in LANGUAGES]  # fmt: skip
    avatar = {"kind": "avatar", "script": f"Hello from pipeline {n}.", "model": "M000045058",
              "clothes": "BG00002320"}  # fmt: skip
    return {
        "kind": "pipeline",
        "steps": {
            "avatar": {"request": avatar},
            "dub": {
                "request": {"kind": "lipsync", "model": "lipsync-2", "video": {"from": "avatar"}},
                "for_each": items,
            },
            "score": {"request": {"kind": "music", "video": {"from": "dub"}}},
        },
    }


def alone(n: int, video: Path) -> list[dict[str, Any]]:
    """The same provider jobs as pipeline ``n``, each submitted on its own with a local video."""
    shaped = pipeline(n)["steps"]
    made = [shaped["avatar"]["request"]]
    for item in shaped["dub"]["for_each"]:
        made.append({"kind": "lipsync", "model": "lipsync-2", "video": str(video), **item})
        made.append({"kind": "music", "video": str(video)})
    return made


def wait_all(producer: Producer, ids: Sequence[str], timeout_s: float) -> list[JobRecord]:
    deadline, ended = time.monotonic() + timeout_s, dict[str, JobRecord]()
    while len(ended) < len(ids) and time.monotonic() < deadline:
        for job_id in ids:
            if job_id not in ended and (record := producer.get(job_id, presign=False)).is_terminal:
                ended[job_id] = record
        time.sleep(0.5)
    return [ended.get(job_id) or producer.get(job_id, presign=False) for job_id in ids]


def figures(stats: dict[str, Any]) -> dict[str, dict[str, int]]:
    found = {}
    for provider, section in stats.items():
        if provider not in STATUS_ROUTES:
            continue
        requests, responses = section["requests"], section["responses"]
        found[provider] = {
            "created": requests.get(CREATE_ROUTES[provider], 0),
            "status": sum(requests.get(route, 0) for route in STATUS_ROUTES[provider]),
            "429": sum(count for status, count in responses.items() if str(status).startswith("429")),
        }
    return found


def run(label: str, producer: Producer, http: httpx.Client, requests: list[dict[str, Any]],
        timeout_s: float) -> tuple[float, list[JobRecord], dict[str, dict[str, int]]]:  # fmt: skip
    http.post("/_sim/reset").raise_for_status()
    started = time.monotonic()
    ids = producer.submit_many(requests)
    records = wait_all(producer, ids, timeout_s)
    took = time.monotonic() - started
    counts = figures(http.get("/_sim/stats").raise_for_status().json())
    ok = sum(r.status.value == "succeeded" for r in records)
    print(f"{label}: {len(ids)} submitted, {ok} succeeded, {took:.1f} s")
    return took, records, counts


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pipelines", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--timeout-s", type=float, default=900)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="genq-bench-pipelines-"))
    (workdir / "media").mkdir()
    video = workdir / "media" / "speaker.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(256 * 1024))
    with EmbeddedRedis() as redis_server, SimulatorServer(sim_config()) as sim:
        worker_environ = env(redis_server.url, sim.base_url, workdir)
        logs = [workdir / f"worker{n}.log" for n in range(args.workers)]
        procs = [start_worker(worker_environ, name=f"bench{n}", concurrency=args.concurrency, log_path=log)
                 for n, log in enumerate(logs)]  # fmt: skip
        try:
            wait_ready(procs, logs)
            producer = Producer(redis_server.url)
            os.environ["GENQ_INPUT_ROOTS"] = str(workdir / "media")  # the producer checks local inputs
            with httpx.Client(base_url=sim.base_url, timeout=30) as http:
                n = args.pipelines
                piped = run("pipelines", producer, http, [pipeline(i) for i in range(n)], args.timeout_s)
                steps = sum(len(r.provider_ids) for r in piped[1])
                baseline = run("alone", producer, http, [r for i in range(n) for r in alone(i, video)],
                               args.timeout_s)  # fmt: skip
        finally:
            stop_all(procs)
    print(f"\n{n} pipelines ({steps} step jobs) against {7 * n} jobs alone, same workers and simulators:\n")
    print(f"{'provider':10} {'run':10} {'created':>8} {'429s':>6} {'status':>7} {'status/job':>10}")
    for provider in STATUS_ROUTES:
        per_job = []
        for label, (_, _, counts) in (("pipelines", piped), ("alone", baseline)):
            c = counts[provider]
            per_job.append(c["status"] / max(c["created"], 1))
            row = f"{c['created']:>8} {c['429']:>6} {c['status']:>7} {per_job[-1]:>10.2f}"
            print(f"{provider:10} {label:10} {row}")
        print(f"{'':10} {'ratio':10} {'':>8} {'':>6} {'':>7} {per_job[0] / max(per_job[1], 1e-9):>10.2f}")
    print(f"\nwall: pipelines {piped[0]:.1f} s (the steps run in order), alone {baseline[0]:.1f} s")


if __name__ == "__main__":
    main()
