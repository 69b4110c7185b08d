"""What every output store is: where a job's outputs go once finished, and how anyone reads them back.

A store writes an output from a stream (``Sink``), told the bytes as they arrive; it makes the output
visible only when ``commit`` is called with its size and SHA-256, and never half. ``stored`` finds an
output stored before (a download stage run again after its worker died), so nothing is stored twice.
Readers (Producer, ``genq get``) use ``presign`` and ``read`` with the output's store URL alone.

Implementations: ``storage.files.FileStore`` (a directory, the default) and ``storage.s3.S3Store``.
Their failures are ``StoreError``s, which the workers turn into job errors and retries
(``worker.output_store``); no message carries a credential.
"""

from __future__ import annotations

import mimetypes
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, Final, Protocol, TypeVar

from schemas.records import Output

T_co = TypeVar("T_co", covariant=True)
CHUNK_BYTES: Final = 1024 * 1024
# genq picks every output's suffix itself; these are the content types it records for them.
CONTENT_TYPES: Final = {".mp4": "video/mp4", ".mov": "video/quicktime", ".zip": "application/zip"}


class Sink(Protocol[T_co]):
    """Where a streamed output goes. ``start`` first (with the declared length, if any), then ``write``
    for each chunk, then ``commit`` once the stream ended and was checked; ``abort`` on any failure."""

    def start(self, declared_bytes: int | None) -> None: ...

    def write(self, chunk: bytes) -> None: ...

    def commit(self, count_bytes: int, sha256: str) -> T_co: ...

    def abort(self) -> None: ...


def content_type(key: str) -> str:
    suffix = key[key.rfind(".") :] if "." in key.rsplit("/", 1)[-1] else ""
    return CONTENT_TYPES.get(suffix.lower()) or mimetypes.guess_type(key)[0] or "application/octet-stream"


@dataclass(frozen=True)
class Stored:
    """An output in the store: ``path`` is a file store's local path or an S3 store's key, ``store_url``
    names it for any reader (``file:///…``, ``s3://bucket/key``)."""

    path: str
    store_url: str
    bytes: int
    sha256: str
    content_type: str

    def output(self, duration_s: float | None = None) -> Output:
        return Output(path=self.path, bytes=self.bytes, sha256=self.sha256, duration_s=duration_s,
                      store_url=self.store_url, content_type=self.content_type)  # fmt: skip


class StoreError(Exception):
    """The store failed or refused. ``retryable``: the same call may succeed later (a 5xx, a network
    failure); otherwise it needs an operator (credentials refused, no such bucket)."""

    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, code: str | None = None, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.status_code = message, code, status_code


class StoreUnavailable(StoreError):
    retryable = True


class StoreRefused(StoreError):
    """Credentials refused, a missing bucket, an output that is not where its URL says."""


class OutputStore(ABC):
    """One store, as its settings name it. Thread-safe."""

    scheme: ClassVar[str]

    @abstractmethod
    def stored(self, key: str) -> Stored | None:
        """The output at ``key`` (``<job id>/<name>``) if it was stored before, its size and SHA-256 read
        back from the store; None if it was not."""

    @abstractmethod
    def sink(self, key: str) -> Sink[Stored]:
        """A sink that stores one output at ``key``, created only if nothing is there yet."""

    @abstractmethod
    def presign(self, store_url: str) -> str | None:
        """A short-lived URL that GETs the output with no credentials (None for a local file)."""

    @abstractmethod
    def read(self, store_url: str) -> Iterator[bytes]:
        """The output's bytes, streamed."""

    @abstractmethod
    def ensure_retention(self) -> bool:
        """Put the store's own expiry in place where it takes one; True if it does (no sweep needed)."""

    @abstractmethod
    def sweep(self, now_s: float) -> int:
        """Delete outputs older than the retention and abort incomplete uploads; how many went."""

    @property
    @abstractmethod
    def name(self) -> str:
        """Names the store in logs and sweep leases, without credentials."""
