"""Pipelines end to end: an avatar, lipsynced onto three dubbed tracks, music scored to each; real Celery
workers and the three simulators, each step a job of its own."""

from __future__ import annotations

from typing import Any

import pytest

from producers import Producer
from schemas import JobStatus, StageStatus
from tests.conftest import AVATAR, Sim, until

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


def test_a_failed_first_step_skips_everything_after_it_and_the_pipeline_names_it(
    producer: Producer, sim: Sim
) -> None:
    sim.configure("aistudios", fail_share=1.0)
    pipeline_id = producer.submit(demo_pipeline(on_failure="continue"))
    record = producer.wait(pipeline_id, timeout_s=60)
    assert record.status is JobStatus.FAILED
    assert record.error is not None and record.error.code == "genq_pipeline_failed"
    assert record.error.message.startswith("avatar failed (aistudios ")
    assert record.error.message.endswith(
        "dub[0] skipped; dub[1] skipped; dub[2] skipped; score[0] skipped; score[1] skipped; "
        "score[2] skipped; 0 of 3 final runs succeeded, the join needs all"
    )
    assert list(record.provider_ids) == ["avatar"]  # no job was made for a skipped run
    assert sim.stats("syncso")["generations_created"] == 0


def test_fail_fast_fails_the_pipeline_at_the_first_failure_and_makes_nothing_after_it(
    producer: Producer, sim: Sim
) -> None:
    sim.configure("aistudios", fail_share=1.0)
    pipeline_id = producer.submit(demo_pipeline())
    record = producer.wait(pipeline_id, timeout_s=60)
    assert record.status is JobStatus.FAILED
    assert record.error is not None and record.error.stage == "avatar"
    assert "end" not in record.stages  # ended where it failed, not at its end
    assert list(record.provider_ids) == ["avatar"]


def test_cancelling_a_pipeline_cancels_its_running_step_job_and_makes_no_more(
    producer: Producer, sim: Sim
) -> None:
    sim.configure("aistudios", render_s=3.0)
    pipeline_id = producer.submit(demo_pipeline())
    until(lambda: "avatar" in producer.get(pipeline_id).provider_ids, what="the avatar job made")
    avatar_id = producer.get(pipeline_id).provider_ids["avatar"]
    until(lambda: "wait" in producer.get(avatar_id).stages, what="its render under way")
    assert producer.cancel(pipeline_id).status is JobStatus.CANCELLED
    assert producer.get(avatar_id).status is JobStatus.CANCELLED
    # The render is followed to its end at the provider (its slot held until then), and nothing after it.
    followed = lambda: producer.get(avatar_id).stages["wait"].status is StageStatus.DONE  # noqa: E731
    until(followed, 15, "the render followed to its end")
    record = producer.get(pipeline_id)
    assert record.status is JobStatus.CANCELLED
    assert list(record.provider_ids) == ["avatar"]
    assert sim.stats("syncso")["generations_created"] == 0
