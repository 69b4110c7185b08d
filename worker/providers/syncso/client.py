"""sync.so v2 lipsync API client: generations (create, get, list, cost estimate), models, the media
library (upload, register, list, get assets), batches (create, get, list, results) and downloads.

Every non-2xx response goes through ``raise_for_response``, the one place sync.so statuses and error
bodies become the shared error tree. Responses are parsed leniently: new fields are ignored and
unknown statuses still parse (as plain strings), so an API change never fails a job by itself.
"""

from __future__ import annotations

import json
import mimetypes
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from enum import StrEnum, nonmember
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter, ValidationError, model_validator

from storage import Sink
from worker.providers.errors import (
    AuthFailed,
    ConcurrencyLimited,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    credentials_refused,
)
from worker.providers.http import (
    ByteBudget,
    build_error,
    error_class_for_status,
    make_http_client,
    parse_body,
    redact,
    request_secrets,
    send_with_connect_retry,
    snippet,
    stream_into,
)
from worker.providers.syncso.resources import (
    Asset,
    AssetPage,
    Batch,
    BatchRow,
    BatchValidated,
    CostEstimate,
    GenerationCost,
    Lenient,
    UploadTicket,
)
from worker.providers.syncso.settings import SyncSoSettings

PROVIDER: Final = "syncso"
API_KEY_HEADER: Final = "x-api-key"
FILE_FIELDS: Final = frozenset({"video", "audio", "image"})
# Documented format of the Idempotency-Key header; anything else is a 400 INVALID_IDEMPOTENCY_KEY.
_IDEMPOTENCY_KEY_RE: Final = re.compile(r"[A-Za-z0-9._~-]{1,128}")
_CONCURRENCY_CODES: Final = frozenset({"concurrency_limit_reached", "batch_concurrency_limit_reached"})

_ModelT = TypeVar("_ModelT")
_SinkT = TypeVar("_SinkT")


class GenerationStatus(StrEnum):
    """Documented generation statuses. ``Generation.status`` stays a ``str``: compare against these."""

    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    REJECTED = "REJECTED"
    # Listed only by the older docs; harmless to know.
    CANCELED = "CANCELED"
    TIMED_OUT = "TIMED_OUT"

    TERMINAL = nonmember(frozenset({COMPLETED, FAILED, REJECTED, CANCELED, TIMED_OUT}))
    # What the account's concurrency limit counts.
    IN_FLIGHT = nonmember(frozenset({PENDING, PROCESSING}))


# Other spellings of a wire key. ``outputMediaUrl``: newer tooling (``outputUrl`` is what REST sends);
# ``error_code``: webhooks and the SDK (REST says ``errorCode``); snake_case: construction by name.
_SPELLINGS: Final = {"outputUrl": ("outputMediaUrl", "output_url"), "errorCode": ("error_code",)}


class Generation(Lenient):
    """A generation as the API returns it (camelCase on the wire)."""

    id: str
    status: str
    created_at: datetime | None = None
    model: str | None = None
    output_url: str | None = None
    output_duration: float | None = None
    error: str | None = None
    error_code: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _merge_spellings(cls, data: Any) -> Any:
        # Either spelling may come, or both with one null: take the first that has a value.
        if not isinstance(data, dict):
            return data
        merged = dict(data)
        for key, fallbacks in _SPELLINGS.items():
            if merged.get(key) is None:
                found = next((data[other] for other in fallbacks if data.get(other) is not None), None)
                if found is not None:
                    merged[key] = found
        return merged

    @property
    def is_terminal(self) -> bool:
        """True once the status can no longer change; unknown statuses count as still running."""
        return self.status in GenerationStatus.TERMINAL

    @property
    def is_success(self) -> bool:
        """True when the generation completed (the API then sets ``output_url``)."""
        return self.status == GenerationStatus.COMPLETED


class ModelInfo(Lenient):
    """One entry of ``GET /v2/models``."""

    id: str
    name: str | None = None
    type: str | None = None
    version: str | None = None
    description: str | None = None


_GENERATION: Final = TypeAdapter(Generation)
_GENERATIONS: Final = TypeAdapter(list[Generation])
_MODELS: Final = TypeAdapter(list[ModelInfo])
_ESTIMATES: Final = TypeAdapter(list[CostEstimate])
_COST: Final = TypeAdapter(GenerationCost)
_TICKET: Final = TypeAdapter(UploadTicket)
_ASSET: Final = TypeAdapter(Asset)
_ASSET_PAGE: Final = TypeAdapter(AssetPage)
_BATCH: Final = TypeAdapter(Batch)
_BATCHES: Final = TypeAdapter(list[Batch])
_BATCH_CREATED: Final = TypeAdapter(Batch | BatchValidated)
_BATCH_ROW: Final = TypeAdapter(BatchRow)
# A batch's results file: one short row per generation, at most 500 of them.
MAX_RESULTS_BYTES: Final = 16 * 1024 * 1024


