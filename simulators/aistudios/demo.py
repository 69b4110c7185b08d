"""``genq demo --kind avatar``: AI Studios renders, half from the simple form and half from a full
project of two scenes, ending by progress checks and webhooks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simulators.aistudios.config import AIStudiosSimConfig
from simulators.demo import Demo

APP_ID, USER_KEY = "sim-aistudios-app", "sim-aistudios-key"
WEBHOOK_SECRET = "genq-demo-aistudios-webhooks"
AVATAR, CLOTHES = "M000045058", "BG00002320"  # the seed's avatar and outfit


def config() -> AIStudiosSimConfig:
    return AIStudiosSimConfig(app_id=APP_ID, user_key=USER_KEY, render_s=6.0)


def env(base_url: str) -> dict[str, str]:
    return {
        "GENQ_AISTUDIOS__BASE_URL": base_url,
        "GENQ_AISTUDIOS__APP_ID": APP_ID,
        "GENQ_AISTUDIOS__USER_KEY": USER_KEY,
        "GENQ_AISTUDIOS__CHECK_INTERVAL_S": "3",
        "GENQ_AISTUDIOS__WEBHOOK_SECRET": WEBHOOK_SECRET,
    }


def _scene(index: int, text: str) -> dict[str, Any]:
    return {
        "sceneIdx": index,
        "background": {"id": "background", "type": "background", "source_type": "image",
                       "source_url": "/images/background/bg_blue_gradient.png"},
        "scripts": [{"org": text, "isTTS": False, "tts": None, "modelId": AVATAR, "clothId": CLOTHES}],
        "clips": [
            {"id": "aiModel-1", "type": "aiModel", "layer": 1, "top": 144.6, "left": 630.2, "width": 679,
             "height": 2229, "model": {"ai_name": AVATAR, "emotion": CLOTHES, "language": "en"}},
            {"id": "caption", "type": "textImage", "layer": 2, "text": f"Part {index + 1}", "fontSize": 48},
        ],
    }  # fmt: skip


def requests(count: int, media_dir: Path) -> list[dict[str, Any]]:
    made: list[dict[str, Any]] = []
    for i in range(count):
        common = {"kind": "avatar", "output_file_name": f"avatar_{i:03d}", "resolution": "720"}
        if i % 2 == 0:
            script = f"Hello, I am avatar job {i}, rendered through genq."
            simple = {"script": script, "model": AVATAR, "clothes": CLOTHES, "background_color": "#1e3a8a"}
            made.append(common | simple)
        else:
            scenes = [_scene(0, f"Job {i}, first scene."), _scene(1, "And the second scene.")]
            made.append(common | {"project": {"name": f"genq demo {i}", "scenes": scenes}})
    return made


def summary(stats: dict[str, Any]) -> str:
    hooks = stats["webhooks"]
    return (
        f"AI Studios simulator: {stats['projects_created']} projects, {stats['exports']} exports, "
        f"peak {stats['peak_in_flight']} rendering, {stats['tokens_issued']} token(s) issued, "
        f"{stats['requests'].get('progress', 0)} progress checks; webhooks: {hooks['delivered']} delivered"
    )


DEMO = Demo(kind="avatar", config=config, env=env, requests=requests, summary=summary)
