"""sync.so beyond one plain generation, end to end through real workers and the simulator over HTTP:
the media library (a large local file, an ``asset:<id>`` input), text-to-speech, segments with several
tracks, the cost cap, batches mapped back to jobs, and the account commands."""

from __future__ import annotations

import json
import os
import subprocess
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
from schemas import JobRecord, JobStatus, StageStatus
from tests.conftest import SIM_KEY, Sim, until

pytestmark = pytest.mark.integration

URLS = {"video": "https://media.example.com/a.mp4", "audio": "https://media.example.com/a.wav"}
# The workers' direct-upload limit in the tests (GENQ_SYNCSO__MAX_UPLOAD_BYTES): larger files go to the
# media library.
DIRECT_LIMIT = 65536


def lipsync(**fields: object) -> dict[str, object]:
    return {"kind": "lipsync", "model": "lipsync-2", **URLS, **fields}


def api(sim: Sim) -> httpx.Client:
    return httpx.Client(base_url=sim.base_url, headers={"x-api-key": SIM_KEY}, timeout=10)


def generation(sim: Sim, record: JobRecord) -> dict[str, Any]:
    with api(sim) as client:
        return client.get(f"/v2/generate/{record.provider_ids['generation']}").raise_for_status().json()


def succeeded(producer: Producer, job_id: str, timeout_s: float = 30) -> JobRecord:
    record = producer.wait(job_id, timeout_s=timeout_s)
    assert record.status is JobStatus.SUCCEEDED, (record.status, record.error)
    return record


def test_a_local_file_over_the_direct_limit_goes_through_the_media_library(
    producer: Producer, sim: Sim, tmp_path: Path
) -> None:
    video, audio = tmp_path / "big.mp4", tmp_path / "small.wav"
    video.write_bytes(os.urandom(3 * DIRECT_LIMIT))
    audio.write_bytes(os.urandom(1024))
    record = succeeded(producer, producer.submit(lipsync(video=str(video), audio=str(audio))))

    assert record.stages["upload"].status is StageStatus.DONE
    asset_id = record.data["assets"]["video"]
    assert set(record.data["assets"]) == {"video"}  # the small audio went with the create call
    with api(sim) as client:
        asset = client.get(f"/v2/assets/{asset_id}").raise_for_status().json()
    assert (asset["name"], asset["size"], asset["type"]) == (
        f"genq-{record.id}-video",
        video.stat().st_size,
        "VIDEO",
    )
    inputs = generation(sim, record)["input"]
    assert {"type": "video", "assetId": asset_id} in inputs
    assert sim.stats()["uploads_completed"] == 1


def test_an_asset_input_is_sent_by_its_id_and_an_unknown_one_fails_at_create(
    producer: Producer, sim: Sim
) -> None:
    with api(sim) as client:
        created = client.post(
            "/v2/assets", json={"url": "https://media.example.com/face.mp4", "type": "VIDEO"}
        )
    asset_id = created.raise_for_status().json()["id"]
    record = succeeded(producer, producer.submit(lipsync(video=f"asset:{asset_id}")))
    assert {"type": "video", "assetId": asset_id} in generation(sim, record)["input"]
    assert "upload" not in record.stages

    failed = producer.wait(producer.submit(lipsync(video="asset:no-such-asset")), timeout_s=30)
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None
    assert (failed.error.stage, failed.error.status_code) == ("create", 400)
    assert "assetId" in failed.error.message


def test_segments_lay_several_tracks_on_the_video(
    producer: Producer, sim: Sim, media: dict[str, str]
) -> None:
    request = lipsync(
        audio=None,
        tracks=[
            {"ref_id": "host", "audio": media["audio"]},
            {"ref_id": "guest", "tts": {"voice_id": "v-guest", "script": "Thanks for having me."}},
        ],
        segments=[
            {"start_time": 0, "end_time": 3, "audio_input": {"ref_id": "host"}},
            {
                "start_time": 3,
                "end_time": 5,
                "audio_input": {"ref_id": "guest", "start_time": 0, "end_time": 2},
            },
        ],
    )
    record = succeeded(producer, producer.submit(request))
    sent = generation(sim, record)
    host_asset = record.data["assets"]["tracks.0.audio"]  # a track's local file goes to the library
    guest = {"name": "elevenlabs", "voiceId": "v-guest", "script": "Thanks for having me."}
    assert sent["input"] == [
        {"type": "video", "url": URLS["video"]},
        {"type": "audio", "assetId": host_asset, "refId": "host"},
        {"type": "text", "provider": guest, "refId": "guest"},
    ]
    assert [s["audioInput"]["refId"] for s in sent["segments"]] == ["host", "guest"]
    assert sent["segments"][1]["audioInput"] == {"refId": "guest", "startTime": 0.0, "endTime": 2.0}


