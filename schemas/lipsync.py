"""The ``lipsync`` job request: a sync.so generation from one video (or, on sync-3, one image) and one
audio track, one text-to-speech script, or several named tracks laid on time segments of the video.

Every rule sync.so states for its create call is checked here, so a job that breaks one is refused at
submit with a line naming the field instead of failing at create (reference section 3.3).
"""

from __future__ import annotations

import itertools
import re
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field, model_validator

from schemas.base import HttpUrl, JobRequestBase, Strict, media_source
from schemas.caps import Caps, over

# An input already in the account's media library is named ``asset:<id>``.
ASSET_PREFIX = "asset:"
_ASSET_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
# sync.so takes one upload of at most 5 GiB per file (POST /v2/assets/upload).
MAX_UPLOAD_BYTES = 5 * 1024**3


def _sync_source(value: str) -> str:
    if value.startswith(ASSET_PREFIX):
        if _ASSET_ID.fullmatch(value.removeprefix(ASSET_PREFIX)):
            return value
        raise ValueError("an asset input is 'asset:<id>' with an id of letters, digits, '_' and '-'")
    return media_source(value)


def asset_id(source: str) -> str | None:
    """The asset id of an ``asset:<id>`` source, else None."""
    return source.removeprefix(ASSET_PREFIX) if source.startswith(ASSET_PREFIX) else None


# A sync.so input: an http(s) URL sync.so fetches, an absolute path of a local file the workers upload,
# or ``asset:<id>`` for a file already in the account's media library.
SyncSource = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_sync_source)]
RefId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
Seconds = Annotated[float, Field(ge=0, le=24 * 3600)]


class LipsyncModel(StrEnum):
    """The sync.so models documented for ``POST /v2/generate``."""

    LIPSYNC_2 = "lipsync-2"
    LIPSYNC_2_PRO = "lipsync-2-pro"
    LIPSYNC_1_9_0_BETA = "lipsync-1.9.0-beta"
    REACT_1 = "react-1"
    SYNC_3 = "sync-3"


class SyncMode(StrEnum):
    BOUNCE = "bounce"
    LOOP = "loop"
    CUT_OFF = "cut_off"
    SILENCE = "silence"
    REMAP = "remap"


class TextToSpeech(Strict):
    """ElevenLabs text-to-speech instead of an audio file."""

    voice_id: str = Field(min_length=1, max_length=256)
    script: str = Field(min_length=1, max_length=5000)
    stability: float | None = Field(None, ge=0, le=1)
    similarity_boost: float | None = Field(None, ge=0, le=1)


class AudioTrack(Strict):
    """A named audio input for ``segments``: an audio file or a text-to-speech script."""

    ref_id: RefId
    audio: SyncSource | None = None
    tts: TextToSpeech | None = None

    @model_validator(mode="after")
    def _one_source(self) -> AudioTrack:
        if (self.audio is None) == (self.tts is None):
            raise ValueError("give exactly one of audio or tts")
        return self


def _span_problem(start: float | None, end: float | None) -> str | None:
    if start is not None and end is not None and start >= end:
        return "start_time must be before end_time"
    return None


class SegmentAudio(Strict):
    """Which track a segment plays, optionally cropped to ``start_time``..``end_time`` of it."""

    ref_id: RefId
    start_time: Seconds | None = None
    end_time: Seconds | None = None

    @model_validator(mode="after")
    def _crop(self) -> SegmentAudio:
        if (self.start_time is None) != (self.end_time is None):
            raise ValueError("start_time and end_time must be given together")
        problem = _span_problem(self.start_time, self.end_time)
        if problem:
            raise ValueError(problem)
        return self


class Segment(Strict):
    """A time range of the video (seconds) and the track lip-synced onto it."""

    start_time: Seconds
    end_time: Seconds
    audio_input: SegmentAudio

    @model_validator(mode="after")
    def _range(self) -> Segment:
        problem = _span_problem(self.start_time, self.end_time)
        if problem:
            raise ValueError(problem)
        return self


class ActiveSpeakerDetection(Strict):
    auto_detect: bool | None = None
    frame_number: int | None = Field(None, ge=0)
    coordinates: tuple[float, float] | None = None
    bounding_boxes: list[tuple[float, float, float, float] | None] | None = None
    bounding_boxes_url: HttpUrl | None = None

    @model_validator(mode="after")
    def _one_way_to_pick_the_speaker(self) -> ActiveSpeakerDetection:
        if (self.frame_number is None) != (self.coordinates is None):
            raise ValueError("frame_number and coordinates must be given together")
        ways = [self.frame_number is not None, self.bounding_boxes is not None, bool(self.bounding_boxes_url)]
        if sum(ways) > 1:
            raise ValueError(
                "give one of frame_number with coordinates, bounding_boxes or bounding_boxes_url"
            )
        return self


