"""The organisation's media library of the simulated sync.so API (reference 3.9): uploads and assets.

No HTTP here. An upload is a presigned-URL ticket (`POST /v2/assets/upload`) that completes when its
bytes are PUT; an asset is a registered URL (`POST /v2/assets`) or a file sent multipart to
`POST /v2/generate`. Only the upload's size and sha256 are kept, never its bytes.
"""

from __future__ import annotations

import hashlib
import posixpath
import random
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from simulators.syncso.generations import iso_time

UPLOAD_TTL_S = 3600  # `expiresIn` of an upload ticket
FRAME_SIZE = (1280, 720)  # [INF] width and height reported for every video and image
ITEM_TYPES = {"video": "VIDEO", "audio": "AUDIO", "image": "IMAGE"}  # create input type -> asset type


class AssetType(StrEnum):
    AUDIO = "AUDIO"
    VIDEO = "VIDEO"
    IMAGE = "IMAGE"


class AssetRejected(Exception):
    """Registering failed: the status, NestJS message and errorCode to answer with."""

    def __init__(self, status: int, message: str, error_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code


@dataclass
class Upload:
    token: str
    file_name: str
    content_type: str
    size: int  # declared by the ticket; a PUT of another length is refused
    url: str  # where the file is served once PUT: what `POST /v2/assets` registers
    expires_at: float
    sha256: str | None = None  # set by a completed PUT


@dataclass(frozen=True)
class ReceivedFile:
    """A file sent multipart to `POST /v2/generate` (its bytes were hashed, not kept)."""

    kind: AssetType
    file_name: str
    content_type: str
    size: int
    sha256: str

    @property
    def asset_id(self) -> str:
        return file_asset_id(self.kind, self.sha256)


@dataclass(frozen=True)
class Asset:
    id: str
    seq: int  # creation order, the tie-breaker of every sort
    created_at: float
    type: AssetType
    input_type: str  # UPLOAD or URL
    name: str | None
    url: str
    size: int | None
    format: str | None
    visibility: str
    duration_s: float | None

    def to_wire(self) -> dict[str, Any]:
        framed = self.type is not AssetType.AUDIO
        created = iso_time(self.created_at)
        return {
            "id": self.id,
            "createdAt": created,
            "updatedAt": created,
            "name": self.name,
            "url": self.url,
            "size": self.size,
            "format": self.format,
            "type": self.type.value,
            "inputType": self.input_type,
            "durationSeconds": self.duration_s,
            "thumbnailUrl": None,
            "visibility": self.visibility,
            "width": FRAME_SIZE[0] if framed else None,
            "height": FRAME_SIZE[1] if framed else None,
        }


@dataclass(frozen=True)
class AssetQuery:
    """A parsed `GET /v2/assets` query (see `simulators.syncso.query.parse_asset_query`)."""

    limit: int
    cursor: str | None
    search: str | None
    sort_by: str
    types: frozenset[AssetType] | None
    project_id: str | None


@dataclass(frozen=True)
class AssetPage:
    items: list[Asset]
    next_cursor: str | None
    total_count: int


class CursorUnknown(Exception):
    """The cursor names no asset among the query's matches."""


SortKey = Callable[[Asset], Any]
# sortBy field -> key; "Asc"/"Desc" picks the direction. Assets without the value (a URL asset has no
# size, an image no duration) come last either way [INF]; ties keep creation order.
SORT_FIELDS: dict[str, SortKey | None] = {
    "name": lambda a: (a.name or "").casefold(),
    "date": None,  # creation order itself
    "duration": lambda a: a.duration_s,
    "size": lambda a: a.size,
    "kind": lambda a: a.type.value,
}
SORT_VALUES = tuple(f"{field}{way}" for field in SORT_FIELDS for way in ("Asc", "Desc"))


def file_format(file_name: str | None) -> str | None:
    """The lowercased extension of a file name without its dot; None when it has none."""
    return posixpath.splitext(file_name or "")[1][1:].lower() or None


def last_segment(url: str) -> str | None:
    """The last non-empty path segment of a URL, unquoted; None for a bare host."""
    segments = [s for s in urlsplit(url).path.split("/") if s]
    return unquote(segments[-1]) if segments else None


def file_asset_id(kind: AssetType, sha256: str) -> str:
    """The id of a file sent multipart to `POST /v2/generate`: from its type and content, so a replayed
    multipart create names the same asset and sending the same bytes again adds nothing."""
    digest = hashlib.sha256(f"{kind.value}:{sha256}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def sort_assets(assets: list[Asset], sort_by: str) -> list[Asset]:
    """`assets` (in creation order) in `sort_by` order."""
    descending = sort_by.endswith("Desc")
    key = SORT_FIELDS[sort_by.removesuffix("Desc").removesuffix("Asc")]
    if key is None:
        return assets[::-1] if descending else list(assets)
    valued = [a for a in assets if key(a) is not None]
    missing = [a for a in assets if key(a) is None]
    # sorted() is stable with reverse=True too, so equal keys stay in creation order.
    return sorted(valued, key=key, reverse=descending) + missing


class AssetLibrary:
    """Uploads by token and by served URL, assets by id; dict order is creation order."""

    def __init__(self, id_rng: random.Random) -> None:
        self._id_rng = id_rng  # asset ids; apart from the generation draws so a seed replays both
        self.uploads: dict[str, Upload] = {}
        self._uploads_by_url: dict[str, Upload] = {}
        self.by_id: dict[str, Asset] = {}
        self.uploads_completed = 0

    def start_upload(self, file_name: str, content_type: str, size: int, base_url: str, now: float) -> Upload:
        token = secrets.token_urlsafe(24)  # the presigned URL is the credential: unguessable
        url = f"{base_url}_sim/syncso/files/{token}/{quote(file_name, safe='')}"
        upload = Upload(token, file_name, content_type, size, url, now + UPLOAD_TTL_S)
        self.uploads[token] = upload
        self._uploads_by_url[url] = upload
        return upload

    def open_upload(self, token: str, now: float) -> Upload | None:
        """The upload a PUT may write, or None when the token is unknown or expired."""
        upload = self.uploads.get(token)
        return upload if upload is not None and now < upload.expires_at else None

    def upload_at(self, url: str) -> Upload | None:
        """The upload (one of ours) served at `url`, or None for any other URL."""
        return self._uploads_by_url.get(url)

    def complete_upload(self, upload: Upload, sha256: str) -> None:
        upload.sha256 = sha256  # a second PUT replaces the first
        self.uploads_completed += 1

    def register(
        self,
        url: str,
        kind: AssetType,
        *,
        name: str | None,
        visibility: str,
        duration_s: float | None,
        max_bytes: int,
        now: float,
    ) -> Asset:
        """`POST /v2/assets`: an asset for one of our upload URLs (which must have been PUT) or any URL.

        Raise AssetRejected for an upload not PUT yet (400) or larger than the plan allows (422).
        """
        asset_id = str(uuid.UUID(int=self._id_rng.getrandbits(128), version=4))
        upload = self._uploads_by_url.get(url)
        if upload is None:
            source = last_segment(url)  # [INF] name and format of a URL asset come from its path
            return self._add(
                Asset(
                    id=asset_id,
                    seq=len(self.by_id),
                    created_at=now,
                    type=kind,
                    input_type="URL",
                    name=name or source,
                    url=url,
                    size=None,
                    format=file_format(source),
                    visibility=visibility,
                    duration_s=duration_s,
                )
            )
        if upload.sha256 is None:
            raise AssetRejected(400, f"the upload at {url} has not completed")
        if upload.size > max_bytes:
            message = f"The file is {upload.size} bytes; your plan allows at most {max_bytes} bytes per file"
            raise AssetRejected(422, message, "file_size_exceeds_plan_limit")
        name = name or upload.file_name
        asset = self._uploaded(
            asset_id, upload, kind, name=name, visibility=visibility, duration_s=duration_s, now=now
        )
        return self._add(asset)

    def add_file(self, file: ReceivedFile, duration_s: float | None, base_url: str, now: float) -> Asset:
        """A file sent multipart, stored like a completed upload; the same one again adds nothing."""
        existing = self.by_id.get(file.asset_id)
        if existing is not None:
            return existing
        upload = self.start_upload(file.file_name, file.content_type, file.size, base_url, now)
        upload.sha256 = file.sha256  # complete, but not a PUT: `uploads_completed` counts PUTs only
        asset = self._uploaded(
            file.asset_id,
            upload,
            file.kind,
            name=file.file_name,
            visibility="USER",
            duration_s=duration_s,
            now=now,
        )
        return self._add(asset)

    def _uploaded(
        self,
        asset_id: str,
        upload: Upload,
        kind: AssetType,
        *,
        name: str,
        visibility: str,
        duration_s: float | None,
        now: float,
    ) -> Asset:
        return Asset(
            id=asset_id,
            seq=len(self.by_id),
            created_at=now,
            type=kind,
            input_type="UPLOAD",
            name=name,
            url=upload.url,
            size=upload.size,
            format=file_format(upload.file_name),
            visibility=visibility,
            duration_s=duration_s,
        )

    def page(self, query: AssetQuery) -> AssetPage:
        """One page of the matches in `query.sort_by` order; raise CursorUnknown for a stray cursor."""
        if query.project_id is not None:
            return AssetPage([], None, 0)  # the simulator has no projects
        search = query.search.casefold() if query.search else None
        matches = [
            a
            for a in self.by_id.values()
            if (query.types is None or a.type in query.types)
            and (search is None or search in (a.name or "").casefold())
        ]
        ordered = sort_assets(matches, query.sort_by)
        start = 0
        if query.cursor is not None:
            ids = [a.id for a in ordered]
            if query.cursor not in ids:
                raise CursorUnknown(query.cursor)
            start = ids.index(query.cursor) + 1
        items = ordered[start : start + query.limit]
        more = start + query.limit < len(ordered)
        return AssetPage(items, items[-1].id if more and items else None, len(ordered))

    def asset_problems(self, items: Any) -> list[str]:
        """Messages for create input items whose `assetId` names no asset of the item's type."""
        if not isinstance(items, list):
            return []
        problems = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or item.get("type") not in ITEM_TYPES:
                continue
            asset_id = item.get("assetId")
            if not isinstance(asset_id, str) or not asset_id:
                continue  # validate_create reports the shape
            asset = self.by_id.get(asset_id)
            wanted = ITEM_TYPES[item["type"]]
            if asset is None:
                problems.append(f"input.{i}.assetId {asset_id} names no asset in the media library")
            elif asset.type.value != wanted:
                problems.append(f"input.{i}.assetId {asset_id} is a {asset.type.value} asset, not {wanted}")
        return problems

    def _add(self, asset: Asset) -> Asset:
        self.by_id[asset.id] = asset
        return asset
