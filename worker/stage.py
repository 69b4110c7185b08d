"""The life of one stage run: load the job, skip it if it ended, run the plain function, and map what
happened to the job record and to Celery.

Stage functions stay plain and testable; they signal with return values and exceptions:
- return normally: the stage is done and the chain moves on;
- raise ``Later`` (worker.outcomes): run this stage again after a countdown: a status check that found
  the provider still working, or a rate budget whose turn for this job comes later. No worker slot is
  held meanwhile and no retry is spent;
- raise ``Parked`` (worker.limits): the stage waits in the limiter for a concurrency slot and is re-run
  with the slot granted when one frees; its message is acknowledged now;
- raise ``Stop``: the job was cancelled and nothing more is to be done for it;
- raise ``Throttled`` outside a gate: run again after Retry-After, without spending a retry;
- raise a retryable ``ProviderError``: retry with backoff, up to ``retry.max_retries``, then fail the job
  and put it in the dead-letter set;
- raise any other ``ProviderError``: fail the job at once with the provider's message.
A job that fails or is cancelled gives back every concurrency slot it holds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NoReturn

from celery import Task
from celery.exceptions import Ignore

from schemas import JobError, JobRecord, JobStatus, StageState, StageStatus
from worker.context import Context, get_context
from worker.limits import Gate, Parked
from worker.outcomes import JobFailed, Later, Stop
from worker.parking import rerun_message
from worker.providers.errors import ProviderError, Throttled
from worker.retry import backoff_s, throttle_delay_s
from worker.store import JobMissing

log = logging.getLogger(__name__)


class Stage(Task):  # type: ignore[type-arg]
    """Base class of every genq stage task."""

    abstract = True
    # A failed job is an expected outcome: logged as one line, without a traceback.
    throws = (JobFailed,)
    stage: str = ""
    # A stage that must keep following the provider job of a cancelled job (to free its slot when the
    # provider job really ends, where the provider has no cancel call).
    follows_cancelled: bool = False

    @property
    def ctx(self) -> Context:
        return get_context()

    @contextmanager
    def running(self, job_id: str) -> Iterator[tuple[JobRecord, Gate]]:
        job = self._begin(job_id)
        gate = Gate(self.ctx.limiter, self.ctx.settings.limits, job, self._rerun)
        store = self.ctx.store
        try:
            yield job, gate
        except Parked as parked:
            store.update_stage(job_id, self.stage, StageStatus.THROTTLED, detail=str(parked))
            raise Ignore() from None
        except Later as later:
            store.update_stage(job_id, self.stage, later.status, detail=later.detail)
            self._again(job_id, later.countdown_s, later.args_)
        except Stop as stop:
            store.update_stage(job_id, self.stage, StageStatus.DONE, detail=str(stop), finished_at=_now())
            raise Ignore() from None
        except Throttled as exc:
            delay = throttle_delay_s(exc, self.request.retries, base_s=1.0, cap_s=self._max_countdown_s())
            store.update_stage(job_id, self.stage, StageStatus.THROTTLED, detail=str(exc))
            self._again(job_id, delay, None)
        except ProviderError as exc:
            self._failed(job_id, exc)
        else:
            store.update_stage(job_id, self.stage, StageStatus.DONE, finished_at=_now())

    def _begin(self, job_id: str) -> JobRecord:
        store = self.ctx.store
        try:
            job = store.get(job_id)
        except JobMissing:
            log.warning("job %s has no record; %s dropped", job_id, self.name)
            raise Ignore() from None
        following = self.follows_cancelled and job.status is JobStatus.CANCELLED
        if job.is_terminal and not following:
            log.info("job %s is %s; %s skipped", job_id, job.status.value, self.name)
            self._release_slots(job_id)
            raise Ignore()
        if job.status is JobStatus.QUEUED:
            store.transition(job_id, JobStatus.RUNNING)
        state = job.stages.get(self.stage, StageState())  # the record just read holds it
        store.start_stage(
            job_id,
            self.stage,
            StageState(
                status=StageStatus.RUNNING, attempts=state.attempts + 1, started_at=state.started_at or _now()
            ),
        )
        return job

    def _rerun(self) -> tuple[str, str]:
        return rerun_message(self, tuple(self.request.args or ()))

    def _release_slots(self, job_id: str) -> None:
        for pool in self.ctx.budgets.pools:
            self.ctx.limiter.release(pool, job_id)

    def _max_countdown_s(self) -> float:
        # A message waiting for its countdown sits unacknowledged in the worker; past the visibility
        # timeout Redis would hand it to a second worker, so countdowns stay well below it.
        return self.ctx.settings.visibility_timeout_s / 4

    def _again(self, job_id: str, countdown_s: float, args: tuple[Any, ...] | None) -> NoReturn:
        """Run this stage again after ``countdown_s``, its message put at the *front* of its queue: the
        job already holds its slot, or a turn reserved for that moment, so it goes before stages that
        have neither. (A worker takes the message at once and runs it at its ETA.)"""
        countdown_s = max(0.0, min(countdown_s, self._max_countdown_s()))
        next_args = args if args is not None else tuple(self.request.args or (job_id,))
        queue, message = rerun_message(self, next_args, countdown_s=countdown_s)
        self.ctx.redis.rpush(queue, message)  # kombu's consumers pop from the right: first in line
        raise Ignore()

    def _failed(self, job_id: str, exc: ProviderError) -> NoReturn:
        retry = self.ctx.settings.retry
        store = self.ctx.store
        if exc.retryable and self.request.retries < retry.max_retries:
            backoff = backoff_s(self.request.retries, base_s=retry.backoff_base_s, cap_s=retry.backoff_cap_s)
            store.update_stage(job_id, self.stage, StageStatus.RETRYING, detail=str(exc))
            raise self.retry(
                exc=exc, countdown=min(backoff, self._max_countdown_s()), max_retries=retry.max_retries
            )
        error = JobError(
            stage=self.stage,
            message=exc.message,
            provider=exc.provider,
            code=exc.code,
            status_code=exc.status_code,
            retryable=exc.retryable,
        )
        store.update_stage(job_id, self.stage, StageStatus.FAILED, detail=str(exc), finished_at=_now())
        store.fail(job_id, error, dead_letter=exc.retryable)
        self._release_slots(job_id)
        raise JobFailed(f"job {job_id} failed at {self.stage}: {exc}")


def _now() -> datetime:
    return datetime.now(UTC)