class LipsyncOptions(Strict):
    sync_mode: SyncMode | None = None
    temperature: float | None = Field(None, ge=0, le=1)
    active_speaker_detection: ActiveSpeakerDetection | None = None
    occlusion_detection_enabled: bool | None = None
    model_mode: Literal["lips", "face", "head"] | None = None
    prompt: Literal["happy", "sad", "angry", "disgusted", "surprised", "neutral"] | None = None
    # Options of the older API reference (seed 002), still accepted by sync.so.
    pads: tuple[int, int, int, int] | None = None
    speedup: Literal[1, 2, 3, 4] | None = None
    output_format: Literal["mp4", "mov"] | None = None
    fps: float | None = Field(None, gt=0, le=120)
    output_resolution: (
        tuple[Annotated[int, Field(gt=0, le=8192)], Annotated[int, Field(gt=0, le=8192)]] | None
    ) = None
    active_speaker: bool | None = None

    @model_validator(mode="after")
    def _pads_not_negative(self) -> LipsyncOptions:
        if self.pads is not None and min(self.pads) < 0:
            raise ValueError("pads must not be negative")
        return self


class LipsyncRequest(JobRequestBase):
    """A sync.so lipsync job."""

    max_local_file_bytes: ClassVar[int | None] = MAX_UPLOAD_BYTES

    kind: Literal["lipsync"] = "lipsync"
    model: LipsyncModel
    video: SyncSource | None = None
    image: SyncSource | None = None  # instead of a video, on sync-3 only
    audio: SyncSource | None = None
    tts: TextToSpeech | None = None
    tracks: list[AudioTrack] | None = Field(None, min_length=1, max_length=32)
    segments: list[Segment] | None = Field(None, min_length=1, max_length=256)
    options: LipsyncOptions = LipsyncOptions()
    output_file_name: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,255}$")
    # Refuse the job (before anything is created) when sync.so's estimate is higher.
    max_cost_usd: float | None = Field(None, gt=0, le=1_000_000)

    @model_validator(mode="after")
    def _inputs_fit_together(self) -> LipsyncRequest:
        if (self.video is None) == (self.image is None):
            raise ValueError("give exactly one of video or image")
        if self.image is not None and self.model is not LipsyncModel.SYNC_3:
            raise ValueError("image input is only accepted by sync-3")
        if sum(x is not None for x in (self.audio, self.tts, self.tracks)) != 1:
            raise ValueError("give exactly one of audio, tts or tracks")
        if (self.tracks is None) != (self.segments is None):
            raise ValueError("tracks and segments go together: each segment plays one track by ref_id")
        react_only = {"model_mode": self.options.model_mode, "prompt": self.options.prompt}
        for name, value in react_only.items():
            if value is not None and self.model is not LipsyncModel.REACT_1:
                raise ValueError(f"options.{name} is only accepted by react-1")
        return self

    @model_validator(mode="after")
    def _segments_play_known_tracks(self) -> LipsyncRequest:
        if self.tracks is None or self.segments is None:
            return self
        ref_ids = [track.ref_id for track in self.tracks]
        repeated = sorted({r for r in ref_ids if ref_ids.count(r) > 1})
        if repeated:
            raise ValueError(f"tracks: ref_id {', '.join(repeated)} is used twice")
        for i, segment in enumerate(self.segments):
            if segment.audio_input.ref_id not in ref_ids:
                raise ValueError(
                    f"segments.{i}.audio_input.ref_id: no track has ref_id {segment.audio_input.ref_id!r}"
                )
        spans = sorted((s.start_time, s.end_time, i) for i, s in enumerate(self.segments))
        for (_, end, first), (start, _, second) in itertools.pairwise(spans):
            if start < end:
                raise ValueError(f"segments.{first} and segments.{second} overlap")
        return self

    def sources(self) -> dict[str, str]:
        """Every media input by field path (``video``, ``audio``, ``tracks.1.audio`` ...)."""
        found = {"video": self.video, "image": self.image, "audio": self.audio}
        found |= {f"tracks.{i}.audio": track.audio for i, track in enumerate(self.tracks or ())}
        return {name: source for name, source in found.items() if source is not None}

    def over_caps(self, caps: Caps) -> list[str]:
        boxes = self.options.active_speaker_detection and self.options.active_speaker_detection.bounding_boxes
        problems = [
            over("options.active_speaker_detection.bounding_boxes", len(boxes or ()), "bounding boxes",
                 caps.max_bounding_boxes, "max_bounding_boxes"),
            over("segments", len(self.segments or ()), "segments", caps.max_segments, "max_segments"),
        ]  # fmt: skip
        return [p for p in problems if p]
