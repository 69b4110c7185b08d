"""Outputs any host can reach: subprocess workers with disks of their own (different GENQ_ARTIFACT_DIRs)
store every output in a real S3 server, and a producer process that shares no disk with them fetches each
through its presigned URL; a worker killed mid-upload leaves one object per output; a store that refuses
or fails ends the job with a clear error, never a traceback."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from genq.processes import stop
from genq.redis_server import EmbeddedRedis
from genq.s3_server import S3Server
from producers import Producer
from schemas import JobRecord, JobStatus
from simulators.aimi.execution import mp4_bytes, zip_bytes
from simulators.aistudios.render import output_stream
from tests.conftest import AVATAR, LIPSYNC, Sim, until
from tests.integration.conftest import Workers, keys_under, uploads_under

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MIB = 1024 * 1024
# Fetches every output of the jobs named on stdin through its presigned URL, with no credentials and
# from a directory of its own; prints {job id: [[name, bytes, sha256, content type], ...]}.
PRODUCER_SCRIPT = """
import hashlib, json, os, sys, tempfile
import httpx
from producers import Producer
os.chdir(tempfile.mkdtemp())
producer, found = Producer(os.environ["GENQ_REDIS_URL"]), {}
for job_id in json.load(sys.stdin):
    found[job_id] = []
    for output in producer.get(job_id).outputs:
        assert output.download_url, output
        with httpx.stream("GET", output.download_url) as response:
            response.raise_for_status()
            digest, count = hashlib.sha256(), 0
            for chunk in response.iter_bytes():
                digest.update(chunk)
                count += len(chunk)
        found[job_id].append([output.path.rsplit("/", 1)[-1], count, digest.hexdigest(),
                              response.headers["content-type"]])
