"""What one job's outputs may take together: ``GENQ_CAPS__MAX_JOB_OUTPUT_BYTES``.

Every download of a job tells its ``OutputBudget`` how many bytes it will have written (the declared
Content-Length before the body, then its count as it grows: ``worker.providers.http.stream_into``).
The budget records that under the download's stage, in one Redis hash per job, and reads the job's
total in the same transaction, so parallel downloads (a music job's executions) are held to one sum,
not each to the cap alone. A download over it raises ``OutputTooLarge``: the job fails, and the
download's partial file is removed. A download run again (a retry, a redelivery, a replay) replaces its
own entry, so no byte counts twice; one that failed otherwise keeps its entry, since it will fetch the
same output again.
"""

from __future__ import annotations

import redis

from schemas import layout as L
from schemas.caps import setting
from worker.providers.http import OutputTooLarge


class OutputBudget:
    """The job's output bytes as one download sees them: call it with the bytes this download will
    have written; past the job's cap it raises ``OutputTooLarge``."""

    def __init__(
        self, client: redis.Redis, job_id: str, download: str, cap_bytes: int, *, provider: str
    ) -> None:
        self.redis, self.key, self.download = client, L.output_bytes_key(job_id), download
        self.cap_bytes, self.provider = cap_bytes, provider

    def __call__(self, written_bytes: int) -> None:
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key, self.download, written_bytes)
            pipe.hvals(self.key)
            pipe.expire(self.key, L.JOB_TTL_S)
            _, counts, _ = pipe.execute()
        total = sum(int(count) for count in counts)
        if total <= self.cap_bytes:
            return
        self.redis.hset(self.key, self.download, 0)  # this download writes nothing after all
        raise OutputTooLarge(
            f"the job's outputs would be {total} bytes; one job may write at most {self.cap_bytes} "
            f"({setting('max_job_output_bytes')})",
            provider=self.provider,
            code="output_too_large",
        )