def test_a_tts_input_is_sent_as_a_text_item(producer: Producer, sim: Sim) -> None:
    tts = {"voice_id": "v1", "script": "Hello there.", "stability": 0.4}
    record = succeeded(producer, producer.submit(lipsync(audio=None, tts=tts)))
    text = [item for item in generation(sim, record)["input"] if item["type"] == "text"]
    provider = {"name": "elevenlabs", "voiceId": "v1", "script": "Hello there.", "stability": 0.4}
    assert text == [{"type": "text", "provider": provider}]


def test_a_job_over_its_cost_cap_fails_before_anything_is_created(producer: Producer, sim: Sim) -> None:
    # The simulator bills 10 s of lipsync-2 at $0.05/s: $0.50.
    sim.configure(media_duration_s=10.0)
    refused = producer.wait(producer.submit(lipsync(max_cost_usd=0.25)), timeout_s=30)
    assert refused.status is JobStatus.FAILED
    assert refused.error is not None
    assert (refused.error.stage, refused.error.code) == ("estimate", "genq_cost_exceeded")
    assert refused.error.message == "estimated cost $0.5000 is over max_cost_usd $0.2500; nothing was created"
    assert "create" not in refused.stages
    assert sim.stats()["generations_created"] == 0

    allowed = succeeded(producer, producer.submit(lipsync(max_cost_usd=0.75)))
    assert allowed.data["estimate"] == {"usd": 0.5, "frames": 250.0}
    assert sim.stats()["generations_created"] == 1


def batch_of(count: int) -> list[dict[str, object]]:
    return [
        lipsync(video=f"https://media.example.com/{i}.mp4", output_file_name=f"clip_{i:03d}")
        for i in range(count)
    ]


def test_a_batch_of_25_is_mapped_back_to_25_jobs_with_their_own_outputs_and_errors(
    producer: Producer, sim: Sim
) -> None:
    # The batch's first generation fails; the other 24 complete.
    sim.fault(route="syncso.outcome", status="FAILED", error_code="generation_pipeline_failed", times=1)
    request_ids = [f"order-{i}" for i in range(25)]
    submitted = producer.submit_batch(batch_of(25), request_ids=request_ids)
    records = [producer.wait(job_id, timeout_s=60) for job_id in submitted.job_ids]

    assert sim.stats()["batches_created"] == 1
    batch = producer.get(submitted.batch_id)
    assert batch.status is JobStatus.SUCCEEDED
    (sim_batch,) = sim.http.get("/_sim/syncso/batches").raise_for_status().json()
    assert sim_batch["id"] == batch.provider_ids["batch"]
    by_request = dict(zip(sim_batch["request_ids"], sim_batch["generation_ids"], strict=True))
    failed = [r for r in records if r.status is JobStatus.FAILED]
    assert len(failed) == 1
    assert failed[0].error is not None and failed[0].error.code == "generation_pipeline_failed"
    for request_id, record in zip(request_ids, records, strict=True):
        assert record.provider_ids["generation"] == by_request[request_id]
        assert record.data["batch"] == {"id": submitted.batch_id, "request_id": request_id}
        if record.status is JobStatus.SUCCEEDED:
            assert Path(record.outputs[0].path).name == f"{record.request.output_file_name}.mp4"  # type: ignore[attr-defined]
            assert Path(record.outputs[0].path).stat().st_size == record.outputs[0].bytes
    assert sum(r.status is JobStatus.SUCCEEDED for r in records) == 24


def test_a_batch_that_breaks_the_rules_is_refused_and_nothing_is_stored(
    scratch_url: str, scratch: redis.Redis
) -> None:
    producer = Producer(scratch_url)  # a database nothing else writes to: all it holds was stored here
    cases: list[tuple[list[dict[str, object]], dict[str, Any], str]] = [
        (batch_of(19), {}, "batch: 19 jobs; a sync.so batch takes 20 to 500"),
        (batch_of(501), {}, "batch: 501 jobs; a sync.so batch takes 20 to 500"),
        (batch_of(20), {"request_ids": ["same"] * 20}, "batch: Value error, request_ids must be unique"),
        (
            [{**job, "video": "/tmp/local.mp4"} for job in batch_of(20)],
            {},
            "[0] video: a batch file carries URLs and asset ids, not the local file /tmp/local.mp4",
        ),
        ([huge_job(i) for i in range(40)], {}, "batch: its file would be"),
    ]
    for jobs, options, problem in cases:
        with pytest.raises(InvalidRequest) as caught:
            producer.submit_batch(jobs, **options)
        assert any(line.startswith(problem) for line in caught.value.problems), caught.value.problems
    assert scratch.dbsize() == 0

    runner = CliRunner()
    result = runner.invoke(
        main,
        ["submit", "--batch", "-", "--redis-url", scratch_url],
        input="\n".join(json.dumps(j) for j in batch_of(19)),
    )
    assert result.exit_code == 2
    assert "invalid: batch: 19 jobs; a sync.so batch takes 20 to 500" in result.output
    assert scratch.dbsize() == 0


