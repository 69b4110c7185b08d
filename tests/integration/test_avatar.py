"""Avatar jobs end to end: producer → Redis → real Celery workers → the AI Studios simulator over HTTP →
a rendered video on disk."""

from __future__ import annotations

import copy
import hashlib
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from click.testing import CliRunner

from genq.cli import main
from genq.processes import stop
from genq.redis_server import EmbeddedRedis
from producers import InvalidRequest, Producer
from schemas import JobStatus, StageStatus
from schemas import layout as L
from tests.conftest import Services, Sim, until
from tests.integration.conftest import AppServer, Workers
from worker.providers.aistudios.webhook import webhook_url
from worker.settings import Settings
from worker.webhooks import create_app

pytestmark = pytest.mark.integration

SIMPLE = {
    "kind": "avatar",
    "script": "Hello from genq. This video was rendered by an avatar.",
    "model": "M000045058",
    "clothes": "BG00002320",
    "background_color": "#1e90ff",
    "resolution": "720",
}


def scene(index: int, text: str, *, model: str = "M000045058", clothes: str = "BG00002320") -> dict[str, Any]:
    return {
        "sceneIdx": index,
        "background": {"id": "background", "type": "background", "source_type": "image",
                       "source_url": "/images/background/bg_blue_gradient.png"},
        "watermark": False,
        "scripts": [{"org": text, "isTTS": False, "tts": None, "modelId": model, "clothId": clothes}],
        "clips": [
            {"id": "aiModel-1", "type": "aiModel", "layer": 1, "top": 144.6, "left": 630.2, "width": 679,
             "height": 2229, "model": {"ai_name": "M000045058", "emotion": "BG00002320", "language": "en",
                                       "editor": {"scale": 0.3}}},
            {"id": "title", "type": "textImage", "layer": 2, "text": f"Part {index + 1}", "fontSize": 48,
             "opacity": 90},
        ],
    }  # fmt: skip


FULL = {
    "kind": "avatar",
    "output_file_name": "two_scenes",
    "project": {"name": "genq full project", "orientation": "portrait",
                "scenes": [scene(0, "First scene."), scene(1, "Second scene.")]},
}  # fmt: skip


def rendered(producer: Producer, job_id: str, timeout_s: float = 30) -> Path:
    record = producer.wait(job_id, timeout_s=timeout_s)
    assert record.status is JobStatus.SUCCEEDED, record.error
    assert [record.stages[s].status for s in ("create", "wait", "download")] == [StageStatus.DONE] * 3
    output = record.outputs[0]
    path = Path(output.path)
    data = path.read_bytes()
    assert len(data) == output.bytes > 0
    assert hashlib.sha256(data).hexdigest() == output.sha256
    return path


def projects(sim: Sim) -> dict[str, dict[str, Any]]:
    listed = sim.http.get("/_sim/aistudios/projects").raise_for_status().json()
    return {p["id"]: p["document"] for p in listed}


def test_a_simple_form_job_renders_to_a_file(producer: Producer, sim: Sim) -> None:
    job_id = producer.submit(SIMPLE)
    path = rendered(producer, job_id)

    record = producer.get(job_id)
    project_id = record.provider_ids["project"]
    assert path.name == f"{project_id}.mp4"
    assert path.read_bytes()[4:8] == b"ftyp"
    stats = sim.stats("aistudios")
    assert stats["projects_created"] == 1
    assert stats["exports_by_project"] == {project_id: 1}
    sent = projects(sim)[project_id]
    assert sent["scenes"][0]["scripts"][0]["org"] == SIMPLE["script"]


def test_a_full_project_job_renders_to_a_file_with_its_scenes_passed_through(
    producer: Producer, sim: Sim
) -> None:
    job_id = producer.submit(FULL)
    path = rendered(producer, job_id)

    assert path.name == "two_scenes.mp4"
    project_id = producer.get(job_id).provider_ids["project"]
    sent = projects(sim)[project_id]
    assert [s["scripts"][0]["org"] for s in sent["scenes"]] == ["First scene.", "Second scene."]
    assert sent["scenes"][0]["clips"][0]["model"]["editor"] == {"scale": 0.3}  # unknown fields kept
    assert sent["orientation"] == "portrait"


def _without_scripts(project: dict[str, Any]) -> dict[str, Any]:
    broken = copy.deepcopy(project)
    broken["scenes"][1]["scripts"] = []
    return broken


