"""The sync.so wire form of a lipsync request: the ``CreateGenerationDto`` body (camelCase) that create,
the cost estimate and each line of a batch file carry (reference 3.3, 3.8).

It lives beside the request model because both sides need it: the workers send it, and the producer
builds a batch file at submit to refuse one sync.so would refuse (over 5 MB, repeated request ids).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from schemas.base import is_local_path
from schemas.lipsync import LipsyncRequest, TextToSpeech, asset_id

BATCH_ENDPOINT: Final = "/v2/generate"
BATCH_MIN_RECORDS: Final = 20
BATCH_MAX_RECORDS: Final = 500
BATCH_MAX_FILE_BYTES: Final = 5 * 1024 * 1024
# sync.so runs batches on these plans only (others: 402 batch_plan_required); the plan is the workers'
# GENQ_SYNCSO__PLAN, which they register in Redis (layout.PLANS_KEY).
BATCH_PLANS: Final = ("scale", "enterprise")
PLAN_SETTING: Final = "GENQ_SYNCSO__PLAN"


class LocalFileUnresolved(ValueError):
    """A local input has neither an uploaded asset nor a place in the multipart body."""


def generation_body(
    request: LipsyncRequest,
    *,
    assets: Mapping[str, str] | None = None,
    direct: Sequence[str] = (),
) -> tuple[dict[str, Any], dict[str, str]]:
    """The create body, and the local files sent with it as multipart parts (``video``/``image``/
    ``audio`` -> path). A local input is referenced by the asset it was uploaded as (``assets``, by
    field path) or, if its field is in ``direct``, sent as a file part; any other local input raises
    ``LocalFileUnresolved``."""
    inputs = _Inputs(assets or {}, direct)
    for field in ("video", "image", "audio"):
        source = getattr(request, field)
        if source is not None:
            inputs.add(field, field, source)
    if request.tts is not None:
        inputs.items.append(_tts_item(request.tts))
    for i, track in enumerate(request.tracks or ()):
        if track.audio is not None:
            inputs.add(f"tracks.{i}.audio", "audio", track.audio, refId=track.ref_id)
        elif track.tts is not None:
            inputs.items.append(_tts_item(track.tts) | {"refId": track.ref_id})
    items, files = inputs.items, inputs.files
    body: dict[str, Any] = {"model": request.model.value, "input": items}
    options = request.options.model_dump(mode="json", exclude_none=True)
    if options:
        body["options"] = options
    if request.segments:
        body["segments"] = [_segment(s.model_dump(exclude_none=True)) for s in request.segments]
    if request.output_file_name:
        body["outputFileName"] = request.output_file_name
    return body, files


class _Inputs:
    """The ``input`` items and multipart files of one body, in order."""

    def __init__(self, assets: Mapping[str, str], direct: Sequence[str]) -> None:
        self.assets = assets
        self.direct = direct
        self.items: list[dict[str, Any]] = []
        self.files: dict[str, str] = {}

    def add(self, field: str, kind: str, source: str, **extra: Any) -> None:
        if is_local_path(source):
            if field in self.assets:
                self.items.append({"type": kind, "assetId": self.assets[field], **extra})
            elif field in self.direct and not extra:
                self.files[kind] = source  # the file part stands in for the input item
            else:
                raise LocalFileUnresolved(f"{field}: the local file {source} was not uploaded")
            return
        asset = asset_id(source)
        self.items.append({"type": kind, **({"assetId": asset} if asset else {"url": source}), **extra})


def _tts_item(tts: TextToSpeech) -> dict[str, Any]:
    provider: dict[str, Any] = {"name": "elevenlabs", "voiceId": tts.voice_id, "script": tts.script}
    if tts.stability is not None:
        provider["stability"] = tts.stability
    if tts.similarity_boost is not None:
        provider["similarityBoost"] = tts.similarity_boost
    return {"type": "text", "provider": provider}


def _segment(segment: dict[str, Any]) -> dict[str, Any]:
    audio = segment["audio_input"]
    crop = {"startTime": audio["start_time"], "endTime": audio["end_time"]} if "start_time" in audio else {}
    return {
        "startTime": segment["start_time"],
        "endTime": segment["end_time"],
        "audioInput": {"refId": audio["ref_id"], **crop},
    }


def batch_line(request_id: str, request: LipsyncRequest) -> str:
    """One line of a batch file (no local inputs: a batch file carries URLs and asset ids only)."""
    body, _ = generation_body(request)
    record = {"request_id": request_id, "endpoint": BATCH_ENDPOINT, "payload": body}
    return json.dumps(record, separators=(",", ":"))


def batch_file(rows: Sequence[tuple[str, LipsyncRequest]]) -> bytes:
    """The JSONL batch file of ``(request_id, request)`` rows, in order."""
    return "".join(batch_line(rid, request) + "\n" for rid, request in rows).encode()
