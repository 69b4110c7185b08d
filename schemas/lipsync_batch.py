"""The ``lipsync_batch`` record: lipsync jobs sent to sync.so as one batch file (reference 3.8).

``Producer.submit_batch`` stores one such record beside its member jobs, and its stages run the batch:
each member stays an ordinary lipsync job with its own record, output and error. It is never submitted
on its own (``Kind.submittable`` is False).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from schemas.base import JobRequestBase
from schemas.lipsync_wire import BATCH_MAX_RECORDS, BATCH_MIN_RECORDS

RequestId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,128}$")]
JobId = Annotated[str, Field(pattern=r"^[0-9a-f]{1,64}$")]


class LipsyncBatchRequest(JobRequestBase):
    kind: Literal["lipsync_batch"] = "lipsync_batch"
    jobs: list[JobId] = Field(min_length=BATCH_MIN_RECORDS, max_length=BATCH_MAX_RECORDS)
    # The batch file's request_id of each job, in the same order (the job id unless the caller gave one).
    request_ids: list[RequestId]

    @model_validator(mode="after")
    def _one_unique_id_per_job(self) -> LipsyncBatchRequest:
        if len(self.request_ids) != len(self.jobs):
            raise ValueError("request_ids must name each job once")
        if len(set(self.request_ids)) != len(self.request_ids):
            raise ValueError("request_ids must be unique")
        return self
