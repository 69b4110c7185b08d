"""The wire contract between producers and workers: job requests and job records. Pure pydantic."""

from schemas.avatar import AvatarRequest
from schemas.base import JobRequestBase, is_local_path
from schemas.lipsync import LipsyncModel, LipsyncRequest
from schemas.lipsync_batch import LipsyncBatchRequest
from schemas.music import MusicRequest
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
from schemas.requests import JOB_REQUEST, KINDS, SUBMITTABLE, JobRequest, Kind

__all__ = [
    "JOB_REQUEST",
    "KINDS",
    "SUBMITTABLE",
    "TERMINAL_STATUSES",
    "AvatarRequest",
    "JobError",
    "JobRecord",
    "JobRequest",
    "JobRequestBase",
    "JobStatus",
    "Kind",
    "LipsyncBatchRequest",
    "LipsyncModel",
    "LipsyncRequest",
    "MusicRequest",
    "Output",
    "ParkedWait",
    "StageState",
    "StageStatus",
    "is_local_path",
]
