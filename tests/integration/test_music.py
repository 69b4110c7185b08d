"""Music jobs end to end: a video uploaded in parallel chunks, analysed, a plan generated and edited,
K executions in parallel, their outputs downloaded; real Celery workers and the Aimi simulator."""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from genq.processes import stop
from genq.redis_server import EmbeddedRedis
from producers import Producer
from schemas import JobStatus
from schemas import layout as L
from tests.conftest import Sim, until

pytestmark = pytest.mark.integration

StartWorker = Callable[..., subprocess.Popen[bytes]]
MB = 1_000_000


@pytest.fixture
def video_70mb(tmp_path: Path) -> Path:
    path = tmp_path / "launch.mp4"
    with path.open("wb") as out:
        for _ in range(70):
            out.write(os.urandom(MB))
    return path


def music(video: Path | str, **fields: Any) -> dict[str, Any]:
    return {"kind": "music", "video": str(video), **fields}


def uploads(sim: Sim) -> list[dict[str, Any]]:
    found: Any = sim.http.get("/_sim/aimi/uploads").raise_for_status().json()
    return list(found.values()) if isinstance(found, dict) else list(found)


def overlapped(chunks: list[dict[str, Any]]) -> bool:
    spans = sorted((c["started_at"], c["ended_at"]) for c in chunks)
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


