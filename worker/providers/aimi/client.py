"""Aimi Sync client (Surface A, reference 1.5): chunked upload, analysis, plan, execution, status, output.

Every API call is a POST with ``Authorization: Bearer <token>``, added per request and never set on the
``httpx.Client``: downloads are built bare, so no token can reach a storage host. Source videos are not
read here: ``source.py`` reads them through the egress policy, on a connection pool of their own. Errors
come from ``models.raise_for_response``; only fast connection failures are retried here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar

import httpx
from pydantic import BaseModel, SecretStr, TypeAdapter

from worker.providers.aimi.models import (
    PROVIDER,
    AnalysisReply,
    AudioAnalysisReply,
    ChunkAck,
    Execution,
    PlanReply,
    Started,
    UploadDone,
    UploadTicket,
    error_code,
    raise_for_response,
)
from worker.providers.http import (
    ByteBudget,
    Download,
    make_http_client,
    parse_body,
    send_with_connect_retry,
    stream_to_file,
)

if TYPE_CHECKING:
    import redis

    from worker.providers.aimi.settings import AimiSettings

MAX_CHUNK_BYTES: Final = 30_000_000  # "30 MB", read as the smaller decimal figure
JSON_TYPE: Final = "application/json"

# Every call is a POST to one of these Surface A paths (reference 1.1, 1.5): a correction is one line.
ENDPOINTS: Final[Mapping[str, str]] = {
    "upload_init": "/sync_upload_init",  # [DOC] named by the guide
    "upload_chunk": "/sync_upload_chunk",  # [DOC] named by the guide; its headers are Surface B's [DOC]
    "upload_complete": "/sync_upload_complete",  # [DOC] named by the guide
    "video_analysis": "/sync_video_analysis",  # [INF] endpoint page 4's name not retrieved
    "audio_analysis": "/sync_audio_analysis",  # [INF] on neither surface
    "generate": "/sync_generate",  # [DOC] endpoint page 5
    "execute": "/sync_execute",  # [DOC] named by the guide; endpoint page 6 not retrieved
    "status": "/sync_status",  # [DOC] endpoint page 7
}

_ModelT = TypeVar("_ModelT", bound=BaseModel)


def _json_bytes(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _exactly(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    # A body that disagrees with its Content-Length is our bug: fail before the wire sees it.
    count = 0
    for chunk in chunks:
        count += len(chunk)
        if count > size:
            raise ValueError(f"chunk body exceeds its declared size of {size} bytes")
        yield chunk
    if count != size:
        raise ValueError(f"chunk body has {count} bytes, declared {size}")


class AimiClient:
    """Typed calls to the Aimi Sync API over an injected ``httpx.Client`` (base URL and timeouts set).

    Only fast connection failures are retried here; everything else raises from the shared tree.
    """

    def __init__(
        self, http: httpx.Client, api_key: SecretStr, *, max_chunk_bytes: int = MAX_CHUNK_BYTES
    ) -> None:
        self._http = http
        self._api_key = api_key
        self._max_chunk_bytes = max_chunk_bytes
        self.provider = PROVIDER

    @classmethod
    def from_settings(cls, settings: AimiSettings, redis_client: redis.Redis) -> Self:
        """A client for ``settings.base_url``; ``redis_client`` is unused (Aimi tokens need no sharing)."""
        http = make_http_client(
            settings.url,
            connect_timeout_s=settings.http.connect_timeout_s,
            read_timeout_s=settings.http.read_timeout_s,
            headers={"accept": JSON_TYPE, "user-agent": "genq"},
            provider=PROVIDER,
            error_code=error_code,
        )
        return cls(http, settings.api_key, max_chunk_bytes=settings.max_chunk_bytes)

    def __repr__(self) -> str:
        return f"AimiClient(base_url={str(self._http.base_url)!r})"

    def close(self) -> None:
        """Close the underlying HTTP client and its connections."""
        self._http.close()

    def init_upload(self, file_name: str, file_size: int, file_type: str) -> UploadTicket:
        """``sync_upload_init``: start an upload; the ticket's ``taskid`` names the video from now on."""
        body = {"file_name": file_name, "file_size": file_size, "file_type": file_type}
        return self._parse(self._call("upload_init", json_body=body), UploadTicket)

    def upload_chunk(self, taskid: str, index: int, content: bytes | Iterable[bytes], size: int) -> ChunkAck:
        """``sync_upload_chunk``: chunk ``index`` (0-based) of ``size`` bytes, at most ``max_chunk_bytes``.

        An iterable ``content`` (e.g. from ``fetch_range``) is streamed as it comes, with a fixed
        ``Content-Length``; it must yield exactly ``size`` bytes, or ``ValueError`` is raised.
        """
        if index < 0 or not 0 < size <= self._max_chunk_bytes:
            raise ValueError(f"chunk {index} of {size} bytes: need index >= 0, 1..{self._max_chunk_bytes} B")
        if isinstance(content, bytes) and len(content) != size:
            raise ValueError(f"chunk body has {len(content)} bytes, declared {size}")
        body = content if isinstance(content, bytes) else _exactly(content, size)
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
            "X-Upload-Id": taskid,
            "X-Chunk-Index": str(index),
        }
        return self._parse(self._call("upload_chunk", content=body, headers=headers), ChunkAck)

    def complete_upload(self, taskid: str, total_chunks: int) -> UploadDone:
        """``sync_upload_complete``: join the ``total_chunks`` chunks and prepare the video for analysis."""
        body = {"taskid": taskid, "total_chunks": total_chunks}
        return self._parse(self._call("upload_complete", json_body=body), UploadDone)

    def analyze_video(self, taskid: str) -> dict[str, Any]:
        """``sync_video_analysis``: the ``analysis`` object, to send back with ``generate_plan``."""
        response = self._call("video_analysis", json_body={"taskid": taskid})
        return self._parse(response, AnalysisReply).analysis

    def analyze_audio(self, taskid: str) -> dict[str, Any]:
        """``sync_audio_analysis``: the ``audio_analysis`` object; needed only to keep the video's audio."""
        response = self._call("audio_analysis", json_body={"taskid": taskid})
        return self._parse(response, AudioAnalysisReply).audio_analysis

    def generate_plan(
        self,
        taskid: str,
        analysis: dict[str, Any],
        options: Mapping[str, Any],
        audio_analysis: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``sync_generate``: the plan (opaque JSON with ``sections``) for the analysed video.

        Sent as multipart/form-data: file parts ``analysis`` (and ``audio_analysis``) of type
        ``application/json``, and ``payload``, the JSON text of ``{taskid, **options}``: a part without a
        filename (a form field to the server) that still says ``application/json``. ``None`` options are
        left out (no ``genre``: Aimi picks one).
        """
        if "taskid" in options:
            raise ValueError("options must not carry taskid")
        payload = {"taskid": taskid, **{key: value for key, value in options.items() if value is not None}}
        parts: dict[str, tuple[str | None, bytes, str]] = {
            "analysis": ("analysis.json", _json_bytes(analysis), JSON_TYPE)
        }
        if audio_analysis is not None:
            parts["audio_analysis"] = ("audio_analysis.json", _json_bytes(audio_analysis), JSON_TYPE)
        parts["payload"] = (None, _json_bytes(payload), JSON_TYPE)
        return self._parse(self._call("generate", files=parts), PlanReply).plan

    def execute(self, taskid: str, plan: Mapping[str, Any]) -> str:
        """``sync_execute``: start rendering ``plan``; returns the ``execid``. Not idempotent: a retry
        after a lost answer starts a second execution."""
        response = self._call("execute", json_body={"taskid": taskid, "plan": dict(plan)})
        return self._parse(response, Started).execid

    def status(self, execid: str) -> Execution:
        """``sync_status`` (a POST). An unknown or expired ``execid`` is status ``inactive``, not an error.
        Aimi asks for at most one poll per execution every 5 s; the caller keeps that pace."""
        return self._parse(self._call("status", json_body={"execid": execid}), Execution)

    def download(self, url: str, dest: Path, *, max_bytes: int, budget: ByteBudget | None = None) -> Download:
        """Stream a finished execution's ``url`` to ``dest`` atomically; no token goes to the storage host."""
        return stream_to_file(
            self._http, url, dest, max_bytes=max_bytes, provider=self.provider, budget=budget
        )

    def _call(
        self,
        name: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        content: bytes | Iterable[bytes] | None = None,
        files: Mapping[str, tuple[str | None, bytes, str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        token = self._api_key.get_secret_value()
        request = self._http.build_request(
            "POST",
            ENDPOINTS[name],
            json=json_body,
            content=content,
            files=files,
            headers={**(headers or {}), "Authorization": f"Bearer {token}"},
        )
        response = send_with_connect_retry(self._http, request, provider=self.provider)
        raise_for_response(response, secrets=[token])
        return response

    def _parse(self, response: httpx.Response, model: type[_ModelT]) -> _ModelT:
        return parse_body(response, TypeAdapter(model), provider=self.provider)