def huge_job(index: int) -> dict[str, object]:
    """A valid job whose batch line is about 160 kB: 32 tracks of 5,000-character scripts."""
    tracks = [{"ref_id": f"t{i}", "tts": {"voice_id": "v", "script": "x" * 5000}} for i in range(32)]
    segments = [{"start_time": i, "end_time": i + 1, "audio_input": {"ref_id": f"t{i}"}} for i in range(32)]
    return lipsync(
        video=f"https://media.example.com/{index}.mp4", audio=None, tracks=tracks, segments=segments
    )


def test_genq_models_lists_the_accounts_models(sim: Sim) -> None:
    result = CliRunner().invoke(main, ["models", "--json"])
    assert result.exit_code == 0, result.output
    models = json.loads(result.output)
    assert {m["id"] for m in models} == {
        "sync-3",
        "lipsync-2-pro",
        "lipsync-2",
        "lipsync-1.9.0-beta",
        "react-1",
    }
    assert {m["type"] for m in models} == {"lipsync", "react"}
    table = CliRunner().invoke(main, ["models"])
    assert table.exit_code == 0 and "lipsync-2-pro" in table.output


def test_genq_assets_lists_pages_and_shows_one(sim: Sim) -> None:
    with api(sim) as client:
        ids = [
            client.post(
                "/v2/assets", json={"url": f"https://media.example.com/{n}.wav", "type": "AUDIO", "name": n}
            )
            .raise_for_status()
            .json()["id"]
            for n in ("one", "two", "three")
        ]
    runner = CliRunner()
    first = runner.invoke(main, ["assets", "--limit", "2", "--json"])
    assert first.exit_code == 0, first.output
    page = json.loads(first.output)
    assert [a["id"] for a in page["items"]] == ids[:0:-1]  # newest first
    rest = json.loads(runner.invoke(main, ["assets", "--json", "--cursor", page["next_cursor"]]).output)
    assert [a["id"] for a in rest["items"]] == ids[:1]
    assert rest["next_cursor"] is None
    shown = runner.invoke(main, ["assets", ids[1]])
    assert shown.exit_code == 0 and "name: two" in shown.output
    missing = runner.invoke(main, ["assets", "no-such-asset"])
    assert missing.exit_code == 1 and missing.output.startswith("sync.so: ")


def test_genq_estimate_prints_each_jobs_estimate_and_flags_the_cap(sim: Sim, tmp_path: Path) -> None:
    sim.configure(media_duration_s=10.0)
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(
        json.dumps(lipsync()) + "\n" + json.dumps(lipsync(model="sync-3", max_cost_usd=1.0)) + "\n"
    )
    result = CliRunner().invoke(main, ["estimate", str(jobs), "--json"])
    rows = json.loads(result.output)
    # lipsync-2: 10 s at $0.05/s; sync-3: 10 s at $0.133/s, over its $1 cap.
    assert [(r["model"], r["usd"], r["verdict"]) for r in rows] == [
        ("lipsync-2", 0.5, "ok"),
        ("sync-3", 1.33, "over max_cost_usd"),
    ]
    assert result.exit_code == 1
    assert sim.stats()["generations_created"] == 0


@pytest.mark.slow
def test_a_worker_sigkilled_during_a_batch_create_leaves_one_batch_and_every_job_ends(
    workers: Callable[..., subprocess.Popen[bytes]], own_redis: EmbeddedRedis, sim: Sim
) -> None:
    # The batch reaches the simulator at once, but its answer takes 5 s: the worker dies after sync.so
    # created the batch and before genq recorded its id.
    sim.configure(batch_response_delay_s=5.0)
    doomed = workers("doomed", concurrency=1)
    producer = Producer(own_redis.url)
    submitted = producer.submit_batch(batch_of(25))
    until(lambda: sim.stats()["batches_created"] == 1, 30, "the batch to reach the simulator")
    stop(doomed, kill=True)
    batch = producer.get(submitted.batch_id)
    assert "batch_requested" in batch.provider_ids and "batch" not in batch.provider_ids
    sim.configure(batch_response_delay_s=0.0)

    workers("survivor")
    records = [producer.wait(job_id, timeout_s=90) for job_id in submitted.job_ids]
    assert [r.status for r in records] == [JobStatus.SUCCEEDED] * 25
    stats = sim.stats()
    assert stats["batches_created"] == 1
    assert stats["requests"]["batch_create"] == 2  # the dry run and the one create: the survivor adopted it
    assert (
        producer.get(submitted.batch_id).provider_ids["batch"]
        == sim.http.get("/_sim/syncso/batches").json()[0]["id"]
    )
