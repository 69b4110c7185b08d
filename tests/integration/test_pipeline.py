"""Pipelines end to end: an avatar, lipsynced onto three dubbed tracks, music scored to each; real Celery
workers and the three simulators, each step a job of its own."""

from __future__ import annotations

from typing import Any

import pytest

from producers import InvalidRequest, Producer
from schemas import JobStatus, StageStatus
from schemas import layout as L
from tests.conftest import AVATAR, Sim, until

pytestmark = pytest.mark.integration

LANGUAGES = ("fr", "de", "es")


def demo_pipeline(languages: tuple[str, ...] = LANGUAGES, **changes: Any) -> dict[str, Any]:
    return {
        "kind": "pipeline",
        "steps": {
            "avatar": {"request": AVATAR},
            "dub": {
                "request": {"kind": "lipsync", "model": "lipsync-2", "video": {"from": "avatar"}},
                "for_each": [
                    {"audio": f"https://x.test/{lang}.wav", "output_file_name": f"promo_{lang}"}
                    for lang in languages
                ],
            },
            "score": {"request": {"kind": "music", "video": {"from": "dub"}}},
        },
        **changes,
    }


def inputs(sim: Sim, provider: str) -> dict[str, Any]:
    """What the simulator recorded each of its jobs was given and served (by provider job id)."""
    found: dict[str, Any] = sim.http.get(f"/_sim/{provider}/inputs").raise_for_status().json()
    return found


@pytest.mark.slow
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
    # Flower shows every step job's runs under the pipeline's root task.
    roots = {
        producer.redis.hget(L.job_key(job_id), L.F_ROOT)
        for job_id in [pipeline_id, *record.provider_ids.values()]
    }
    assert len(roots) == 1
    # Each provider job was given the bytes the step before it made: the simulators' own digests.
    [avatar] = jobs["avatar"].outputs
    rendered = inputs(sim, "aistudios")[jobs["avatar"].provider_ids["project"]]["output"]
    generations, executions = inputs(sim, "syncso"), inputs(sim, "aimi")
    assert rendered["sha256"] == avatar.sha256
    for b, lang in enumerate(LANGUAGES):
        dub, score = jobs[f"dub[{b}]"], jobs[f"score[{b}]"]
        generation = generations[dub.provider_ids["generation"]]
        assert generation["inputs"]["video"]["sha256"] == avatar.sha256
        assert generation["inputs"]["audio"]["url"] == f"https://x.test/{lang}.wav"
        assert generation["output"]["sha256"] == dub.outputs[0].sha256
        [execution] = [e for e in executions.values() if e["taskid"] == score.provider_ids["task"]]
        assert execution["inputs"]["video"]["sha256"] == dub.outputs[0].sha256
    # The pipeline's outputs are its last steps', in branch order.
    assert record.outputs == [jobs[f"score[{b}]"].outputs[0] for b in range(3)]
    assert sim.stats("aistudios")["projects_created"] == 1


def test_one_failed_language_with_at_least_2_the_pipeline_succeeds_with_two_outputs_and_names_it(
    producer: Producer, sim: Sim
) -> None:
    sim.fault(route="syncso.input", contains="de.wav")
    pipeline_id = producer.submit(demo_pipeline(join={"at_least": 2}, on_failure="continue"))
    record = producer.wait(pipeline_id, timeout_s=90)
    assert record.status is JobStatus.SUCCEEDED, record.error
    assert len(record.outputs) == 2
    assert record.stages["end"].detail == "2 of 3 final runs succeeded"
    assert record.data["step:dub[1]"]["status"] == "failed"
    assert record.data["step:dub[1]"]["error"]["code"] == "generation_pipeline_failed"
    assert record.data["step:score[1]"] == {
        "status": "skipped", "job": None, "outputs": [], "error": None,
        "reason": "it takes the output of dub[1], which did not succeed", "cost_usd": None,
    }  # fmt: skip
    assert "score[1]" not in record.provider_ids


@pytest.mark.slow
def test_one_failed_language_with_all_fails_naming_it_and_a_replay_runs_only_that_branch(
    producer: Producer, sim: Sim
) -> None:
    sim.fault(route="syncso.input", contains="de.wav")
    pipeline_id = producer.submit(demo_pipeline(on_failure="continue"))
    record = producer.wait(pipeline_id, timeout_s=90)
    assert record.status is JobStatus.FAILED
    assert record.error is not None
    assert record.error.message == (
        "dub[1] failed (syncso generation_pipeline_failed: Generation pipeline failed.); score[1] skipped; "
        "2 of 3 final runs succeeded, the join needs all"
    )
    before = dict(record.provider_ids)
    sim.http.delete("/_sim/faults").raise_for_status()
    creates = sim.stats("syncso")["generations_created"]

    producer.replay(pipeline_id)
    record = producer.wait(pipeline_id, timeout_s=90)
    assert record.status is JobStatus.SUCCEEDED, record.error
    assert len(record.outputs) == 3
    # The runs that had succeeded kept their jobs; the failed branch got new ones, and only it ran again.
    kept = ["avatar", "dub[0]", "dub[2]", "score[0]", "score[2]"]
    assert {key: record.provider_ids[key] for key in kept} == {key: before[key] for key in kept}
    assert record.provider_ids["dub[1]"] != before["dub[1]"]
    assert "score[1]" in record.provider_ids
    assert sim.stats("aistudios")["projects_created"] == 1
    assert sim.stats("syncso")["generations_created"] == creates + 1


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


@pytest.mark.slow
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


def test_a_step_job_is_replayed_through_its_pipeline_not_alone(producer: Producer, sim: Sim) -> None:
    sim.configure("aistudios", fail_share=1.0)
    pipeline_id = producer.submit(demo_pipeline())
    record = producer.wait(pipeline_id, timeout_s=60)
    avatar = producer.get(record.provider_ids["avatar"])
    assert (avatar.status, avatar.pipeline) == (JobStatus.FAILED, pipeline_id)
    with pytest.raises(InvalidRequest) as refused:
        producer.replay(avatar.id)
    assert refused.value.problems == [
        f"job {avatar.id} runs a step of pipeline {pipeline_id}: replay the pipeline (it runs its failed "
        "steps again, with new jobs)"
    ]
    assert producer.get(avatar.id).status is JobStatus.FAILED
