"""The Generation object of the simulated sync.so API: its status machine, outcomes and wire form.

A generation's status is a function of time fixed at creation (PENDING until `processing_at`,
PROCESSING until `terminal_at`, then its outcome), so nothing runs in the background and every
transition time is known exactly. A leaf module: `state` creates generations, `batch` groups them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from simulators.media import MediaInput
from simulators.syncso.validate import CreateRequest


class Status(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    REJECTED = "REJECTED"


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.REJECTED})
UNSUCCESSFUL = frozenset({Status.FAILED, Status.REJECTED})

# Documented generation failure codes with the human message the simulator puts in `error`.
TRANSIENT_ERRORS = {
    "generation_timeout": "Generation timed out.",
    "generation_pipeline_failed": "Generation pipeline failed.",
    "generation_unhandled_error": "An unexpected error occurred during generation.",
    "generation_database_error": "A database error occurred during generation.",
    "generation_infra_storage_error": "A storage error occurred during generation.",
    "generation_infra_resource_exhausted": "Processing resources are exhausted.",
    "generation_infra_service_unavailable": "A processing service is unavailable.",
}
REJECT_ERRORS = {
    "generation_media_metadata_missing": "The media has no duration or frame-rate metadata.",
    "generation_audio_length_exceeded": "The audio is longer than 300 seconds.",
    "generation_input_audio_invalid": "The audio input could not be decoded.",
    "generation_input_video_inaccessible": "The video input could not be downloaded.",
    "generation_input_audio_inaccessible": "The audio input could not be downloaded.",
    "generation_input_face_selection_invalid": "No face was found at the selected position.",
}


class OutcomeFault(BaseModel):
    """`POST /_sim/faults` body forcing how the next `times` created generations end."""

    model_config = ConfigDict(extra="forbid")

    route: Literal["syncso.outcome"]
    status: Literal["COMPLETED", "FAILED", "REJECTED"]
    error_code: str | None = None
    error: str | None = None
    times: int = Field(1, ge=1)


@dataclass(frozen=True)
class Outcome:
    status: Status
    error_code: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Generation:
    id: str
    seq: int
    created_at: float
    request: CreateRequest
    processing_at: float
    terminal_at: float
    outcome: Outcome
    idempotency_key: str | None
    inputs: tuple[tuple[str, MediaInput], ...] = ()  # (field, what it was given): see `inputs`

    def status_at(self, now: float) -> Status:
        if now <= self.created_at:
            return Status.PENDING  # the create response says PENDING even with zero durations
        if now >= self.terminal_at:
            return self.outcome.status
        # A REJECTED generation never processes: it stays PENDING until it is refused.
        if now < self.processing_at or self.outcome.status is Status.REJECTED:
            return Status.PENDING
        return Status.PROCESSING

    def exists_at(self, now: float) -> bool:
        """False before `created_at`: a batch's generations exist only once its jobs are created."""
        return now >= self.created_at

    def to_wire(self, now: float, output_url: str | None, output_duration_s: float) -> dict[str, Any]:
        """The API's Generation object; `output_url` is used only once COMPLETED."""
        status = self.status_at(now)
        done = status is Status.COMPLETED
        failed = status in UNSUCCESSFUL
        error_code = self.outcome.error_code if failed else None
        req = self.request
        return {
            "id": self.id,
            "createdAt": iso_time(self.created_at),
            "status": status.value,
            "model": req.model,
            "input": req.input,
            "options": req.options,
            "segments": req.segments,
            "webhookUrl": req.webhook_url,
            "outputFileName": req.output_file_name,
            "outputUrl": output_url if done else None,
            "outputDuration": output_duration_s if done else None,
            "segmentOutputUrl": None,
            "error": self.outcome.error if failed else None,
            "error_code": error_code,
            "errorCode": error_code,
            **req.extra,
        }


def iso_time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def forced_outcome(fault: OutcomeFault, rng: random.Random) -> Outcome:
    status = Status(fault.status)
    if status is Status.COMPLETED:
        return Outcome(status)
    catalogue = REJECT_ERRORS if status is Status.REJECTED else TRANSIENT_ERRORS
    code = fault.error_code or rng.choice(sorted(catalogue))
    return Outcome(status, code, fault.error or catalogue.get(code, f"Generation {status.value.lower()}."))
