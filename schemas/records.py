"""Job records: what the job store holds and ``genq status`` shows."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SerializeAsAny

from schemas.pipeline import OUTCOME_PREFIX
from schemas.requests import STORED_REQUEST, JobRequest


def _any_request(value: Any) -> Any:
    return value if isinstance(value, JobRequest) else STORED_REQUEST.validate_python(value)


# A request of any kind: parsed by its ``kind``, and serialised with every field of its own model.
AnyRequest = Annotated[SerializeAsAny[JobRequest], BeforeValidator(_any_request)]


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class StageStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"  # the provider is working; the stage checks back later
    THROTTLED = "throttled"  # a provider budget is spent; the stage runs when it frees
    RETRYING = "retrying"
    DONE = "done"
    FAILED = "failed"


class StageState(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    status: StageStatus = StageStatus.PENDING
    attempts: int = 0
    detail: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class JobError(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: str
    message: str
    provider: str | None = None
    code: str | None = None
    status_code: int | None = None
    retryable: bool = False
    request_id: str | None = None  # the provider's id of the failed request, for its support
    # The names in ``provider_ids`` of the provider job that failed at the provider (a generation FAILED,
    # a render failed), its own id first: ``genq replay --fresh`` drops them, so a new one is made.
    failed_provider_ids: tuple[str, ...] = ()


class Output(BaseModel):
    """One output of a job. ``path``: the file (a file store) or the object's key (S3). ``store_url``
    names it wherever it is (``file:///…``, ``s3://bucket/key``); records written before the output store
    have none. ``download_url`` is never stored: whoever reads the record with the store's settings adds a
    short-lived presigned GET URL (``Producer.get``, ``genq status --json``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    bytes: int
    sha256: str
    duration_s: float | None = None
    store_url: str | None = None
    content_type: str | None = None
    download_url: str | None = None


class StepOutcome(BaseModel):
    """How one run of a pipeline's step ended (the pipeline record keeps it as ``data["step:dub[1]"]``):
    its job's end, or ``skipped`` (what it waits for did not succeed, so it never made a job)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Literal["succeeded", "failed", "cancelled", "skipped"]
    job: str | None = None
    outputs: list[Output] = Field(default_factory=list)
    error: JobError | None = None
    reason: str | None = None
    cost_usd: float | None = None


class JobRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    kind: str
    status: JobStatus
    request: AnyRequest
    tenant: str | None = None
    pipeline: str | None = None  # the pipeline whose step this job runs, if any
    # What the job was charged (USD), once settled against its tenant's budget; a pipeline's is the sum of
    # its steps' jobs'.
    cost_usd: float | None = None
    reserved_usd: float | None = None  # what it reserved against its tenant's budget, once it did
    stages: dict[str, StageState] = Field(default_factory=dict)
    provider_ids: dict[str, str] = Field(default_factory=dict)
    # What stages produced for later ones (e.g. a music job's analysis and plan), by name.
    data: dict[str, Any] = Field(default_factory=dict)
    outputs: list[Output] = Field(default_factory=list)
    error: JobError | None = None
    attempts: int = 0
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def step_outcome(self, node: str) -> StepOutcome | None:
        """How a pipeline's run ``node`` (``dub[1]``) ended, if it has."""
        raw = self.data.get(OUTCOME_PREFIX + node)
        return StepOutcome.model_validate(raw) if raw is not None else None


class ParkedWait(BaseModel):
    """A stage parked until a provider job ends (``genq status`` shows it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str
    provider_id: str
    stage: str
    since: datetime
    deadline: datetime
    next_check: datetime | None = None  # None: a sweep is checking it now
