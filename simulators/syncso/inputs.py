"""The media inputs of a generation, as the simulator saw them (`Generation.inputs`).

Each `input` item becomes one `MediaInput` under a field name: its type (`video`, `image`, `audio`,
`text`) when the generation has one item of that type, else `<type>:<refId>` (`audio:fr`), or
`<type>:<index>` for an item without refId. Its bytes are known when they reached the simulator:

- a multipart file part (source "file"): the part's SHA-256 and size;
- an asset (source "asset"): the bytes last PUT to its upload URL (the upload's SHA-256 and size);
- a URL (source "url"): one of the simulator's own upload URLs gives that upload's digest; any other
  URL is fetched only when `fetch_input_urls` is on (`simulators.syncso.fetch`), else only the URL is
  recorded;
- a text-to-speech item (source "tts"): the SHA-256 and size of its script (UTF-8).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from simulators.media import MediaInput
from simulators.syncso.assets import AssetLibrary, ReceivedFile
from simulators.syncso.fetch import Fetched

MEDIA_TYPES = ("video", "image", "audio", "text")
Inputs = tuple[tuple[str, MediaInput], ...]


def media_inputs(
    items: Any,
    library: AssetLibrary,
    parts: Mapping[str, ReceivedFile] | None = None,
    fetched: Mapping[str, Fetched] | None = None,
) -> Inputs:
    """(field, MediaInput) of each media item of a validated `input` array, in order.

    `parts` are the multipart files of the create call by the asset id each became; `fetched` the
    fetched URLs.
    """
    if not isinstance(items, list):
        return ()
    parts, fetched = parts or {}, fetched or {}
    typed = [
        (i, item)
        for i, item in enumerate(items)
        if isinstance(item, dict) and item.get("type") in MEDIA_TYPES
    ]
    counts = Counter(item["type"] for _, item in typed)
    found = []
    for index, item in typed:
        kind = item["type"]
        ref = item.get("refId")
        field = kind if counts[kind] == 1 else f"{kind}:{ref if isinstance(ref, str) else index}"
        found.append((field, _describe(item, library, parts, fetched)))
    return tuple(found)


def _describe(
    item: dict[str, Any],
    library: AssetLibrary,
    parts: Mapping[str, ReceivedFile],
    fetched: Mapping[str, Fetched],
) -> MediaInput:
    if item["type"] == "text":
        provider = item.get("provider") or {}
        script = str(provider.get("script", "")).encode()
        voice = provider.get("voiceId")
        return MediaInput("tts", hashlib.sha256(script).hexdigest(), len(script), name=voice)
    asset_id = item.get("assetId")
    if isinstance(asset_id, str) and asset_id:
        asset = library.by_id.get(asset_id)
        if asset is None:  # create checks asset ids first; a stray one is recorded as unseen
            return MediaInput("asset", None, None, ref=asset_id)
        part = parts.get(asset_id)
        seen = _at_url(asset.url, library, fetched)
        if part is not None:
            seen = _Seen(part.sha256, part.size, part.file_name, own=True)
        return MediaInput(
            "file" if part is not None else "asset",
            seen.sha256,
            seen.size,
            url=asset.url,
            name=asset.name,
            file_name=seen.file_name,
            ref=asset_id,
            error=seen.error,
            url_searched=not seen.own,
        )
    url = str(item.get("url"))
    seen = _at_url(url, library, fetched)
    return MediaInput(
        "url",
        seen.sha256,
        seen.size,
        url=url,
        file_name=seen.file_name,
        error=seen.error,
        url_searched=not seen.own,
    )


@dataclass(frozen=True)
class _Seen:
    sha256: str | None = None
    size: int | None = None
    file_name: str | None = None
    error: str | None = None
    own: bool = False  # the URL is one of the simulator's uploads (its path holds a random token)


def _at_url(url: str, library: AssetLibrary, fetched: Mapping[str, Fetched]) -> _Seen:
    upload = library.upload_at(url)
    if upload is not None:
        return _Seen(upload.sha256, upload.size if upload.sha256 else None, upload.file_name, own=True)
    got = fetched.get(url)
    return _Seen() if got is None else _Seen(got.sha256, got.size, error=got.error)


def input_matches(
    inputs: Sequence[tuple[str, MediaInput]],
    *,
    contains: str | None = None,
    sha256: str | None = None,
    field: str | None = None,
) -> bool:
    """Whether one input has it all: the field (or its type), the substring in its URL (unless the URL
    is one of the simulator's uploads), asset name or file name, the SHA-256."""
    for name, media in inputs:
        if field is not None and field not in (name, name.split(":", 1)[0]):
            continue
        if contains is not None and not any(contains in text for text in media.haystack()):
            continue
        if sha256 is not None and media.sha256 != sha256.lower():
            continue
        return True
    return False