print(json.dumps(found))
"""


def served_sha256(record: JobRecord, sizes: dict[str, int], sim: Sim) -> list[str]:
    """The SHA-256 of each output as the simulator served it (its bytes are a function of the ids)."""
    if record.kind == "lipsync":
        gid = record.provider_ids["generation"]
        found = sim.http.get("/_sim/syncso/inputs", params={"ids": gid}).raise_for_status().json()
        return [found[gid]["output"]["sha256"]]
    if record.kind == "avatar":

        async def collect() -> bytes:
            return b"".join(
                [b async for b in output_stream(record.provider_ids["project"], sizes["aistudios"])]
            )

        return [hashlib.sha256(asyncio.run(collect())).hexdigest()]
    multitrack = record.request.plan_options.multitrack  # type: ignore[attr-defined]
    made = zip_bytes if multitrack else mp4_bytes
    count = record.request.executions  # type: ignore[attr-defined]
    return [
        hashlib.sha256(made(record.provider_ids[f"exec[{n}]"], sizes["aimi"])).hexdigest()
        for n in range(count)
    ]


def test_two_workers_with_disks_of_their_own_store_outputs_a_producer_process_fetches_by_url(  # noqa: PLR0917
    workers: Workers, own_redis: EmbeddedRedis, sim: Sim, s3: S3Server, media: dict[str, str], tmp_path: Path
) -> None:
    sizes = {"syncso": 3 * MIB + 17, "aistudios": 700_001, "aimi": 6 * MIB + 3}
    for provider, size in sizes.items():
        sim.configure(provider, output_bytes=size)
    prefix = f"anywhere-{uuid.uuid4().hex[:8]}"
    store = {**s3.env(prefix), "GENQ_OUTPUTS__PART_BYTES": str(5 * MIB)}
    workers("one", 4, GENQ_ARTIFACT_DIR=str(tmp_path / "disk-one"), **store)
    workers("two", 4, GENQ_ARTIFACT_DIR=str(tmp_path / "disk-two"), **store)
    producer = Producer(own_redis.url)
    music = {"kind": "music", "video": media["video"], "executions": 2}
    zips = {**music, "plan_options": {"multitrack": True}, "output_file_name": "stems"}
    job_ids = [producer.submit(r) for r in (LIPSYNC, LIPSYNC, AVATAR, AVATAR, music, zips)]
    records = [producer.wait(job_id, timeout_s=90) for job_id in job_ids]
    assert [r.status for r in records] == [JobStatus.SUCCEEDED] * 6, [r.error for r in records]
    assert workers.took_part("one") and workers.took_part("two")

    # The producer process: no GENQ_ARTIFACT_DIR, a directory of its own; the store's settings let it
    # presign, and the URLs need nothing more.
    env = {**workers.env, **s3.env(prefix)}
    env.pop("GENQ_ARTIFACT_DIR")
    done = subprocess.run([sys.executable, "-c", PRODUCER_SCRIPT], input=json.dumps(job_ids), env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    fetched = json.loads(done.stdout)
    for record in records:
        expected = served_sha256(record, sizes, sim)
        assert [sha for _, _, sha, _ in fetched[record.id]] == expected
        assert [o.sha256 for o in record.outputs] == expected
        assert [o.bytes for o in record.outputs] == [n for _, n, _, _ in fetched[record.id]]
        for output, (_, _, _, content_type) in zip(record.outputs, fetched[record.id], strict=True):
            assert output.store_url == f"s3://{s3.bucket}/{output.path}"
            assert output.path.startswith(f"{prefix}/{record.id}/")
            assert output.content_type == content_type
            assert output.download_url is None  # never stored: only a reader's copy has one
    assert {o.content_type for o in records[5].outputs} == {"application/zip"}

    # `genq get` fetches a job's outputs from the bucket into a directory, checked against the record.
    got = subprocess.run([sys.executable, "-m", "genq", "get", records[5].id, "-o", str(tmp_path / "got")],
                         env=env, capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert got.returncode == 0, got.stderr
    paths = [Path(line) for line in got.stdout.split()]
    assert [p.name for p in paths] == ["stems_0.zip", "stems_1.zip"]
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths] == [
        o.sha256 for o in records[5].outputs
    ]
    assert len(keys_under(s3, prefix + "/")) == 2 + 2 + 2 + 2
    assert uploads_under(s3, prefix + "/") == []
    assert not list((tmp_path / "disk-one").rglob("*.mp4")) and not list(
        (tmp_path / "disk-two").rglob("*.mp4")
    )


def test_a_worker_sigkilled_mid_upload_leaves_one_object_and_the_job_succeeds(
    workers: Workers, own_redis: EmbeddedRedis, sim: Sim, s3: S3Server
) -> None:
    sim.configure("syncso", output_bytes=400 * MIB)
    prefix = f"killed-{uuid.uuid4().hex[:8]}"
    store = {**s3.env(prefix), "GENQ_OUTPUTS__PART_BYTES": str(5 * MIB)}
    doomed = workers("doomed", **store)
    producer = Producer(own_redis.url)
    job_id = producer.submit(LIPSYNC)
    until(lambda: bool(uploads_under(s3, prefix + "/")), 60, "the output's multipart upload to begin")
    stop(doomed, kill=True)
    assert keys_under(s3, prefix + "/") == []  # killed mid-upload: nothing stored yet
    assert len(uploads_under(s3, prefix + "/")) == 1

    workers("survivor", **store)
    record = producer.wait(job_id, timeout_s=120)
    assert record.status is JobStatus.SUCCEEDED, record.error
    (output,) = record.outputs
    assert keys_under(s3, prefix + "/") == [output.path]
    assert uploads_under(s3, prefix + "/") == []  # the dead run's upload was aborted
    assert output.bytes == 400 * MIB
    assert workers.took_part("survivor", "genq.syncso.download") >= 1


@pytest.mark.parametrize(
    "case, expected",
    [
        ("wrong_secret", ("refused genq's credentials", False)),
        ("missing_bucket", ("has no bucket 'no-such-bucket'", False)),
        ("unavailable", ("output store unavailable", True)),
    ],
)
def test_a_store_that_refuses_or_fails_ends_the_job_with_a_clear_error_and_no_traceback(  # noqa: PLR0917
    workers: Workers, own_redis: EmbeddedRedis, s3: S3Server, unavailable: str, case: str,
    expected: tuple[str, bool],
) -> None:  # fmt: skip
    store = s3.env("errors")
    if case == "wrong_secret":
        store["GENQ_OUTPUTS__SECRET_ACCESS_KEY"] = "wrong-secret-0123456789abcdef"
    elif case == "missing_bucket":
        store["GENQ_OUTPUTS__URL"] = "s3://no-such-bucket/errors"
    else:
        store["GENQ_OUTPUTS__ENDPOINT_URL"] = unavailable
    workers("w", GENQ_RETRY__MAX_RETRIES="1", **store)
    producer = Producer(own_redis.url)
    record = producer.wait(producer.submit(LIPSYNC), timeout_s=60)
    assert record.status is JobStatus.FAILED
    assert record.error is not None
    message, retryable = expected
    assert (record.error.stage, record.error.provider, record.error.retryable) == (
        "download",
        "store",
        retryable,
    )
    assert message in record.error.message
    log = workers.log_path("w").read_text()
    assert "Traceback" not in log
    assert "wrong-secret-0123456789abcdef" not in log + record.model_dump_json()
    assert s3.secret_access_key not in log + record.model_dump_json()