def raise_for_response(response: httpx.Response, *, provider: str = PROVIDER, api: bool = True) -> None:
    """Raise the shared-tree error for a non-2xx sync.so response; return for a 2xx.

    Reads the NestJS error body ``{statusCode, message: str | [str], errorCode, error, requestId}``
    leniently: a non-JSON body (a proxy's 502 page) still yields a status-based error. A 429 is
    ``ConcurrencyLimited`` when ``errorCode`` says ``concurrency_limit_reached`` and ``RateLimited``
    otherwise, with ``retry_after_s`` from ``retry-after-ms`` / ``Retry-After``. A 503
    ``IDEMPOTENCY_OUTCOME_UNKNOWN`` is ``ProviderUnavailable``: retry with the same idempotency key.
    A 401/403 of an ``api`` call (one that carries the API key, not a signed URL's) names
    ``GENQ_SYNCSO__API_KEY``.
    """
    if response.is_success:
        return
    response.read()
    message, code, body_request_id = _parse_error_body(response)
    if response.status_code == 429:
        error_class: type[ProviderError] = ConcurrencyLimited if code in _CONCURRENCY_CODES else RateLimited
    else:
        error_class = error_class_for_status(response.status_code)
    if api and issubclass(error_class, AuthFailed):
        message = credentials_refused(message, provider=PROVIDER, title="sync.so")
    raise build_error(
        error_class,
        redact(message, request_secrets(response)),
        provider=provider,
        status_code=response.status_code,
        code=code,
        request_id=body_request_id or response.headers.get("x-request-id"),
        headers=response.headers,
    )


def error_code(response: httpx.Response) -> str | None:
    """The ``errorCode`` of an error response, as ``raise_for_response`` reads it (for metrics)."""
    return _parse_error_body(response)[1]


def _parse_error_body(response: httpx.Response) -> tuple[str, str | None, str | None]:
    """(message, errorCode, requestId) from an error body of any shape."""
    reason = response.reason_phrase or f"HTTP {response.status_code}"
    try:
        body = response.json()
    except ValueError:
        return snippet(response.text) or reason, None, None
    if not isinstance(body, dict):
        return snippet(response.text) or reason, None, None
    raw_message = body.get("message")
    if isinstance(raw_message, list):
        message = "; ".join(str(item) for item in raw_message)
    elif isinstance(raw_message, str):
        message = raw_message
    else:
        message = _str_or_none(body.get("error")) or reason
    generation_id = _str_or_none(body.get("generationId"))
    if generation_id:
        # The 503 IDEMPOTENCY_OUTCOME_UNKNOWN body may name the generation to poll.
        message = f"{message} (generationId {generation_id})"
    code = _str_or_none(body.get("errorCode")) or _str_or_none(body.get("error_code"))
    return snippet(message) or reason, code, _str_or_none(body.get("requestId"))


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _chunks(stream: IO[bytes], size: int = 1024 * 1024) -> Iterator[bytes]:
    while chunk := stream.read(size):
        yield chunk


def _read_capped(response: httpx.Response, max_bytes: int, provider: str) -> bytes:
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise ProviderUnavailable(f"response over {max_bytes} bytes", provider=provider)
    return bytes(body)