@pytest.mark.parametrize(
    ("request_", "line"),
    [
        ({**FULL, "project": {"scenes": []}}, "project.scenes: "),
        ({**FULL, "project": _without_scripts(FULL["project"])}, "project.scenes.1.scripts: "),
        (
            {**FULL, "project": {"scenes": [scene(0, "Hi", model="M000000001")]}},
            "project.scenes.0.scripts.0.modelId: ",
        ),
        ({**SIMPLE, "resolution": "2k"}, "resolution: "),
        ({**SIMPLE, "project": FULL["project"]}, "request: "),
    ],
    ids=["no-scenes", "scene-without-script", "script-model-mismatch", "resolution", "both-forms"],
)
def test_an_invalid_avatar_request_is_refused_at_submit_with_a_field_level_line_and_nothing_enqueued(
    scratch_url: str, scratch: redis.Redis, request_: dict[str, Any], line: str
) -> None:
    producer = Producer(scratch_url)  # a database nothing else writes to: all it holds was stored here
    with pytest.raises(InvalidRequest) as refused:
        producer.submit(request_)
    assert any(p.startswith(line) for p in refused.value.problems), refused.value.problems
    assert scratch.dbsize() == 0


def test_a_render_the_provider_fails_fails_the_job_with_its_message(producer: Producer, sim: Sim) -> None:
    sim.configure("aistudios", fail_share=1.0)
    job_id = producer.submit(SIMPLE)
    record = producer.wait(job_id, timeout_s=30)

    assert record.status is JobStatus.FAILED
    assert record.error is not None
    assert record.error.stage == "wait"
    assert record.error.code == "RENDER_FAILED"
    assert record.error.message.startswith("Rendering failed")
    assert record.error.provider == "aistudios"


@pytest.mark.slow
def test_a_stalled_render_fails_the_job_after_the_stall_time(
    workers: Callable[..., subprocess.Popen[bytes]], own_redis: EmbeddedRedis, sim: Sim
) -> None:
    sim.configure("aistudios", stall_share=1.0)
    workers("stall", GENQ_AISTUDIOS__STALL_S="1.5")
    producer = Producer(own_redis.url)
    job_id = producer.submit(SIMPLE)
    record = producer.wait(job_id, timeout_s=30)

    assert record.status is JobStatus.FAILED
    assert record.error is not None
    assert record.error.code == "genq_render_stalled"
    assert "stuck at" in record.error.message


@pytest.mark.slow
def test_the_token_is_fetched_once_for_50_jobs_across_processes_and_refreshed_once_when_it_expires_early(
    workers: Workers, own_redis: EmbeddedRedis, sim: Sim
) -> None:
    for name in ("a", "b", "c"):
        workers(name, concurrency=4, ready=False)
    workers.wait_ready()  # all three compete from the first job
    producer = Producer(own_redis.url)
    ids = producer.submit_many([SIMPLE] * 50)
    records = [producer.wait(job_id, timeout_s=90) for job_id in ids]
    assert [r.status for r in records] == [JobStatus.SUCCEEDED] * 50
    assert sim.stats("aistudios")["tokens_issued"] == 1
    # Each process called AI Studios (a create needs the token), and still only one token was issued.
    assert [workers.took_part(name, "genq.aistudios.create") > 0 for name in "abc"] == [True] * 3

    sim.http.post("/_sim/aistudios/expire-tokens").raise_for_status()
    more = producer.submit_many([SIMPLE] * 10)
    records = [producer.wait(job_id, timeout_s=60) for job_id in more]

    assert [r.status for r in records] == [JobStatus.SUCCEEDED] * 10
    stats = sim.stats("aistudios")
    assert stats["tokens_issued"] == 2
    assert stats["unauthorized"] >= 1  # the expired token was refused, then replaced


@pytest.mark.slow
def test_a_worker_sigkilled_right_after_create_does_not_export_twice(
    workers: Callable[..., subprocess.Popen[bytes]], own_redis: EmbeddedRedis, sim: Sim
) -> None:
    # The export reaches the simulator at once, but its answer takes 5 s: the worker dies after
    # AI Studios started the render and before genq recorded that it did.
    sim.configure("aistudios", export_response_delay_s=5.0)
    doomed = workers("doomed", concurrency=1)
    producer = Producer(own_redis.url)
    job_id = producer.submit(SIMPLE)

    def exported() -> bool:
        return sum(sim.stats("aistudios")["exports_by_project"].values()) == 1

    until(exported, 30, "the export to reach the simulator")
    stop(doomed, kill=True)
    assert producer.get(job_id).provider_ids["export"] == "requested"
    sim.configure("aistudios", export_response_delay_s=0.0)

    workers("survivor")
    rendered(producer, job_id, timeout_s=60)
    stats = sim.stats("aistudios")
    assert stats["projects_created"] == 1
    assert stats["exports_by_project"] == {producer.get(job_id).provider_ids["project"]: 1}


HOOK_SECRET = "genq-aistudios-webhook-test-secret"


