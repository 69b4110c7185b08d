"""What each provider job was given and what it serves: the `/_sim/<provider>/inputs` control routes.

A provider records every media input of a job as a `MediaInput`: the SHA-256 and size of its bytes as
the simulator saw them (a multipart part, a PUT upload, assembled chunks, a fetched URL), or only its
URL when it never saw the bytes. Each route answers, per provider job id,

    {"inputs": {<input field>: {"sha256": <hex> | null, "bytes": <int> | null, "source": ..., ...}},
     "output": {"sha256": <hex>, "bytes": <int>, "path": <download path>} | null, ...}

where `output` is the digest of the bytes a download serves now (with the current `output_bytes`),
null until the job has an output. Output digests are computed on demand, off the event loop, and
kept in a bounded cache (`OutputDigests`); inputs live as long as the job they belong to.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

MAX_CACHED_DIGESTS = 4096


@dataclass(frozen=True)
class MediaInput:
    """One media input of a provider job, as the simulator received it."""

    source: str  # "file" (multipart part), "asset" (media library), "url", "upload" (chunks), "tts"
    sha256: str | None  # None when the simulator never saw the bytes (a URL it did not fetch)
    size: int | None
    url: str | None = None
    name: str | None = None  # the asset's name, or the TTS voice
    file_name: str | None = None  # as uploaded (multipart part, upload ticket, upload init)
    ref: str | None = None  # what names it at the provider: an assetId, a taskid
    error: str | None = None  # why its bytes could not be had (a URL that could not be fetched)
    # False for a URL the simulator made up (an upload's, with a random token): not searched.
    url_searched: bool = True

    def haystack(self) -> tuple[str, ...]:
        """The texts an input-keyed failure's `contains` is looked for in."""
        url = self.url if self.url_searched else None
        return tuple(text for text in (url, self.name, self.file_name) if text)

    def view(self) -> dict[str, Any]:
        extras = {
            "url": self.url,
            "name": self.name,
            "file_name": self.file_name,
            "ref": self.ref,
            "error": self.error,
        }
        body: dict[str, Any] = {"sha256": self.sha256, "bytes": self.size, "source": self.source}
        return body | {key: value for key, value in extras.items() if value is not None}


def output_view(path: str, digest: tuple[str, int]) -> dict[str, Any]:
    sha256, size = digest
    return {"sha256": sha256, "bytes": size, "path": path}


def sha256_of(blocks: Iterable[bytes]) -> tuple[str, int]:
    """(hex SHA-256, byte count) of the concatenated blocks."""
    digest, size = hashlib.sha256(), 0
    for block in blocks:
        digest.update(block)
        size += len(block)
    return digest.hexdigest(), size


class OutputDigests:
    """Output digests by (job id, size, variant), the newest `max_entries` kept.

    An output's bytes are a function of its key, so a cached digest never goes stale; `digest` hashes
    in a worker thread so a large output does not stall the simulator's event loop.
    """

    def __init__(self, max_entries: int = MAX_CACHED_DIGESTS) -> None:
        self._max = max_entries
        self._digests: OrderedDict[tuple[str, ...], tuple[str, int]] = OrderedDict()

    async def digest(self, key: tuple[str, ...], blocks: Callable[[], Iterable[bytes]]) -> tuple[str, int]:
        cached = self._digests.get(key)
        if cached is None:
            cached = await asyncio.to_thread(lambda: sha256_of(blocks()))
            self._digests[key] = cached
            while len(self._digests) > self._max:
                self._digests.popitem(last=False)
        else:
            self._digests.move_to_end(key)
        return cached

    def clear(self) -> None:
        self._digests.clear()


def wanted_ids(raw: list[str]) -> frozenset[str] | None:
    """The job ids a `?ids=` query names (repeated keys or comma-separated), None for all."""
    ids = frozenset(part.strip() for value in raw for part in value.split(",") if part.strip())
    return ids or None
