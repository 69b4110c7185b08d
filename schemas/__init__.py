"""The wire contract between producers and workers: job requests and job records. Pure pydantic."""

from schemas.records import (
    TERMINAL_STATUSES,
    JobError,
    JobRecord,
    JobStatus,
    Output,
    ParkedWait,
    StageState,
    StageStatus,
)
from schemas.requests import JOB_REQUEST, JobRequest, LipsyncModel, LipsyncRequest, is_local_path

__all__ = [
    "JOB_REQUEST",
    "TERMINAL_STATUSES",
    "JobError",
    "JobRecord",
    "JobRequest",
    "JobStatus",
    "LipsyncModel",
    "LipsyncRequest",
    "Output",
    "ParkedWait",
    "StageState",
    "StageStatus",
    "is_local_path",
]