def _form_value(value: object) -> str:
    """A multipart text field: nested values (and booleans) as JSON, strings as they are."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping | list | tuple | bool):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


class SyncSoClient:
    """Typed calls to the sync.so v2 API over an injected ``httpx.Client``.

    The client must carry the base URL and the ``x-api-key`` header (``from_settings`` builds one).
    Only fast connection failures are retried here; everything else raises from the shared tree.
    """

    def __init__(self, http: httpx.Client, *, provider: str = PROVIDER) -> None:
        self._http = http
        self.provider = provider

    @classmethod
    def from_settings(cls, settings: SyncSoSettings, *, transport: httpx.BaseTransport | None = None) -> Self:
        """A client for ``settings.base_url`` with the API key and timeouts from ``settings``."""
        headers = {"accept": "application/json", "user-agent": "genq"}
        api_key = settings.api_key.get_secret_value()
        if api_key:
            headers[API_KEY_HEADER] = api_key
        http = make_http_client(
            settings.base_url,
            connect_timeout_s=settings.http.connect_timeout_s,
            read_timeout_s=settings.http.read_timeout_s,
            headers=headers,
            transport=transport,
            provider=PROVIDER,
            error_code=error_code,
        )
        return cls(http)

    def __repr__(self) -> str:
        return f"SyncSoClient(base_url={str(self._http.base_url)!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying HTTP client and its connections."""
        self._http.close()

    def create_generation(
        self,
        body: Mapping[str, Any],
        *,
        idempotency_key: str,
        files: Mapping[str, IO[bytes]] | None = None,
    ) -> Generation:
        """``POST /v2/generate``; a 200 replay of an earlier create with the same key is a success.

        Without ``files`` the body is sent as JSON. With ``files`` (keys ``video``, ``audio``,
        ``image``: files open for reading, named by their ``name``) it is multipart/form-data: each file
        is streamed from where it is (from its start on every send), nested values
        (``input``, ``options``, ``segments``...) are sent as JSON strings, scalars as text. The same
        ``idempotency_key`` must be reused on every retry of one logical create.
        """
        if not _IDEMPOTENCY_KEY_RE.fullmatch(idempotency_key):
            raise ValueError("idempotency_key must be 1-128 characters of [A-Za-z0-9._~-]")
        headers = {"Idempotency-Key": idempotency_key}
        if not files:
            request = self._http.build_request("POST", "/v2/generate", json=dict(body), headers=headers)
            return self._parse(self._send(request), _GENERATION)
        unknown = set(files) - FILE_FIELDS
        if unknown:
            raise ValueError(f"unsupported file fields {sorted(unknown)}; allowed: {sorted(FILE_FIELDS)}")
        data = {key: _form_value(value) for key, value in body.items() if value is not None}
        parts: dict[str, tuple[str, IO[bytes], str]] = {}
        for field, stream in files.items():
            name = Path(str(stream.name)).name
            parts[field] = (name, stream, mimetypes.guess_type(name)[0] or "application/octet-stream")
        request = self._http.build_request("POST", "/v2/generate", data=data, files=parts, headers=headers)
        return self._parse(self._send(request), _GENERATION)

    def get_generation(self, generation_id: str) -> Generation:
        """``GET /v2/generate/{id}``; an unknown id raises ``NotFound``."""
        if not generation_id:
            raise ValueError("generation_id is empty")
        request = self._http.build_request("GET", f"/v2/generate/{quote(generation_id, safe='')}")
        return self._parse(self._send(request), _GENERATION)

    def generation_cost(self, generation_id: str) -> GenerationCost:
        """``GET /v2/generate/{id}/costs``: what the generation was recorded to cost."""
        if not generation_id:
            raise ValueError("generation_id is empty")
        request = self._http.build_request("GET", f"/v2/generate/{quote(generation_id, safe='')}/costs")
        return self._parse(self._send(request), _COST)

    def list_generations(self, *, status: Sequence[str] = (), ids: Sequence[str] = ()) -> list[Generation]:
        """``GET /v2/generations`` filtered by statuses and ids (sent as repeated query keys)."""
        params = {"status": [str(value) for value in status], "ids": list(ids)}
        request = self._http.build_request("GET", "/v2/generations", params=params)
        return self._parse(self._send(request), _GENERATIONS)

    def list_models(self) -> list[ModelInfo]:
        """``GET /v2/models``: the models this account may use."""
        request = self._http.build_request("GET", "/v2/models")
        return self._parse(self._send(request), _MODELS)

    def estimate_cost(self, body: Mapping[str, Any]) -> list[CostEstimate]:
        """``POST /v2/analyze/cost`` with a create body: what the generation would cost (USD)."""
        request = self._http.build_request("POST", "/v2/analyze/cost", json=dict(body))
        return self._parse(self._send(request), _ESTIMATES)

    def start_upload(self, file_name: str, content_type: str, size: int) -> UploadTicket:
        """``POST /v2/assets/upload``: a signed URL to PUT one file of ``size`` bytes to."""
        payload = {"fileName": file_name, "contentType": content_type, "size": size}
        request = self._http.build_request("POST", "/v2/assets/upload", json=payload)
        return self._parse(self._send(request), _TICKET)

    def put_upload(self, ticket: UploadTicket, stream: IO[bytes], content_type: str) -> None:
        """PUT the bytes of ``stream`` (a file open for reading, read from its start) to the ticket's
        signed URL, with the content type the ticket was asked for and none of the client's headers (the
        URL is the credential)."""
        size = os.fstat(stream.fileno()).st_size
        stream.seek(0)
        request = httpx.Request(
            "PUT",
            ticket.upload_url,
            content=_chunks(stream),
            headers={"content-type": content_type, "content-length": str(size)},
            extensions={"timeout": self._http.timeout.as_dict()},
        )
        response = send_with_connect_retry(self._http, request, provider=self.provider)
        raise_for_response(response, provider=self.provider, api=False)

    def create_asset(self, url: str, asset_type: str, name: str) -> Asset:
        """``POST /v2/assets``: register an uploaded (or any reachable) URL in the media library."""
        payload = {"url": url, "type": asset_type, "name": name}
        request = self._http.build_request("POST", "/v2/assets", json=payload)
        return self._parse(self._send(request), _ASSET)

    def list_assets(
        self,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        search: str | None = None,
        types: Sequence[str] = (),
        sort_by: str | None = None,
    ) -> AssetPage:
        """``GET /v2/assets``: one page of the media library; ``next_cursor`` continues it."""
        params = {"limit": limit, "cursor": cursor, "searchQuery": search, "sortBy": sort_by}
        query: dict[str, Any] = {k: v for k, v in params.items() if v is not None}
        if types:
            query["types"] = ",".join(types)
        request = self._http.build_request("GET", "/v2/assets", params=query)
        return self._parse(self._send(request), _ASSET_PAGE)

    def get_asset(self, asset_id: str) -> Asset:
        """``GET /v2/assets/{id}``; an unknown id raises ``NotFound``."""
        request = self._http.build_request("GET", f"/v2/assets/{quote(asset_id, safe='')}")
        return self._parse(self._send(request), _ASSET)

    def create_batch(
        self, jsonl: bytes, *, dry_run: bool, webhook_url: str | None = None
    ) -> Batch | BatchValidated:
        """``POST /v2/batch`` with a JSONL file; ``dry_run`` only validates it (``BatchValidated``)."""
        data = {"dry_run": "true" if dry_run else "false"}
        if webhook_url:
            data["webhook_url"] = webhook_url
        files = {"input": ("batch.jsonl", jsonl, "application/jsonl")}
        request = self._http.build_request("POST", "/v2/batch", data=data, files=files)
        return self._parse(self._send(request), _BATCH_CREATED)

    def get_batch(self, batch_id: str) -> Batch:
        """``GET /v2/batch/{id}``; an unknown id raises ``NotFound``."""
        request = self._http.build_request("GET", f"/v2/batch/{quote(batch_id, safe='')}")
        return self._parse(self._send(request), _BATCH)

    def list_batches(self, *, created_after: datetime | None = None) -> list[Batch]:
        """``GET /v2/batch``, newest first."""
        params = {"created_after": created_after.isoformat()} if created_after else {}
        request = self._http.build_request("GET", "/v2/batch", params=params)
        return self._parse(self._send(request), _BATCHES)

    def batch_results(self, batch: Batch) -> list[BatchRow]:
        """The rows of an ended batch's results file. Its ``outputUrl`` is an API URL that redirects to
        a signed file: the API key goes to the first and not to the redirect's target."""
        if not batch.output_url:
            raise ProviderUnavailable(f"batch {batch.id} has no outputUrl yet", provider=self.provider)
        first = self._http.build_request("GET", batch.output_url)
        response = send_with_connect_retry(self._http, first, provider=self.provider)
        location = response.headers.get("location") if response.is_redirect else None
        if location:
            signed = httpx.Request("GET", response.url.join(location), headers={"accept": "*/*"},
                                   extensions={"timeout": self._http.timeout.as_dict()})  # fmt: skip
            response = send_with_connect_retry(self._http, signed, provider=self.provider, stream=True)
            try:
                raise_for_response(response, provider=self.provider, api=False)
                body = _read_capped(response, MAX_RESULTS_BYTES, self.provider)
            finally:
                response.close()
        else:
            raise_for_response(response, provider=self.provider)
            body = response.content
        rows = []
        for number, line in enumerate(body.decode("utf-8", "replace").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(_BATCH_ROW.validate_json(line))
            except ValidationError as exc:
                raise ProviderUnavailable(
                    f"batch {batch.id} results line {number} is unreadable: {snippet(str(exc))}",
                    provider=self.provider,
                ) from None
        return rows

    def download_output(
        self, url: str, into: Sink[_SinkT], *, max_bytes: int, budget: ByteBudget | None = None
    ) -> _SinkT:
        """Stream a generation's signed ``output_url`` into ``into`` (a file, the output store), without
        the API key."""
        return stream_into(self._http, url, into, max_bytes=max_bytes, provider=self.provider, budget=budget)

    def _send(self, request: httpx.Request) -> httpx.Response:
        response = send_with_connect_retry(self._http, request, provider=self.provider)
        raise_for_response(response, provider=self.provider)
        return response

    def _parse(self, response: httpx.Response, adapter: TypeAdapter[_ModelT]) -> _ModelT:
        # (a create is retried with the same key, so it cannot run twice)
        return parse_body(response, adapter, provider=self.provider)
