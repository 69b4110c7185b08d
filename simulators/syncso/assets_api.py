"""HTTP handlers of the media library (reference 3.2, 3.9): upload tickets, the presigned PUT, assets.

`POST /v2/assets/upload` hands out a ticket: `uploadUrl` (PUT the bytes there, no API key, the same
Content-Type as declared) and `url` (what `POST /v2/assets` then registers). The PUT side mimics a
presigned object-store URL: S3-style XML errors, an `ETag` on success.
"""

from __future__ import annotations

import hashlib
from typing import Any
from xml.sax.saxutils import escape

from starlette.requests import Request
from starlette.responses import Response

from simulators.provider_base import SimResponse
from simulators.syncso.assets import UPLOAD_TTL_S, AssetRejected, AssetType, CursorUnknown
from simulators.syncso.query import QueryInvalid, parse_asset_query
from simulators.syncso.responses import nest_error
from simulators.syncso.state import SyncSoState
from simulators.syncso.upload import read_json_body
from simulators.syncso.validate import CreateRejected, is_url

MAX_UPLOAD_BYTES = 5 * 1024**3  # a single upload (reference 3.2)
UPLOAD_KEYS = frozenset({"fileName", "contentType", "size"})
ASSET_KEYS = frozenset({"url", "type", "name", "visibility", "projectId"})
VISIBILITIES = ("USER", "ORGANIZATION")


