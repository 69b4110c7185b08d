"""Validation of the sync.so `POST /v2/generate` body (CreateGenerationDto), NestJS style.

Every problem found is reported in the `message` array; the `errorCode` is the most specific
documented code among them, else `generation_input_validation_failed`.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any, TypeGuard

GENERIC = "generation_input_validation_failed"
# Most specific first: when several problems are found, the first code present names the error.
CODE_PRIORITY = (
    "generation_unsupported_model",
    "generation_video_missing",
    "generation_input_too_many_visual",
    "generation_audio_missing",
    "generation_input_dub_audio_conflict",
    "generation_text_length_exceeded",
    "generation_input_segments_invalid",
    "generation_input_face_selection_invalid",
)

MODELS = ("lipsync-2", "lipsync-1.9.0-beta", "lipsync-2-pro", "react-1", "sync-3")
INPUT_TYPES = ("video", "audio", "text", "image")
SYNC_MODES = ("bounce", "loop", "cut_off", "silence", "remap")
MODEL_MODES = ("lips", "face", "head")
PROMPTS = ("happy", "sad", "angry", "disgusted", "surprised", "neutral")
MAX_SCRIPT_CHARS = 5000
EXTRA_KEYS = ("projectId", "dubParams", "dialogueEdit")  # newer than SDK 0.3.0; echoed, not simulated
TOP_LEVEL_KEYS = frozenset(
    {"model", "input", "options", "segments", "webhookUrl", "outputFileName", *EXTRA_KEYS}
)
OUTPUT_FILE_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")
_URL = re.compile(r"https?://[^\s/]+\S*")


class CreateRejected(Exception):
    """The create request is invalid; carries the NestJS `message` list, `errorCode` and HTTP status."""

    def __init__(self, message: str | list[str], error_code: str = GENERIC, status: int = 400) -> None:
        super().__init__(message if isinstance(message, str) else "; ".join(message))
        self.message = message
        self.error_code = error_code
        self.status = status


@dataclass(frozen=True)
class CreateRequest:
    model: str
    input: list[dict[str, Any]]
    options: dict[str, Any]
    segments: list[Any] | None
    webhook_url: str | None
    output_file_name: str | None
    extra: dict[str, Any]  # EXTRA_KEYS present in the body


@dataclass
class _Errors:
    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, message: str, code: str = GENERIC) -> None:
        self.items.append((message, code))


def validate_create(body: Any) -> CreateRequest:
    """Check a decoded create body; raise CreateRejected listing every problem found."""
    if not isinstance(body, dict):
        raise CreateRejected(["request body must be a JSON object"])
    errors = _Errors()
    for key in sorted(set(body) - TOP_LEVEL_KEYS):
        errors.add(f"property {key} should not exist")
    model = body.get("model")
    _check_model(model, errors)
    segments = body.get("segments")
    ref_ids = _check_input(body.get("input"), model, segments is not None, "dubParams" in body, errors)
    if segments is not None:
        _check_segments(segments, ref_ids, errors)
    options = body.get("options")
    if options is not None:
        _check_options(options, model, errors)
    _check_optional_strings(body, errors)
    if errors.items:
        codes = {code for _, code in errors.items}
        code = next((c for c in CODE_PRIORITY if c in codes), GENERIC)
        raise CreateRejected([message for message, _ in errors.items], code)
    return CreateRequest(
        model=body["model"],
        input=body["input"],
        options=options or {},
        segments=segments,
        webhook_url=body.get("webhookUrl"),
        output_file_name=body.get("outputFileName"),
        extra={k: body[k] for k in EXTRA_KEYS if k in body},
    )


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_url(value: Any) -> bool:
    return isinstance(value, str) and _URL.fullmatch(value) is not None


def _check_model(model: Any, errors: _Errors) -> None:
    if model is None or model == "":
        errors.add("model should not be empty")
    elif model not in MODELS:
        errors.add(f"model must be one of the following values: {', '.join(MODELS)}", CODE_PRIORITY[0])


def _check_input(items: Any, model: Any, has_segments: bool, has_dub: bool, errors: _Errors) -> set[str]:
    """Check the input array; return the audio/text `refId`s for segment references."""
    if not isinstance(items, list):
        errors.add("input must be an array")
        return set()
    kinds: list[str] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            errors.add(f"input.{i} must be an object")
        elif item.get("type") not in INPUT_TYPES:
            errors.add(f"input.{i}.type must be one of the following values: {', '.join(INPUT_TYPES)}")
        else:
            kinds.append(item["type"])
            _check_item(i, item, model, errors)
    _check_counts(kinds, has_segments, has_dub, errors)
    audio_items = [item for item in items if isinstance(item, dict) and item.get("type") in ("audio", "text")]
    return _check_ref_ids(audio_items, has_segments, errors)


def _check_item(i: int, item: dict[str, Any], model: Any, errors: _Errors) -> None:
    if item["type"] == "text":
        _check_tts(i, item, errors)
        return
    if item["type"] == "image" and model != "sync-3":
        errors.add(f"input.{i}: image input is only supported by sync-3")
    url, asset_id = item.get("url"), item.get("assetId")
    if url is None and asset_id is None:
        errors.add(f"input.{i} must have either url or assetId")
    if url is not None and not is_url(url):
        errors.add(f"input.{i}.url must be a URL address")
    if asset_id is not None and (not isinstance(asset_id, str) or not asset_id):
        errors.add(f"input.{i}.assetId must be a non-empty string")


def _check_tts(i: int, item: dict[str, Any], errors: _Errors) -> None:
    provider = item.get("provider")
    if not isinstance(provider, dict):
        errors.add(f"input.{i}.provider must be an object")
        return
    if provider.get("name") != "elevenlabs":
        errors.add(f"input.{i}.provider.name must be one of the following values: elevenlabs")
    voice_id, script = provider.get("voiceId"), provider.get("script")
    if not isinstance(voice_id, str) or not voice_id:
        errors.add(f"input.{i}.provider.voiceId should not be empty")
    if not isinstance(script, str) or not script:
        errors.add(f"input.{i}.provider.script should not be empty")
    elif len(script) > MAX_SCRIPT_CHARS:
        errors.add(
            f"input.{i}.provider.script must be shorter than or equal to {MAX_SCRIPT_CHARS} characters",
            "generation_text_length_exceeded",
        )
    for key in ("stability", "similarityBoost"):
        value = provider.get(key)
        if value is not None and not (_is_number(value) and 0 <= value <= 1):
            errors.add(f"input.{i}.provider.{key} must be a number between 0 and 1")


def _check_counts(kinds: list[str], has_segments: bool, has_dub: bool, errors: _Errors) -> None:
    visual = kinds.count("video") + kinds.count("image")
    audio = kinds.count("audio") + kinds.count("text")
    if visual == 0:
        errors.add("input must include one video input", "generation_video_missing")
    elif visual > 1:
        errors.add("input must include exactly one visual input", "generation_input_too_many_visual")
    if has_dub and audio:
        errors.add(
            "dubParams cannot be combined with audio or text input", "generation_input_dub_audio_conflict"
        )
    elif audio == 0 and not has_dub:
        errors.add("input must include at least one audio or text input", "generation_audio_missing")
    elif audio > 1 and not has_segments:
        errors.add("input may include several audio or text inputs only together with segments")


def _check_ref_ids(audio_items: list[dict[str, Any]], has_segments: bool, errors: _Errors) -> set[str]:
    ref_ids = [item.get("refId") for item in audio_items]
    if any(ref is not None and not isinstance(ref, str) for ref in ref_ids):
        errors.add("refId must be a string")
    if has_segments and any(ref is None for ref in ref_ids):
        errors.add("every audio or text input needs a refId when segments are used")
    named = [ref for ref in ref_ids if isinstance(ref, str)]
    if len(named) != len(set(named)):
        errors.add("refId values must be unique")
    return set(named)


def _check_segments(segments: Any, ref_ids: set[str], errors: _Errors) -> None:
    code = "generation_input_segments_invalid"
    if not isinstance(segments, list) or not segments:
        errors.add("segments must be a non-empty array", code)
        return
    spans: list[tuple[float, float]] = []
    for i, segment in enumerate(segments):
        span = _span(segment) if isinstance(segment, dict) else None
        if span is None:
            errors.add(f"segments.{i} needs numeric startTime < endTime", code)
            continue
        spans.append(span)
        audio = segment.get("audioInput")
        if not isinstance(audio, dict) or audio.get("refId") not in ref_ids:
            errors.add(f"segments.{i}.audioInput.refId must reference an audio or text input", code)
        elif ("startTime" in audio or "endTime" in audio) and _span(audio) is None:
            errors.add(f"segments.{i}.audioInput needs startTime and endTime together, start < end", code)
    spans.sort()
    if any(prev[1] > cur[0] for prev, cur in itertools.pairwise(spans)):
        errors.add("segments must not overlap", code)


def _span(obj: dict[str, Any]) -> tuple[float, float] | None:
    start, end = obj.get("startTime"), obj.get("endTime")
    if _is_number(start) and _is_number(end) and 0 <= start < end:
        return (float(start), float(end))
    return None


def _check_options(options: Any, model: Any, errors: _Errors) -> None:
    if not isinstance(options, dict):
        errors.add("options must be an object")
        return
    enums = {"sync_mode": SYNC_MODES, "model_mode": MODEL_MODES, "prompt": PROMPTS}
    for key, allowed in enums.items():
        if key in options and options[key] not in allowed:
            errors.add(f"options.{key} must be one of the following values: {', '.join(allowed)}")
    for key in ("model_mode", "prompt"):
        if key in options and model != "react-1":
            errors.add(f"options.{key} is only supported by react-1")
    temperature = options.get("temperature")
    if temperature is not None and not (_is_number(temperature) and 0 <= temperature <= 1):
        errors.add("options.temperature must be a number between 0 and 1")
    occlusion = options.get("occlusion_detection_enabled")
    if occlusion is not None and not isinstance(occlusion, bool):
        errors.add("options.occlusion_detection_enabled must be a boolean value")
    if options.get("active_speaker_detection") is not None:
        _check_speaker(options["active_speaker_detection"], errors)


def _check_speaker(asd: Any, errors: _Errors) -> None:
    code = "generation_input_face_selection_invalid"
    if not isinstance(asd, dict):
        errors.add("options.active_speaker_detection must be an object", code)
        return
    if "auto_detect" in asd and not isinstance(asd["auto_detect"], bool):
        errors.add("options.active_speaker_detection.auto_detect must be a boolean value", code)
    frame, coords = asd.get("frame_number"), asd.get("coordinates")
    if (frame is None) != (coords is None):
        errors.add("options.active_speaker_detection: frame_number and coordinates go together", code)
    if frame is not None and not (isinstance(frame, int) and not isinstance(frame, bool) and frame >= 0):
        errors.add("options.active_speaker_detection.frame_number must be a non-negative integer", code)
    if coords is not None and not (
        isinstance(coords, list) and len(coords) == 2 and all(map(_is_number, coords))
    ):
        errors.add("options.active_speaker_detection.coordinates must be [x, y]", code)
    boxes = asd.get("bounding_boxes")
    if boxes is not None and not (isinstance(boxes, list) and all(map(_is_box, boxes))):
        errors.add(
            "options.active_speaker_detection.bounding_boxes must be [x1, y1, x2, y2] or null per frame", code
        )


def _is_box(box: Any) -> bool:
    return box is None or (isinstance(box, list) and len(box) == 4 and all(map(_is_number, box)))


def _check_optional_strings(body: dict[str, Any], errors: _Errors) -> None:
    webhook, name = body.get("webhookUrl"), body.get("outputFileName")
    if webhook is not None and not is_url(webhook):
        errors.add("webhookUrl must be a URL address")
    if name is not None and not (isinstance(name, str) and OUTPUT_FILE_NAME.fullmatch(name)):
        errors.add("outputFileName may contain only letters, digits, _ and -, at most 255 characters")