@pytest.mark.slow
def test_a_webhook_with_the_jobs_token_ends_the_wait_long_before_the_next_progress_check(
    workers: Callable[..., subprocess.Popen[bytes]], own_redis: EmbeddedRedis, sim: Sim
) -> None:
    sim.configure("aistudios", render_s=1.0, render_jitter=0.0)
    settings = Settings(redis_url=own_redis.url, aistudios={"webhook_secret": HOOK_SECRET})
    with AppServer(create_app(settings)) as receiver:
        # Progress is checked every 60 s: only the webhook can end the wait in time.
        hooks = {"GENQ_WEBHOOKS__BASE_URL": receiver.base_url, "GENQ_AISTUDIOS__WEBHOOK_SECRET": HOOK_SECRET}
        workers("hooks", GENQ_AISTUDIOS__CHECK_INTERVAL_S="60", **hooks)
        producer = Producer(own_redis.url)
        job_id = producer.submit(SIMPLE)
        record = producer.wait(job_id, timeout_s=30)
    assert record.status is JobStatus.SUCCEEDED, record.error
    stats = sim.stats("aistudios")
    assert stats["webhooks"]["delivered"] == 1
    assert record.finished_at is not None
    assert (record.finished_at - record.created_at).total_seconds() < 10


@pytest.mark.parametrize("token", ["", "0" * 32, "forged"])
def test_a_webhook_without_the_jobs_token_is_refused_and_checks_nothing(
    services: Services, redis_client: redis.Redis, token: str
) -> None:
    from worker.waits import Waits  # noqa: PLC0415

    job_id, project_id = f"job-hook-{time.time_ns()}", f"{time.time_ns():024x}"[-24:]
    redis_client.hset(L.job_key(job_id), L.PROVIDER_ID_PREFIX + "project", project_id)
    Waits(redis_client).park("aistudios", "acct", project_id, job=job_id, stage="wait", queue="hook-test",
                             message="next-run", check_in_s=600, deadline_in_s=600)  # fmt: skip
    due = L.wait_keys("aistudios")[2] + "acct"
    before = redis_client.zscore(due, project_id)
    settings = Settings(redis_url=services.redis.url, aistudios={"webhook_secret": HOOK_SECRET})
    body = {"progress": 100, "credit": 3, "backendTaskId": "t1", "download_url": "https://evil.test/x.mp4"}
    with AppServer(create_app(settings, redis_client)) as server:
        refused = httpx.post(
            f"{server.base_url}/aistudios", params={"job": job_id, "token": token}, json=body
        )
        assert refused.status_code == 401
        assert redis_client.zscore(due, project_id) == before
        good = webhook_url(f"{server.base_url}/aistudios", HOOK_SECRET, job_id)
        assert good is not None
        accepted = httpx.post(good, json=body)
    assert (accepted.status_code, accepted.json()) == (200, {"checking": True})
    assert redis_client.zscore(due, project_id) == 0  # checked first, by the sweep, from AI Studios itself
    assert not redis_client.exists(L.WAIT_RESULT_KEY.format(provider="aistudios", provider_id=project_id))


@pytest.mark.slow
def test_status_shows_the_render_a_parked_avatar_job_waits_for(
    workers: Callable[..., subprocess.Popen[bytes]], own_redis: EmbeddedRedis, sim: Sim
) -> None:
    sim.configure("aistudios", render_s=60.0)
    workers("parked", GENQ_AISTUDIOS__CHECK_INTERVAL_S="20")
    producer = Producer(own_redis.url)
    job_id = producer.submit(SIMPLE)
    until(lambda: bool(producer.parked(producer.get(job_id))), 30, "the wait to park")
    project_id = producer.get(job_id).provider_ids["project"]
    result = CliRunner().invoke(
        main, ["status", job_id, "--redis-url", own_redis.url], env={"COLUMNS": "250"}
    )
    assert result.exit_code == 0, result.output
    assert f"parked: waiting for aistudios {project_id} since" in result.output


@pytest.mark.slow
def test_renders_in_flight_never_exceed_the_accounts_pool(
    workers: Callable[..., subprocess.Popen[bytes]], own_redis: EmbeddedRedis, sim: Sim
) -> None:
    sim.configure("aistudios", render_s=1.0)
    workers("a", concurrency=4, GENQ_AISTUDIOS__CONCURRENCY="2")
    workers("b", concurrency=4, GENQ_AISTUDIOS__CONCURRENCY="2")
    producer = Producer(own_redis.url)
    ids = producer.submit_many([SIMPLE] * 8)
    records = [producer.wait(job_id, timeout_s=60) for job_id in ids]
    assert [r.status for r in records] == [JobStatus.SUCCEEDED] * 8
    assert sim.stats("aistudios")["peak_in_flight"] == 2
