"""The ``lipsync`` job request: a sync.so generation from one video and one audio track or script."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from schemas.base import JobRequestBase, MediaSource, Strict, is_local_path


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


class LipsyncRequest(JobRequestBase):
    """A sync.so lipsync job: one video plus one audio track or one text-to-speech script."""

    kind: Literal["lipsync"] = "lipsync"
    model: LipsyncModel
    video: MediaSource
    audio: MediaSource | None = None
    tts: TextToSpeech | None = None
    options: LipsyncOptions = LipsyncOptions()
    output_file_name: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,255}$")

    @model_validator(mode="after")
    def _one_audio_input(self) -> LipsyncRequest:
        if (self.audio is None) == (self.tts is None):
            raise ValueError("give exactly one of audio or tts")
        react_only = {"model_mode": self.options.model_mode, "prompt": self.options.prompt}
        for name, value in react_only.items():
            if value is not None and self.model is not LipsyncModel.REACT_1:
                raise ValueError(f"options.{name} is only accepted by react-1")
        return self

    def local_files(self) -> dict[str, str]:
        sources = {"video": self.video, "audio": self.audio}
        return {name: s for name, s in sources.items() if s is not None and is_local_path(s)}