def s3_error(status: int, code: str, message: str) -> Response:
    """An object-store error body, as a presigned URL answers."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
    )
    return Response(body, status, media_type="application/xml")


def _non_empty(body: dict[str, Any], key: str, messages: list[str]) -> str | None:
    value = body.get(key)
    if not isinstance(value, str):
        messages.append(f"{key} must be a string")
        return None
    if not value:
        messages.append(f"{key} should not be empty")
        return None
    return value


def check_upload_body(body: Any) -> tuple[str, str, int]:
    """(fileName, contentType, size) of a `POST /v2/assets/upload` body; raise CreateRejected."""
    if not isinstance(body, dict):
        raise CreateRejected(["request body must be a JSON object"])
    messages = [f"property {key} should not exist" for key in sorted(set(body) - UPLOAD_KEYS)]
    file_name = _non_empty(body, "fileName", messages)
    content_type = _non_empty(body, "contentType", messages)
    size = body.get("size")
    if not isinstance(size, int) or isinstance(size, bool):
        messages.append("size must be an integer number")
    elif size < 1:
        messages.append("size must not be less than 1")
    elif size > MAX_UPLOAD_BYTES:
        messages.append(f"size must not be greater than {MAX_UPLOAD_BYTES}")
    if messages or file_name is None or content_type is None or not isinstance(size, int):
        raise CreateRejected(messages)
    return file_name, content_type, size


def check_asset_body(body: Any) -> tuple[str, AssetType, str | None, str, str | None]:
    """(url, type, name, visibility, projectId) of a `POST /v2/assets` body; raise CreateRejected.

    The simulator has no projects: a well-formed projectId is the caller's 422, not a 400 here.
    """
    if not isinstance(body, dict):
        raise CreateRejected(["request body must be a JSON object"])
    messages = [f"property {key} should not exist" for key in sorted(set(body) - ASSET_KEYS)]
    url = _non_empty(body, "url", messages)
    if url is not None and not is_url(url):
        messages.append("url must be a URL address")
    kind, kinds = body.get("type"), [t.value for t in AssetType]
    if kind not in kinds:
        messages.append(f"type must be one of the following values: {', '.join(kinds)}")
    name = body.get("name")
    if name is not None:
        name = _non_empty(body, "name", messages)
    visibility = body.get("visibility", "USER")
    if visibility not in VISIBILITIES:
        messages.append(f"visibility must be one of the following values: {', '.join(VISIBILITIES)}")
    project_id = body.get("projectId")
    if project_id is not None and not isinstance(project_id, str):
        messages.append("projectId must be a string")
    if messages or url is None or not isinstance(kind, str):
        raise CreateRejected(messages)
    return url, AssetType(kind), name, visibility, project_id


class AssetRoutes:
    """Handlers of the routes asset_upload, asset_put, asset_file, asset_create, assets_list, asset_get."""

    def __init__(self, state: SyncSoState) -> None:
        self.state = state

    async def start_upload(self, request: Request) -> Response:
        try:
            file_name, content_type, size = check_upload_body(await read_json_body(request))
        except CreateRejected as exc:
            return nest_error(400, exc.message)
        base_url = str(request.base_url)
        upload = self.state.assets.start_upload(file_name, content_type, size, base_url, self.state.clock())
        ticket = {"uploadUrl": f"{base_url}_sim/syncso/uploads/{upload.token}", "url": upload.url}
        return SimResponse({**ticket, "expiresIn": UPLOAD_TTL_S}, 201)

    async def put_upload(self, request: Request) -> Response:
        """The presigned PUT: the body is streamed and only its length and sha256 are kept."""
        upload = self.state.assets.open_upload(request.path_params["token"], self.state.clock())
        if upload is None:
            return s3_error(403, "AccessDenied", "Request has expired or the upload URL is unknown")
        if request.headers.get("content-type") != upload.content_type:
            message = f"The Content-Type must be {upload.content_type}, as the upload URL was signed for"
            return s3_error(403, "SignatureDoesNotMatch", message)
        digest, size = hashlib.sha256(), 0
        async for chunk in request.stream():
            size += len(chunk)
            digest.update(chunk)
        if size != upload.size:
            code = "IncompleteBody" if size < upload.size else "EntityTooLarge"  # [INF]
            return s3_error(400, code, f"The upload URL was signed for {upload.size} bytes, got {size}")
        sha256 = digest.hexdigest()
        self.state.assets.complete_upload(upload, sha256)
        return Response(status_code=200, headers={"ETag": f'"{sha256}"'})

    async def get_file(self, request: Request) -> Response:
        """A completed upload's record (the simulator keeps no bytes)."""
        upload = self.state.assets.uploads.get(request.path_params["token"])
        if upload is None or upload.sha256 is None or request.path_params["name"] != upload.file_name:
            return nest_error(404, "File not found")
        return SimResponse(
            {
                "fileName": upload.file_name,
                "contentType": upload.content_type,
                "size": upload.size,
                "sha256": upload.sha256,
            }
        )

    async def create(self, request: Request) -> Response:
        try:
            url, kind, name, visibility, project_id = check_asset_body(await read_json_body(request))
        except CreateRejected as exc:
            return nest_error(400, exc.message)
        if project_id is not None:
            return nest_error(422, f"Project {project_id} not found", "project_not_found")
        cfg = self.state.config
        duration_s = None if kind is AssetType.IMAGE else cfg.media_duration_s
        try:
            asset = self.state.assets.register(
                url,
                kind,
                name=name,
                visibility=visibility,
                duration_s=duration_s,
                max_bytes=cfg.asset_max_bytes,
                now=self.state.clock(),
            )
        except AssetRejected as exc:
            return nest_error(exc.status, exc.message, exc.error_code)
        return SimResponse(asset.to_wire(), 201, resource_id=asset.id)

    async def list_assets(self, request: Request) -> Response:
        try:
            page = self.state.assets.page(parse_asset_query(request.query_params))
        except QueryInvalid as exc:
            return nest_error(400, exc.messages)
        except CursorUnknown:
            return nest_error(400, ["cursor must be the id of an asset in these results"])
        items = [asset.to_wire() for asset in page.items]
        return SimResponse({"items": items, "nextCursor": page.next_cursor, "totalCount": page.total_count})

    async def get_asset(self, request: Request) -> Response:
        asset_id = request.path_params["aid"]
        asset = self.state.assets.by_id.get(asset_id)
        if asset is None:
            return nest_error(404, f"Asset {asset_id} not found")
        return SimResponse(asset.to_wire(), resource_id=asset_id)
