"""sync.so responses beyond the generation: cost estimates, media-library assets and batches (reference
3.2, 3.8, 3.9; the vendor SDK's types). Parsed leniently like ``Generation``: new fields are ignored and
unknown enum values stay plain strings."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum, nonmember
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class Lenient(BaseModel):
    """A sync.so response: camelCase on the wire, unknown fields ignored, ids kept as strings."""

    model_config = ConfigDict(
        extra="ignore",
        populate_by_name=True,
        alias_generator=to_camel,
        coerce_numbers_to_str=True,
        frozen=True,
    )


class CostEstimate(Lenient):
    """One entry of ``POST /v2/analyze/cost`` (an array, in USD)."""

    estimated_frame_count: float | None = None
    estimated_generation_cost: float


class GenerationCost(Lenient):
    """``GET /v2/generate/{id}/costs``: what sync.so recorded a generation cost. ``total_cost_usd`` is a
    decimal string, or None until ``availability`` is ``complete``."""

    generation_id: str | None = None
    availability: str
    total_cost_usd: str | None = None

    @property
    def usd(self) -> float | None:
        """The total in USD once complete, else None."""
        if self.availability != "complete" or self.total_cost_usd is None:
            return None
        return float(self.total_cost_usd)


class UploadTicket(Lenient):
    """``POST /v2/assets/upload``: where to PUT the bytes, and the URL to register as an asset."""

    upload_url: str
    url: str
    expires_in: float | None = None


class Asset(Lenient):
    id: str
    created_at: datetime | None = None
    name: str | None = None
    url: str | None = None
    size: int | None = None
    format: str | None = None
    type: str | None = None
    input_type: str | None = None
    duration_seconds: float | None = None
    visibility: str | None = None


class AssetPage(Lenient):
    items: list[Asset]
    next_cursor: str | None = None
    total_count: int | None = None


class BatchStatus(StrEnum):
    PENDING = "PENDING"
    JOBS_CREATED = "JOBS_CREATED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"

    TERMINAL = nonmember(frozenset({COMPLETED, FAILED}))


class BatchMetrics(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    total_generations: int = 0
    success_count: int = 0
    failed_count: int = 0
    pending_count: int = 0


class Batch(Lenient):
    """A BatchResponse. Its ``created_at`` is snake_case on the wire, unlike everything else."""

    id: str
    status: str
    created_at: datetime | None = Field(None, validation_alias=AliasChoices("created_at", "createdAt"))
    metrics: BatchMetrics = BatchMetrics()
    webhook_url: str | None = None
    output_url: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in BatchStatus.TERMINAL


class BatchValidated(Lenient):
    """The answer to a ``dry_run``: the file would be accepted."""

    status: str


class BatchRow(BaseModel):
    """One row of a batch's results file [INF: the reference names the fields, not their spelling, so
    both spellings are read]."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    request_id: str = Field(validation_alias=AliasChoices("request_id", "requestId"))
    generation_id: str | None = Field(None, validation_alias=AliasChoices("generation_id", "generationId"))
    status: str
    output_url: str | None = Field(
        None, validation_alias=AliasChoices("output_url", "outputUrl", "outputMediaUrl")
    )
    error: str | None = None
    error_code: str | None = Field(None, validation_alias=AliasChoices("error_code", "errorCode"))

    def generation(self) -> dict[str, Any]:
        """The row as a Generation body (what a lipsync job's download stage reads)."""
        return {
            "id": self.generation_id or "",
            "status": self.status,
            "outputUrl": self.output_url,
            "error": self.error,
            "errorCode": self.error_code,
        }
