"""``genq demo --kind lipsync``: sync.so jobs at the scale plan's real limits (15 generations in flight,
60 creates a minute, 600 other calls a minute), with signed webhooks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from simulators.demo import Demo
from simulators.syncso.config import SyncSoSimConfig

KEY = "sim-syncso-key"
WEBHOOK_SECRET = "whsec_demo_0123456789abcdef"
PLAN = "scale"
MODELS = ("lipsync-2", "lipsync-2-pro", "lipsync-1.9.0-beta")


def config() -> SyncSoSimConfig:
    return SyncSoSimConfig(
        api_key=KEY, pending_s=1.0, processing_s=4.0, plan=PLAN, webhook_secret=WEBHOOK_SECRET
    )


def env(base_url: str) -> dict[str, str]:
    return {
        "GENQ_SYNCSO__BASE_URL": base_url,
        "GENQ_SYNCSO__API_KEY": KEY,
        "GENQ_SYNCSO__PLAN": PLAN,
        # sync.so signs a webhook when a generation ends; the sweep checks every 5 s besides.
        "GENQ_SYNCSO__CHECK_INTERVAL_S": "5",
        "GENQ_SYNCSO__WEBHOOK_SECRET": WEBHOOK_SECRET,
    }


def requests(count: int, media_dir: Path) -> list[dict[str, Any]]:
    """A mix of what backends send: URL inputs, local files to upload, and text-to-speech."""
    video, audio = media_dir / "speaker.mp4", media_dir / "voice.wav"
    video.write_bytes(os.urandom(512 * 1024))
    audio.write_bytes(os.urandom(128 * 1024))
    made: list[dict[str, Any]] = []
    for i in range(count):
        request: dict[str, Any] = {
            "kind": "lipsync",
            "model": MODELS[i % len(MODELS)],
            "output_file_name": f"lipsync_{i:03d}",
            "options": {"sync_mode": "loop"},
        }
        match i % 3:
            case 0:
                request |= {"video": f"https://media.example.com/in/{i}.mp4",
                            "audio": f"https://media.example.com/in/{i}.wav"}  # fmt: skip
            case 1:
                request |= {"video": str(video), "audio": str(audio)}
            case _:
                tts = {"voice_id": "demo-voice", "script": f"Hello from genq job {i}."}
                request |= {"video": f"https://media.example.com/in/{i}.mp4", "tts": tts}
        made.append(request)
    return made


def summary(stats: dict[str, Any]) -> str:
    throttled, hooks = stats["throttled"], stats["webhooks"]
    return (
        f"sync.so simulator: {stats['generations_created']} generations, "
        f"peak {stats['peak_in_flight']} in flight, 429s: {throttled['rate_limit_exceeded']} rate, "
        f"{throttled['concurrency_limit_reached']} concurrency; {stats['requests']['list']} status "
        f"sweeps; webhooks: {hooks['delivered']} delivered, {hooks['refused']} refused"
    )


DEMO = Demo(kind="lipsync", config=config, env=env, requests=requests, summary=summary)
