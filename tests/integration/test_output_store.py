"""The output stores on their own: the S3 store against a real S3 server (SeaweedFS: signatures checked,
multipart uploads, If-None-Match, presigned URLs, lifecycle rules), the file store on a directory."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from pathlib import Path

import httpx
import pytest

from genq.s3_server import S3Server
from storage import FileStore, StoreRefused, StoreUnavailable
from storage.s3 import S3Store
from tests.integration.conftest import keys_under, output_settings, s3_client_for, uploads_under
from worker.output_store import store_error
from worker.providers.errors import OutputStoreFailed, OutputStoreUnavailable

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def store_of(s3: S3Server, prefix: str, **changes: object) -> S3Store:
    return S3Store(output_settings(s3, prefix, part_bytes=5 * MIB, **changes))


def put(store: S3Store | FileStore, key: str, data: bytes, chunk: int = MIB) -> object:
    sink = store.sink(key)
    sink.start(len(data))
    for start in range(0, len(data), chunk):
        sink.write(data[start : start + chunk])
    return sink.commit(len(data), hashlib.sha256(data).hexdigest())


@pytest.mark.slow
def test_outputs_small_and_multipart_are_stored_checked_and_presigned(s3: S3Server, prefix: str) -> None:
    store = store_of(s3, prefix)
    small, large = os.urandom(1000), os.urandom(12 * MIB + 5)
    put(store, "job/small.mp4", small)
    stored = put(store, "job/large.zip", large)
    assert keys_under(s3, prefix) == [f"{prefix}/job/large.zip", f"{prefix}/job/small.mp4"]
    assert uploads_under(s3, prefix) == []
    assert stored == store.stored("job/large.zip")
    found = store.stored("job/large.zip")
    assert found is not None
    assert (found.bytes, found.sha256) == (len(large), hashlib.sha256(large).hexdigest())
    assert found.store_url == f"s3://{s3.bucket}/{prefix}/job/large.zip"
    assert found.content_type == "application/zip"
    head = s3_client_for(s3).head_object(Bucket=s3.bucket, Key=f"{prefix}/job/small.mp4")
    assert head["ContentType"] == "video/mp4"

    url = store.presign(found.store_url)
    assert url is not None and s3.secret_access_key not in url
    assert hashlib.sha256(httpx.get(url).content).hexdigest() == found.sha256  # no credentials
    assert httpx.get(url.replace("X-Amz-Signature=", "X-Amz-Signature=0")).status_code == 403
    assert httpx.get(f"{s3.endpoint_url}/{s3.bucket}/{prefix}/job/large.zip").status_code == 403
    assert b"".join(store.read(found.store_url)) == large


def test_a_second_store_of_a_key_keeps_the_first_and_another_output_is_refused(
    s3: S3Server, prefix: str
) -> None:
    store = store_of(s3, prefix)
    data = os.urandom(6 * MIB)
    first = put(store, "job/a.mp4", data)
    assert put(store_of(s3, prefix), "job/a.mp4", data) == first  # If-None-Match: the first one stays
    with pytest.raises(StoreRefused, match="already holds another output"):
        put(store, "job/a.mp4", os.urandom(6 * MIB))
    assert keys_under(s3, prefix) == [f"{prefix}/job/a.mp4"]
    assert uploads_under(s3, prefix) == []
    assert b"".join(store.read(f"s3://{s3.bucket}/{prefix}/job/a.mp4")) == data


@pytest.mark.slow
def test_an_aborted_upload_leaves_nothing_and_a_dead_runs_upload_is_aborted_by_the_next(
    s3: S3Server, prefix: str
) -> None:
    store = store_of(s3, prefix)
    sink = store.sink("job/a.mp4")
    sink.start(None)
    sink.write(os.urandom(6 * MIB))
    assert uploads_under(s3, prefix) == [f"{prefix}/job/a.mp4"]
    sink.abort()
    assert (keys_under(s3, prefix), uploads_under(s3, prefix)) == ([], [])

    # A run that died mid-upload leaves its multipart upload; the next run of the key aborts it.
    s3_client_for(s3).create_multipart_upload(Bucket=s3.bucket, Key=f"{prefix}/job/a.mp4")
    put(store, "job/a.mp4", os.urandom(7 * MIB))
    assert (keys_under(s3, prefix), uploads_under(s3, prefix)) == ([f"{prefix}/job/a.mp4"], [])


def test_wrong_credentials_and_a_missing_bucket_are_clear_permanent_errors(s3: S3Server, prefix: str) -> None:
    wrong = store_of(s3, prefix, secret_access_key="not-the-secret-0123456789")
    with pytest.raises(StoreRefused) as info:
        wrong.stored("job/a.mp4")
    assert "refused genq's credentials" in info.value.message
    assert "not-the-secret" not in str(info.value) and s3.secret_access_key not in str(info.value)
    error = store_error(info.value)
    assert isinstance(error, OutputStoreFailed) and error.provider == "store" and not error.retryable

    missing = S3Store(output_settings(s3, prefix).model_copy(update={"url": "s3://no-such-bucket/x"}))
    with pytest.raises(StoreRefused, match="has no bucket 'no-such-bucket'"):
        missing.sink("job/a.mp4")


def test_a_store_answering_503_is_a_retryable_error(s3: S3Server, prefix: str, unavailable: str) -> None:
    store = store_of(s3, prefix, endpoint_url=unavailable)
    with pytest.raises(StoreUnavailable) as info:
        store.stored("job/a.mp4")
    error = store_error(info.value)
    assert isinstance(error, OutputStoreUnavailable) and error.retryable
    assert "unavailable" in error.message and s3.secret_access_key not in error.message


def test_retention_is_a_lifecycle_rule_beside_others_and_the_sweep_does_the_same(
    s3: S3Server, prefix: str
) -> None:
    client = s3_client_for(s3)
    other = {
        "ID": "someone-else",
        "Filter": {"Prefix": "theirs/"},
        "Status": "Enabled",
        "Expiration": {"Days": 30},
    }
    client.put_bucket_lifecycle_configuration(Bucket=s3.bucket, LifecycleConfiguration={"Rules": [other]})
    store = store_of(s3, prefix, retention_days=7, abort_incomplete_days=1)
    assert store.ensure_retention()
    assert store.ensure_retention()  # a second worker finds the rule in place
    rules = {r["ID"]: r for r in client.get_bucket_lifecycle_configuration(Bucket=s3.bucket)["Rules"]}
    assert rules["someone-else"]["Filter"] == {"Prefix": "theirs/"}
    ours = rules[f"genq-outputs-{prefix}"]
    assert ours["Filter"] == {"Prefix": f"{prefix}/"} and ours["Expiration"] == {"Days": 7}
    assert ours["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}

    put(store, "job/a.mp4", b"old output")
    client.create_multipart_upload(Bucket=s3.bucket, Key=f"{prefix}/job/b.mp4")
    assert store.sweep(time.time()) == 0  # nothing is old yet
    assert store.sweep(time.time() + 8 * 86400) == 2
    assert (keys_under(s3, prefix), uploads_under(s3, prefix)) == ([], [])


def test_the_file_store_stores_once_and_sweeps_old_jobs_and_parts(tmp_path: Path) -> None:
    store = FileStore(tmp_path, retention_days=7, abort_incomplete_days=1)
    job, other = "0" * 28, "1" * 28
    stored = put(store, f"{job}/a.mp4", b"video")
    assert store.stored(f"{job}/a.mp4") == stored
    assert store.stored(f"{job}/b.mp4") is None
    assert store.presign(stored.store_url) is None  # type: ignore[attr-defined]
    (tmp_path / other).mkdir()
    (tmp_path / other / "b.mp4.part").write_bytes(b"half")
    (tmp_path / "not-a-job").mkdir()
    day_ago = time.time() - 2 * 86400
    os.utime(tmp_path / other / "b.mp4.part", (day_ago, day_ago))
    assert store.sweep(time.time()) == 1
    assert not (tmp_path / other / "b.mp4.part").exists()
    assert store.sweep(time.time() + 8 * 86400) == 2  # both job directories, nothing else
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-job"]
