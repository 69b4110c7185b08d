"""[INF] URL inputs fetched to learn their bytes (`fetch_input_urls`, off by default).

sync.so downloads a generation's URL inputs itself and fails the generation when it cannot
(`generation_input_video_inaccessible`, `generation_input_audio_inaccessible`, reference 3.3.5). With
`fetch_input_urls` on, the simulator GETs each URL input at create (before answering), hashes what
comes and records it; a URL that cannot be fetched makes the generation REJECTED with the matching
code. The simulator's own upload URLs are never fetched: it knows their digests already.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from simulators.media import MediaInput
from simulators.syncso.assets import AssetLibrary
from simulators.syncso.generations import REJECT_ERRORS, Outcome, Status


@dataclass(frozen=True)
class Fetched:
    """What fetching a URL input gave: its digest, or why it failed."""

    sha256: str | None
    size: int | None
    error: str | None = None


def urls_to_fetch(items: Any, library: AssetLibrary) -> list[str]:
    """The URLs behind a create's video, image and audio items whose bytes the simulator does not hold
    (not one of its own upload URLs), each once."""
    urls: list[str] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or item.get("type") not in ("video", "image", "audio"):
            continue
        asset = library.by_id.get(item["assetId"]) if isinstance(item.get("assetId"), str) else None
        url = asset.url if asset is not None else item.get("url")
        if isinstance(url, str) and library.upload_at(url) is None and url not in urls:
            urls.append(url)
    return urls


async def fetch_digest(client: httpx.AsyncClient, url: str, max_bytes: int) -> Fetched:
    """GET `url` and hash its body as it streams in; an error status, a failure or more than
    `max_bytes` gives a `Fetched` with the reason instead (the URL itself is not repeated)."""
    try:
        async with client.stream("GET", url) as response:
            if response.status_code >= 400:
                return Fetched(None, None, f"HTTP {response.status_code}")
            digest, size = hashlib.sha256(), 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    return Fetched(None, None, f"larger than {max_bytes} bytes")
                digest.update(chunk)
    except httpx.HTTPError as exc:
        return Fetched(None, None, type(exc).__name__)
    return Fetched(digest.hexdigest(), size)


def unreachable(inputs: Iterable[tuple[str, MediaInput]]) -> Outcome | None:
    """REJECTED with the documented "inaccessible" code when an input URL could not be fetched."""
    for field, media in inputs:
        if media.error is not None:
            code = f"generation_input_{'audio' if field.startswith('audio') else 'video'}_inaccessible"
            return Outcome(Status.REJECTED, code, REJECT_ERRORS[code])
    return None
