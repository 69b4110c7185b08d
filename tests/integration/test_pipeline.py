"""Pipelines end to end: an avatar, lipsynced onto three dubbed tracks, music scored to each; real Celery
workers and the three simulators, each step a job of its own."""

from __future__ import annotations

from typing import Any

import pytest

from producers import Producer
from schemas import JobStatus
from tests.conftest import AVATAR, Sim

pytestmark = pytest.mark.integration

LANGUAGES = ("fr", "de", "es")


def demo_pipeline(**changes: Any) -> dict[str, Any]:
    return {
        "kind": "pipeline",
        "steps": {
            "avatar": {"request": AVATAR},
            "dub": {
                "request": {"kind": "lipsync", "model": "lipsync-2", "video": {"from": "avatar"}},
                "for_each": [
                    {"audio": f"https://x.test/{lang}.wav", "output_file_name": f"promo_{lang}"}
                    for lang in LANGUAGES
                ],
            },
            "score": {"request": {"kind": "music", "video": {"from": "dub"}}},
        },
        **changes,
    }


def test_the_demo_pipeline_runs_each_step_as_a_job_on_the_previous_output(
    producer: Producer, sim: Sim
) -> None:
    pipeline_id = producer.submit(demo_pipeline())
    record = producer.wait(pipeline_id, timeout_s=90)
    assert record.status is JobStatus.SUCCEEDED, record.error
    assert sorted(record.provider_ids) == [
        "avatar",
        "dub[0]",
        "dub[1]",
        "dub[2]",
        "score[0]",
        "score[1]",
        "score[2]",
    ]
    jobs = {key: producer.get(job_id) for key, job_id in record.provider_ids.items()}
    assert all(job.status is JobStatus.SUCCEEDED for job in jobs.values())
    assert len(record.outputs) == 3
    for b in range(3):
        assert jobs[f"dub[{b}]"].request.video == jobs["avatar"].outputs[0].path
        assert jobs[f"score[{b}]"].request.video == jobs[f"dub[{b}]"].outputs[0].path