@pytest.mark.slow
def test_a_70_mb_video_is_uploaded_in_3_parallel_chunks_and_3_executions_give_3_outputs(
    producer: Producer, sim: Sim, video_70mb: Path
) -> None:
    sim.configure("aimi", chunk_delay_s=0.5)
    edit = {"patch": [{"op": "replace", "path": "/masterGain", "value": 55}]}
    job_id = producer.submit(music(video_70mb, executions=3, plan_edit=edit, output_file_name="launch"))
    record = producer.wait(job_id, timeout_s=90)

    assert record.status is JobStatus.SUCCEEDED, record.error
    [upload] = uploads(sim)
    assert len(upload["chunks"]) == 3
    assert overlapped(upload["chunks"])
    assert upload["sha256"] == hashlib.sha256(video_70mb.read_bytes()).hexdigest()
    assert record.data["plan"]["masterGain"] == 55
    assert record.data["generated_plan"]["masterGain"] != 55
    assert [Path(o.path).name for o in record.outputs] == [f"launch_{n}.mp4" for n in range(3)]
    for output in record.outputs:
        data = Path(output.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == output.sha256
        assert data[4:8] == b"ftyp"
    stats = sim.stats("aimi")
    assert stats["executions_started"] == 3
    assert stats["chunks_resent"] == 0


def test_a_multitrack_job_gets_zips_with_stems(producer: Producer, sim: Sim, tmp_path: Path) -> None:
    video = tmp_path / "short.mp4"
    video.write_bytes(os.urandom(2 * MB))
    options = {"multitrack": True}
    job_id = producer.submit(music(video, executions=2, keep_original_audio=True, plan_options=options))
    record = producer.wait(job_id, timeout_s=60)

    assert record.status is JobStatus.SUCCEEDED, record.error
    assert "audio_analysis" in record.data
    for output in record.outputs:
        assert output.path.endswith(".zip")
        with zipfile.ZipFile(output.path) as archive:
            names = archive.namelist()
        assert any(name.startswith("stems/") for name in names), names


@pytest.mark.slow
def test_two_jobs_of_8_executions_never_run_more_than_10_at_once_and_get_no_429(
    producer: Producer, sim: Sim, tmp_path: Path
) -> None:
    sim.configure("aimi", execution_s=1.5)
    video = tmp_path / "clip.mp4"
    video.write_bytes(os.urandom(MB))
    ids = [producer.submit(music(video, executions=8)) for _ in range(2)]
    records = [producer.wait(job_id, timeout_s=90) for job_id in ids]

    assert [r.status for r in records] == [JobStatus.SUCCEEDED] * 2, [r.error for r in records]
    stats = sim.stats("aimi")
    assert stats["executions_started"] == 16
    assert stats["peak_running"] <= 10
    assert stats["throttled"] == {"concurrency": 0, "cooldown": 0}


@pytest.mark.slow
def test_an_execution_that_ends_long_after_the_other_still_joins_and_the_job_succeeds(
    workers: StartWorker, own_redis: EmbeddedRedis, sim: Sim, tmp_path: Path
) -> None:
    # One execution slot: the second execution waits for the first one's slot, so its branch ends an
    # execution later. The join is counted in the job record, which has no time to live while the job
    # runs (a chord's counter on a result backend expired after result_expires): however late a
    # branch ends, the join is there.
    sim.configure("aimi", execution_s=3.0)
    producer = Producer(own_redis.url)
    workers("w", concurrency=4, GENQ_AIMI__CONCURRENCY="1")
    video = tmp_path / "clip.mp4"
    video.write_bytes(os.urandom(MB))
    job_id = producer.submit(music(video, executions=2))

    def downloaded() -> list[str]:
        stages = producer.get(job_id).stages
        return [n for n in ("download[0]", "download[1]") if n in stages and stages[n].status == "done"]

    until(lambda: len(downloaded()) == 1, 60, "one branch to end")
    assert "collect" not in producer.get(job_id).stages
    assert producer.redis.ttl(L.job_key(job_id)) == -1  # nothing the join reads can expire
    record = producer.wait(job_id, timeout_s=60)

    assert record.status is JobStatus.SUCCEEDED, record.error
    assert len(record.outputs) == 2
    ends = sorted(t for n in range(2) if (t := record.stages[f"download[{n}]"].finished_at) is not None)
    assert (ends[1] - ends[0]).total_seconds() >= 2.0  # the second branch ended an execution later
    collect_started = record.stages["collect"].started_at
    assert collect_started is not None and collect_started >= ends[1]
    assert sim.stats("aimi")["executions_started"] == 2


@pytest.mark.slow
# quiet: the held chunk's 10 s must outlast the next worker's start and the redelivery, or it counts as
# sent twice; on a machine busy with other tests they may not.
@pytest.mark.quiet
def test_a_worker_killed_during_the_upload_and_again_during_the_executions_the_job_still_succeeds(
    workers: StartWorker, own_redis: EmbeddedRedis, sim: Sim, video_70mb: Path
) -> None:
    # Chunk 0 is answered at once; the next is held 10 s after Aimi read it, and the worker dies
    # meanwhile. (Aimi cannot tell a dead client from a live one, so the held answer must come after the
    # chunk is sent again.)
    sim.configure("aimi", execution_s=4.0, chunk_delay_s=10.0, chunk_delay_from=1)
    producer = Producer(own_redis.url)
    # A 2 s visibility timeout: a dead worker's runs are back within seconds.
    short = {"GENQ_VISIBILITY_TIMEOUT_S": "2", "GENQ_RUNS__HEARTBEAT_S": "0.5"}
    first = workers("first", concurrency=1, **short)  # one chunk at a time
    job_id = producer.submit(music(video_70mb, executions=3))
    until(lambda: "chunk[0]" in producer.get(job_id).provider_ids, 60, "chunk 0 to be acknowledged")

    def chunk_held() -> bool:
        now = time.monotonic()
        return any(
            c["outcome"] == "in_progress" and now - c["started_at"] > 1.0 for c in uploads(sim)[0]["chunks"]
        )

    until(chunk_held, 60, "a chunk to be held")
    stop(first, kill=True)
    sim.configure("aimi", chunk_delay_s=0.0)
    second = workers("second", concurrency=4, **short)

    def executions_started() -> bool:
        record = producer.get(job_id)
        return sum(name.startswith("exec[") for name in record.provider_ids) == 3

    until(executions_started, 90, "all three executions to start")
    stop(second, kill=True)
    workers("third", concurrency=4, **short)
    record = producer.wait(job_id, timeout_s=90)

    assert record.status is JobStatus.SUCCEEDED, record.error
    [upload] = uploads(sim)
    sent = [c["index"] for c in upload["chunks"]]
    assert sent.count(0) == 1  # acknowledged before the first kill: never sent again
    assert upload["sha256"] == hashlib.sha256(video_70mb.read_bytes()).hexdigest()
    stats = sim.stats("aimi")
    assert stats["chunks_resent"] == 0
    assert stats["executions_started"] == 3
    assert len(record.outputs) == 3


def test_an_edit_that_does_not_fit_the_plan_fails_the_job_naming_it_and_starts_no_execution(
    producer: Producer, sim: Sim, tmp_path: Path
) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(os.urandom(MB))
    edit = {"patch": [{"op": "remove", "path": "/sections/99"}]}
    record = producer.wait(producer.submit(music(video, plan_edit=edit)), timeout_s=60)

    assert record.status is JobStatus.FAILED
    assert record.error is not None
    assert record.error.stage == "generate_plan"
    assert "plan_edit.patch.0: path /sections/99 does not exist" in record.error.message
    assert sim.stats("aimi")["executions_started"] == 0


def test_a_video_gone_before_the_upload_fails_the_job_naming_it_and_starts_nothing(
    producer: Producer, sim: Sim, tmp_path: Path
) -> None:
    video = tmp_path / "gone.mp4"
    video.write_bytes(os.urandom(MB))
    job_id = producer.submit(music(video))
    video.unlink()  # between submit (which checked it) and the worker's upload
    record = producer.wait(job_id, timeout_s=30)

    assert record.status is JobStatus.FAILED
    assert record.error is not None
    assert record.error.message == f"video: no such file: {video}"
    # The worker may have begun the upload before the file went (a race the test does not control); no
    # chunk of it was acknowledged, the upload never completed, and nothing ran.
    assert not any(c["outcome"] == "acked" for upload in uploads(sim) for c in upload["chunks"])
    assert not any(upload["completed"] for upload in uploads(sim))
    assert sim.stats("aimi")["executions_started"] == 0


def test_a_chunk_refused_as_too_large_fails_the_job_with_the_providers_message(
    producer: Producer, sim: Sim, tmp_path: Path
) -> None:
    sim.fault(route="aimi.upload_chunk", status=413, body={"message": "chunk exceeds the 30 MB limit"})
    video = tmp_path / "clip.mp4"
    video.write_bytes(os.urandom(2 * MB))
    record = producer.wait(producer.submit(music(video)), timeout_s=30)

    assert record.status is JobStatus.FAILED
    assert record.error is not None
    assert record.error.status_code == 413
    assert record.error.stage == "upload_chunk[0]"
    assert "chunk exceeds the 30 MB limit" in record.error.message
    assert sim.stats("aimi")["executions_started"] == 0


def test_executions_whose_outputs_together_pass_the_job_cap_fail_the_job_and_leave_no_partial_file(
    producer: Producer, sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each output (256 KiB) is within every cap alone, and two of them within the job's; the third
    execution's download would pass it. The downloads run in parallel and share one budget."""
    from schemas.caps import Caps  # noqa: PLC0415
    from worker.context import get_context  # noqa: PLC0415 (the in-process worker's own context)

    settings = get_context().settings
    monkeypatch.setattr(settings, "caps", Caps(max_job_output_bytes=600_000))
    video = tmp_path / "clip.mp4"
    video.write_bytes(os.urandom(MB))
    record = producer.wait(producer.submit(music(video, executions=3)), timeout_s=60)

    assert record.status is JobStatus.FAILED
    assert record.error is not None
    assert record.error.stage.startswith("download[")
    assert record.error.code == "output_too_large"
    assert record.error.message == (
        "the job's outputs would be 786432 bytes; one job may write at most 600000 "
        "(GENQ_CAPS__MAX_JOB_OUTPUT_BYTES)"
    )
    # A download of another execution may still be writing when the job fails: it ends on its own (renamed
    # into place within the budget, or removed), and leaves no partial file behind.
    job_dir = settings.artifact_dir / record.id
    until(lambda: not [path for path in job_dir.iterdir() if path.suffix == ".part"], 15, "no partial file")
    written = list(job_dir.iterdir())
    assert len(written) <= 2
    assert sum(path.stat().st_size for path in written) <= 600_000
