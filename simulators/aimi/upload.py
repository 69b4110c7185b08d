"""One chunked video upload (`sync_upload_init` → `sync_upload_chunk` (n times) → `sync_upload_complete`).

Chunk bytes stay in memory until complete joins them, hashes the whole and drops them. Every chunk
request is kept as a `ChunkRequest` with monotonic start and end times, so tests can see overlap.
A chunk counts as acknowledged once its 200 was sent to a client still connected; the same index
arriving again after that is a resend, while a retry of a request that never answered is not.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from starlette.requests import Request

from simulators.aimi.responses import Rejected
from simulators.media import MediaInput


class ChunkOutcome(StrEnum):
    IN_PROGRESS = "in_progress"
    ACKED = "acked"  # stored and answered 200
    UNANSWERED = "unanswered"  # stored, but the client left before its answer
    TOO_LARGE = "too_large"  # refused with 413, nothing stored
    ABORTED = "aborted"  # the client left while sending the body, nothing stored
    REFUSED = "refused"  # the upload was completed meanwhile, nothing stored


@dataclass
class ChunkRequest:
    index: int
    started_at: float  # time.monotonic()
    ended_at: float | None = None
    size: int | None = None  # bytes stored
    outcome: ChunkOutcome = ChunkOutcome.IN_PROGRESS

    def view(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "size": self.size,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "outcome": self.outcome.value,
        }


@dataclass
class Upload:
    taskid: str
    file_name: str
    file_size: int
    file_type: str
    created_at: float
    chunks: dict[int, bytes] = field(default_factory=dict)  # index -> latest bytes, until complete
    acked: set[int] = field(default_factory=set)
    requests: list[ChunkRequest] = field(default_factory=list)
    completed: bool = False
    total_chunks: int | None = None
    sha256: str | None = None
    analysis: dict[str, Any] | None = None
    audio_analysis: dict[str, Any] | None = None

    def complete(self, total_chunks: int) -> None:
        """Join chunks 0..total_chunks-1 and hash them; raise Rejected naming every problem found."""
        missing = [i for i in range(total_chunks) if i not in self.chunks]
        extra = sorted(i for i in self.chunks if i >= total_chunks)
        size = sum(len(data) for i, data in self.chunks.items() if i < total_chunks)
        problems = []
        if missing:
            problems.append(f"missing chunk indices: {missing}")
        if extra:
            problems.append(f"chunk indices beyond total_chunks {total_chunks}: {extra}")
        if size != self.file_size:
            problems.append(f"size mismatch: chunks hold {size} bytes, file_size is {self.file_size}")
        if problems:
            raise Rejected("; ".join(problems))
        digest = hashlib.sha256()
        for index in range(total_chunks):
            digest.update(self.chunks[index])
        self.sha256, self.total_chunks, self.completed = digest.hexdigest(), total_chunks, True
        self.chunks.clear()

    def result(self) -> dict[str, Any]:
        """The `sync_upload_complete` body [INF]."""
        return {"taskid": self.taskid, "status": "uploaded", "size": self.file_size, "sha256": self.sha256}

    def media(self) -> MediaInput:
        """The video as an execution's input: the SHA-256 and size of chunks 0..total-1 joined in order
        (both None until the upload completes)."""
        size = self.file_size if self.completed else None
        return MediaInput("upload", self.sha256, size, file_name=self.file_name, ref=self.taskid)

    def view(self, executions: list[str] | None = None) -> dict[str, Any]:
        """The control view (`GET /_sim/aimi/uploads`); `executions` are the execids run on it."""
        return {
            "file_name": self.file_name,
            "file_size": self.file_size,
            "file_type": self.file_type,
            "created_at": self.created_at,
            "chunks": [request.view() for request in self.requests],
            "completed": self.completed,
            "total_chunks": self.total_chunks,
            "sha256": self.sha256,
            "analysed": self.analysis is not None,
            "audio_analysed": self.audio_analysis is not None,
            "executions": executions or [],
        }


def parse_init(body: dict[str, Any]) -> tuple[str, int, str]:
    """(file_name, file_size, file_type) of a `sync_upload_init` body, or Rejected."""
    name, size, kind = body.get("file_name"), body.get("file_size"), body.get("file_type")
    if not isinstance(name, str) or not name:
        raise Rejected("file_name must be a non-empty string")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise Rejected("file_size must be a positive integer")
    if not isinstance(kind, str) or not kind:
        raise Rejected("file_type must be a non-empty string")
    return name, size, kind


def chunk_headers(request: Request) -> tuple[str, int]:
    """(taskid, chunk index) from `X-Upload-Id` and `X-Chunk-Index`, or Rejected."""
    taskid = request.headers.get("x-upload-id")
    raw_index = request.headers.get("x-chunk-index", "")
    if not taskid:
        raise Rejected("X-Upload-Id header is required")
    if not (raw_index.isascii() and raw_index.isdigit()):
        raise Rejected("X-Chunk-Index header must be a 0-based integer")
    return taskid, int(raw_index)


async def read_capped(request: Request, cap: int) -> bytes | None:
    """The body, or None as soon as it passes `cap` bytes (the rest is never buffered).

    Raises starlette's ClientDisconnect when the client leaves mid-body.
    """
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > cap:
            return None
    return bytes(body)
