"""Job requests: what a backend submits. Strict, frozen, JSON on the wire.

A media input is a string: an ``http(s)://`` URL that the provider fetches itself, or an absolute
path to a local file that the workers upload (producers and workers must then share that path).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, model_validator

_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)


def _media_source(value: str) -> str:
    if _URL.match(value) or value.startswith("/"):
        return value
    raise ValueError("must be an http(s) URL or an absolute file path")


MediaSource = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_media_source)]


def is_local_path(source: str) -> bool:
    """True when a media source names a local file rather than a URL."""
    return source.startswith("/")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class ActiveSpeakerDetection(Strict):
    auto_detect: bool | None = None
    frame_number: int | None = Field(None, ge=0)
    coordinates: tuple[float, float] | None = None
    bounding_boxes: list[tuple[float, float, float, float] | None] | None = None

    @model_validator(mode="after")
    def _frame_and_point_together(self) -> ActiveSpeakerDetection:
        if (self.frame_number is None) != (self.coordinates is None):
            raise ValueError("frame_number and coordinates must be given together")
        return self


class LipsyncOptions(Strict):
    sync_mode: SyncMode | None = None
    temperature: float | None = Field(None, ge=0, le=1)
    active_speaker_detection: ActiveSpeakerDetection | None = None
    occlusion_detection_enabled: bool | None = None
    model_mode: Literal["lips", "face", "head"] | None = None
    prompt: Literal["happy", "sad", "angry", "disgusted", "surprised", "neutral"] | None = None


class LipsyncRequest(Strict):
    """A sync.so lipsync job: one video plus one audio track or one text-to-speech script."""

    kind: Literal["lipsync"] = "lipsync"
    model: LipsyncModel
    video: MediaSource
    audio: MediaSource | None = None
    tts: TextToSpeech | None = None
    options: LipsyncOptions = LipsyncOptions()
    output_file_name: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,255}$")
    # Jobs of different tenants share a provider budget round-robin.
    tenant: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")

    @model_validator(mode="after")
    def _one_audio_input(self) -> LipsyncRequest:
        if (self.audio is None) == (self.tts is None):
            raise ValueError("give exactly one of audio or tts")
        react_only = {"model_mode": self.options.model_mode, "prompt": self.options.prompt}
        for name, value in react_only.items():
            if value is not None and self.model is not LipsyncModel.REACT_1:
                raise ValueError(f"options.{name} is only accepted by react-1")
        return self

    def local_files(self) -> list[str]:
        """Local paths this request reads (the producer checks they exist)."""
        return [s for s in (self.video, self.audio) if s is not None and is_local_path(s)]


# The union of every job kind, discriminated by ``kind``. Later providers add their request types here.
JobRequest = Annotated[LipsyncRequest, Field(discriminator="kind")]
JOB_REQUEST: TypeAdapter[JobRequest] = TypeAdapter(JobRequest)
