"""`POST /sync_generate`: decoding its multipart body and building the Plan (reference 1.5-1.7).

Parts: `analysis` (the video analysis JSON, a file part), optional `audio_analysis` (JSON) and
`payload` (JSON text: `taskid` plus the plan options). [INF] A part is accepted as a file or a plain
field alike, and unknown parts and payload keys are ignored. The plan's per-section fields are not
published: the simulator writes `{"index", "start", "end", "beats", "tempo", "key", "instruments",
"vocals", "voiceover"}` with one section per interval between the analysis' cut points.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any, TypeGuard

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from simulators.aimi.responses import Rejected

PARTS = ("analysis", "audio_analysis", "payload")
MAX_PART_BYTES = 4 * 1024 * 1024
DEFAULT_GENRE = "deep"  # [INF] the one documented genre stands in for "the AI picks one"
TEMPO_BPM = 120
KEY = "C"
PARAMETER_PRESETS = (
    {"id": 0, "trackname": "musictracks", "value": 0},
    {"id": 1, "trackname": "utilitytracks", "value": 0},  # [INF] the guide's example is cut at "util"
)


@dataclass(frozen=True)
class PlanOptions:
    """The payload's plan switches; `with_voiceover` defaults to false as on the endpoint page
    ([CONFLICT] the guide says true)."""

    with_vocals: bool = False
    with_voiceover: bool = False
    with_instrument: bool | str = False  # [INF] a string names the instrument, e.g. "harp"
    genre: str = DEFAULT_GENRE
    original_audio: bool = False
    original_audio_voiceover: bool = False
    no_ducking: bool = False
    multitrack: bool = False

    @property
    def needs_audio_analysis(self) -> bool:
        return self.original_audio or self.original_audio_voiceover


@dataclass(frozen=True)
class GenerateRequest:
    taskid: str
    options: PlanOptions
    analysis: dict[str, Any]
    audio_analysis: dict[str, Any] | None


async def read_generate(request: Request) -> GenerateRequest:
    """Decode a `sync_generate` body; raise Rejected when a part is missing or unreadable."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise Rejected("body must be multipart/form-data")
    try:
        async with request.form(max_files=len(PARTS), max_fields=16, max_part_size=MAX_PART_BYTES) as form:
            parts = {name: await _text(value) for name, value in form.multi_items() if name in PARTS}
    except (MultiPartException, HTTPException) as exc:
        # Inside an app Starlette reports parser failures as HTTPException(400, detail=<parser message>).
        raise Rejected(exc.message if isinstance(exc, MultiPartException) else str(exc.detail)) from exc
    for name in ("analysis", "payload"):
        if name not in parts:
            raise Rejected(f"multipart part {name!r} is required")
    payload = _json_object("payload", parts["payload"])
    taskid = payload.get("taskid")
    if not isinstance(taskid, str) or not taskid:
        raise Rejected("payload.taskid is required")
    audio = parts.get("audio_analysis")
    return GenerateRequest(
        taskid,
        plan_options(payload),
        _json_object("analysis", parts["analysis"]),
        None if audio is None else _json_object("audio_analysis", audio),
    )


async def _text(value: UploadFile | str) -> str:
    if isinstance(value, str):
        return value
    try:
        return (await value.read()).decode()
    except UnicodeDecodeError as exc:
        raise Rejected(f"part {value.filename!r} is not UTF-8 text") from exc


def _json_object(name: str, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise Rejected(f"part {name!r} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise Rejected(f"part {name!r} must be a JSON object")
    return value


def plan_options(payload: dict[str, Any]) -> PlanOptions:
    """The payload's options with defaults for those left out; raise Rejected on a wrong type."""
    values: dict[str, Any] = {}
    for name, default in asdict(PlanOptions()).items():
        value = payload.get(name, default)
        if name == "genre":
            value = DEFAULT_GENRE if value is None else value
            valid = isinstance(value, str) and bool(value)
        elif name == "with_instrument":
            valid = isinstance(value, bool) or (isinstance(value, str) and bool(value))
        else:
            valid = isinstance(value, bool)
        if not valid:
            raise Rejected(f"payload.{name} has the wrong type")
        values[name] = value
    return PlanOptions(**values)


def section_bounds(analysis: dict[str, Any]) -> list[float]:
    """0, the cut points inside the video, then its duration; raise Rejected when unusable."""
    duration, cuts = analysis.get("duration"), analysis.get("cut_points")
    if not _is_number(duration) or duration <= 0 or not isinstance(cuts, list):
        raise Rejected("analysis must hold a positive duration and a cut_points list of seconds")
    if not all(_is_number(cut) for cut in cuts):
        raise Rejected("analysis.cut_points must be a list of seconds")
    inside = sorted({float(cut) for cut in cuts if 0 < cut < duration})
    return [0.0, *inside, float(duration)]


def build_plan(
    options: PlanOptions, analysis: dict[str, Any], audio_analysis: dict[str, Any] | None, plan_id: str
) -> dict[str, Any]:
    """The `plan` object: the guide's top-level keys, sections, and the options it was made with."""
    instruments = {part: f"{options.genre}-{part}" for part in ("drums", "bass", "pads", "melody")}
    if options.with_instrument:
        lead = options.with_instrument if isinstance(options.with_instrument, str) else "harp"
        instruments["lead"] = lead
    speech = (audio_analysis or {}).get("speech_segments", [])
    sections = [
        {
            "index": index,
            "start": start,
            "end": end,
            "beats": max(1, round((end - start) * TEMPO_BPM / 60)),
            "tempo": TEMPO_BPM,
            "key": KEY,
            "instruments": dict(instruments),
            "vocals": options.with_vocals,
            "voiceover": _voiceover(options, index, start, end, speech),
        }
        for index, (start, end) in enumerate(pairwise(section_bounds(analysis)))
    ]
    return {
        "id": plan_id,
        "fxstyle": "chill",
        "masterGain": 70,
        "parameterPresets": [dict(preset) for preset in PARAMETER_PRESETS],
        "sections": sections,
        "options": asdict(options),
    }


def _voiceover(
    options: PlanOptions, index: int, start: float, end: float, speech: Any
) -> dict[str, Any] | None:
    ducking = not options.no_ducking
    if options.original_audio_voiceover and isinstance(speech, list):
        inside = [
            s
            for s in speech
            if isinstance(s, dict) and _is_number(s.get("start")) and start <= s["start"] < end
        ]
        return {"source": "original_audio", "segments": inside, "ducking": ducking}
    if options.with_voiceover:
        text = f"Generated voiceover for section {index + 1}."
        return {"source": "generated", "text": text, "start": start, "end": end, "ducking": ducking}
    return None


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)
