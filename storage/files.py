"""The file store: outputs under a directory of the worker's own disk (``GENQ_ARTIFACT_DIR`` by default),
``<dir>/<job id>/<name>``, as genq always wrote them. A reader on another host cannot reach them: use the
S3 store for that.

An output is written to ``<name>.part``, fsynced and renamed, so a file under its name is always whole.
The sweep removes job directories older than the retention and ``.part`` files a dead worker left."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final
from urllib.parse import unquote, urlsplit

from storage.base import CHUNK_BYTES, OutputStore, Sink, Stored, StoreRefused, content_type

DAY_S: Final = 86400.0
# A job's directory is named by its id (28 hex characters): the sweep touches nothing else.
_JOB_DIR: Final = re.compile(r"^[0-9a-f]{28}$")


class AtomicFile:
    """A sink that writes ``dest`` whole or not at all; ``commit`` returns the file's path."""

    def __init__(self, dest: Path) -> None:
        self.dest, self.part = dest, dest.with_suffix(dest.suffix + ".part")
        self._fh: BinaryIO | None = None

    def start(self, declared_bytes: int | None) -> None:
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.part.open("wb")

    def write(self, chunk: bytes) -> None:
        assert self._fh is not None
        self._fh.write(chunk)

    def commit(self, count_bytes: int, sha256: str) -> Path:
        assert self._fh is not None
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.part, self.dest)
        fsync_dir(self.dest.parent)
        return self.dest

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
        self.part.unlink(missing_ok=True)


class _StoredFile:
    def __init__(self, dest: Path) -> None:
        self.file = AtomicFile(dest)

    def start(self, declared_bytes: int | None) -> None:
        self.file.start(declared_bytes)

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)

    def commit(self, count_bytes: int, sha256: str) -> Stored:
        return _stored(self.file.commit(count_bytes, sha256), count_bytes, sha256)

    def abort(self) -> None:
        self.file.abort()


class FileStore(OutputStore):
    scheme = "file"

    def __init__(self, directory: Path, *, retention_days: int = 0, abort_incomplete_days: int = 1) -> None:
        self.directory = directory
        self.retention_days, self.abort_incomplete_days = retention_days, abort_incomplete_days

    @property
    def name(self) -> str:
        return f"file://{socket.gethostname()}{self.directory.resolve()}"

    def _path(self, key: str) -> Path:
        return self.directory / key

    def stored(self, key: str) -> Stored | None:
        path = self._path(key)
        if not path.is_file():
            return None
        digest, count = hashlib.sha256(), 0
        with path.open("rb") as fh:
            while chunk := fh.read(CHUNK_BYTES):
                digest.update(chunk)
                count += len(chunk)
        return _stored(path, count, digest.hexdigest())

    def sink(self, key: str) -> Sink[Stored]:
        return _StoredFile(self._path(key))

    def presign(self, store_url: str) -> str | None:
        return None

    def read(self, store_url: str) -> Iterator[bytes]:
        path = local_path(store_url)
        if not path.is_file():
            raise StoreRefused(
                f"{path} is not on this host: a file store's outputs stay on the disk of the worker that "
                "wrote them (GENQ_OUTPUTS__URL=s3://… makes them reachable from anywhere)",
                code="not_on_this_host",
            )
        with path.open("rb") as fh:
            while chunk := fh.read(CHUNK_BYTES):
                yield chunk

    def ensure_retention(self) -> bool:
        return self.retention_days == 0

    def sweep(self, now_s: float) -> int:
        """Remove job directories last changed more than the retention ago, and ``.part`` files older than
        ``abort_incomplete_days``."""
        removed = 0
        if not self.directory.is_dir():
            return 0
        for entry in self.directory.iterdir():
            if not entry.is_dir() or not _JOB_DIR.match(entry.name):
                continue
            with contextlib.suppress(OSError):
                if self.retention_days and entry.stat().st_mtime < now_s - self.retention_days * DAY_S:
                    shutil.rmtree(entry)
                    removed += 1
                    continue
                for part in entry.glob("*.part"):
                    if part.stat().st_mtime < now_s - self.abort_incomplete_days * DAY_S:
                        part.unlink()
                        removed += 1
        return removed


def _stored(path: Path, count_bytes: int, sha256: str) -> Stored:
    resolved = path.resolve()
    return Stored(path=str(resolved), store_url=resolved.as_uri(), bytes=count_bytes, sha256=sha256,
                  content_type=content_type(path.name))  # fmt: skip


def local_path(store_url: str) -> Path:
    return Path(unquote(urlsplit(store_url).path))


def fsync_dir(directory: Path) -> None:
    # Makes a rename itself durable; not possible on every platform, and never worth failing for.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
