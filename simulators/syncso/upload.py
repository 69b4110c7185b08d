"""Decoding of the two `POST /v2/generate` body kinds into one create body plus a fingerprint.

The fingerprint is what idempotency compares: the canonical JSON body, or for multipart the text
fields and the sha256 of each uploaded file (file names and content types do not count). Each file
is referenced in `input` by the id of the asset it becomes (`ReceivedFile.asset_id`); the caller adds
the assets to the library once the body is valid.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from simulators.syncso.assets import AssetType, ReceivedFile
from simulators.syncso.validate import CreateRejected

FILE_FIELDS = ("video", "audio", "image")
JSON_FIELDS = ("input", "options", "segments", "dubParams", "dialogueEdit")
TEXT_FIELDS = frozenset({"model", "webhookUrl", "outputFileName", "projectId", *JSON_FIELDS})
# Parser limits of the current docs: 3 files, 32 fields, 1 MiB per text field (file size is checked apart).
MAX_FILES, MAX_FIELDS, MAX_TEXT_BYTES = 3, 32, 1024 * 1024
_READ_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class CreateBody:
    body: Any
    fingerprint: str
    files: list[ReceivedFile] = field(default_factory=list)


def fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


async def read_create_body(request: Request, max_upload_bytes: int) -> CreateBody:
    """The create body and its fingerprint; raise CreateRejected for undecodable or oversized bodies."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        return await _read_multipart(request, max_upload_bytes)
    body = await read_json_body(request)
    return CreateBody(body, fingerprint({"json": body}))


async def read_json_body(request: Request) -> Any:
    """The decoded JSON body ({} when empty); raise CreateRejected when it is not JSON."""
    raw = await request.body()
    try:
        return json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise CreateRejected(f"Unexpected token in JSON: {exc}") from exc


async def _read_multipart(request: Request, max_upload_bytes: int) -> CreateBody:
    try:
        async with request.form(
            max_files=MAX_FILES, max_fields=MAX_FIELDS, max_part_size=MAX_TEXT_BYTES
        ) as form:
            parts, fields = _split_parts(form.multi_items())
            files = [await _read_file(name, upload, max_upload_bytes) for name, upload in parts.items()]
    except (MultiPartException, HTTPException) as exc:
        # Inside an app Starlette reports parser failures as HTTPException(400, detail=<parser message>).
        message = exc.message if isinstance(exc, MultiPartException) else str(exc.detail)
        raise CreateRejected(message, status=413 if "maximum" in message.lower() else 400) from exc
    body = _decode_fields(fields)
    if isinstance(body.get("input", []), list):
        assets = {file.kind.value.lower(): file.asset_id for file in files}
        body["input"] = _merge_files(list(body.get("input", [])), assets)
    digests = {file.kind.value.lower(): file.sha256 for file in files}
    return CreateBody(body, fingerprint({"fields": fields, "files": digests}), files)


def _split_parts(parts: list[tuple[str, UploadFile | str]]) -> tuple[dict[str, UploadFile], dict[str, str]]:
    files: dict[str, UploadFile] = {}
    fields: dict[str, str] = {}
    problems: list[str] = []
    for name, value in parts:
        if isinstance(value, UploadFile):
            if name not in FILE_FIELDS:
                problems.append(f"unexpected file field {name}")
            elif name in files:
                problems.append(f"at most one {name} file is allowed")
            files[name] = value
        else:
            if name in FILE_FIELDS:
                problems.append(f"{name} must be a file")
            elif name not in TEXT_FIELDS:
                problems.append(f"property {name} should not exist")
            elif name in fields:
                problems.append(f"{name} must be given once")
            fields[name] = value
    if problems:
        raise CreateRejected(problems)
    return files, fields


async def _read_file(name: str, upload: UploadFile, max_upload_bytes: int) -> ReceivedFile:
    digest, size = hashlib.sha256(), 0
    while chunk := await upload.read(_READ_CHUNK):
        size += len(chunk)
        if size > max_upload_bytes:
            raise CreateRejected("Payload Too Large", status=413)
        digest.update(chunk)
    file_name = upload.filename or name
    content_type = upload.content_type or "application/octet-stream"
    return ReceivedFile(AssetType(name.upper()), file_name, content_type, size, digest.hexdigest())


def _decode_fields(fields: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    problems: list[str] = []
    for name, value in fields.items():
        if name not in JSON_FIELDS:
            body[name] = value
            continue
        try:
            body[name] = json.loads(value)
        except ValueError:
            problems.append(f"{name} must be a valid JSON string")
    if problems:
        raise CreateRejected(problems)
    return body


def _merge_files(items: list[Any], assets: dict[str, str]) -> list[Any]:
    """Reference each uploaded file by its assetId; a file replaces the url of the first item of its type."""
    for kind, asset_id in assets.items():
        index = next(
            (i for i, it in enumerate(items) if isinstance(it, dict) and it.get("type") == kind), None
        )
        if index is None:
            items.append({"type": kind, "assetId": asset_id})
        else:
            rest = {k: v for k, v in items[index].items() if k not in ("type", "url", "assetId")}
            items[index] = {"type": kind, "assetId": asset_id, **rest}
    return items
