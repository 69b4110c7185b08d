"""``genq demo --kind music``: Aimi Sync at its real limits (10 executions at a time, a status poll per
execution every 5 s at most): each job uploads its video in chunks, has it analysed, generates a plan
(some edit it) and runs two executions of it in parallel."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from simulators.aimi.config import AimiSimConfig
from simulators.demo import Demo

KEY = "sim-aimi-key"
MB = 1_000_000


def config() -> AimiSimConfig:
    return AimiSimConfig(api_key=KEY, execution_s=6.0, analysis_s=0.5)


def env(base_url: str) -> dict[str, str]:
    return {"GENQ_AIMI__BASE_URL": base_url, "GENQ_AIMI__API_KEY": KEY}


def requests(count: int, media_dir: Path) -> list[dict[str, Any]]:
    """One in five jobs uploads a 35 MB video (two chunks); the rest a 3 MB one. Every third edits the
    generated plan; every fourth asks for stems."""
    large, small = media_dir / "launch_35mb.mp4", media_dir / "teaser_3mb.mp4"
    for path, size in ((large, 35 * MB), (small, 3 * MB)):
        with path.open("wb") as out:
            for _ in range(size // MB):
                out.write(os.urandom(MB))
    made: list[dict[str, Any]] = []
    for i in range(count):
        request: dict[str, Any] = {
            "kind": "music",
            "video": str(large if i % 5 == 0 else small),
            "executions": 2,
            "output_file_name": f"music_{i:03d}",
        }
        if i % 3 == 0:
            request["plan_edit"] = {"patch": [{"op": "replace", "path": "/masterGain", "value": 60}]}
        if i % 4 == 0:
            request["plan_options"] = {"multitrack": True}
        made.append(request)
    return made


def summary(stats: dict[str, Any]) -> str:
    throttled = stats["throttled"]
    return (
        f"Aimi simulator: {stats['uploads']} uploads in {stats['chunks_received']} chunks "
        f"(at most {stats['max_parallel_chunks']} at once, {stats['chunks_resent']} resent), "
        f"{stats['executions_started']} executions, peak {stats['peak_running']} running; 429s: "
        f"{throttled['concurrency']} concurrency, {throttled['cooldown']} cooldown"
    )


DEMO = Demo(kind="music", config=config, env=env, requests=requests, summary=summary)
