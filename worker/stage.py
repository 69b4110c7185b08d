"""The life of one stage run: load the job, skip it if it ended, run the plain function, and map what
happened to the job record and to Celery.

Stage functions stay plain and testable; they signal with return values and exceptions:
- return normally: the stage is done and the chain moves on;
- raise ``Wait`` (worker.outcomes): park until the provider job ends; the account's status sweep or a
  webhook wakes the stage's next run (worker.waits);
- raise ``Later``: run this stage again after a countdown (a rate budget whose turn for this job comes
  later), through the Redis-side schedule (worker.schedule). No worker slot is held meanwhile and no
  retry is spent;
- raise ``Parked`` (worker.limits): the stage waits in the limiter for a concurrency slot and is re-run
  with the slot granted when one frees;
- raise ``Stop``: the job was cancelled and nothing more is to be done for it;
- raise ``Throttled`` outside a gate: run again after Retry-After, without spending a retry;
- raise a retryable ``ProviderError``: retry with backoff through the schedule, up to
  ``retry.max_retries``, then fail the job and put it in the dead-letter set;
- raise any other ``ProviderError``: fail the job at once with the provider's message.
A job that fails or is cancelled gives back every concurrency slot it holds.

Every run ends in a final state in Flower: a run that parks, waits or is re-scheduled ends as a SUCCESS
whose result says so (and does not continue the canvas: the next run, a new task whose parent is this
one, carries it); a retried run ends as RETRY, a failed job as FAILURE.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn

import httpx
import redis
from celery import Task
from celery.exceptions import Ignore, Reject, Retry

from schemas import JobError, JobRecord, JobStatus, StageState, StageStatus
from schemas.inputs import outside_roots, parse_roots
from worker.context import Context, get_context
from worker.limits import Gate, Parked
from worker.outcomes import JobFailed, Later, Stop, Wait
from worker.parking import rerun_message
from worker.providers.errors import BadRequest, InfrastructureError, InternalError, ProviderError, Throttled
from worker.retry import backoff_s, throttle_delay_s
from worker.store import JobMissing

log = logging.getLogger(__name__)

Action = Callable[[JobRecord, Gate], object]
# What a stage retries when it is not a provider's error: Redis, the network, the disk (OSError covers
# a full disk and a refused connection).
INFRASTRUCTURE = (redis.RedisError, OSError, httpx.TransportError)


class _Skip(Exception):
    """This run has nothing to do (the job ended, or its record is gone)."""


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

    def perform(self, job_id: str, action: Action) -> str:
        """Run ``action`` for the job as this stage; return what this run did (Flower shows it).

        Every path ends the run in a defined way. An exception that is not a provider's is either
        infrastructure (Redis, the network, the disk: retried with backoff) or a bug (the job fails and
        is dead-lettered). If Redis cannot be reached to record even that, the message is handed back
        to the broker (rejected with requeue, or left unacknowledged until the visibility timeout), so
        the run happens again once Redis answers; it is never acknowledged unrecorded."""
        try:
            return self._perform(job_id, action)
        except redis.RedisError as exc:
            log.warning("%s of job %s: Redis unavailable (%s); the message goes back to the broker",
                        self.name, job_id, exc)  # fmt: skip
            raise Reject(f"Redis unavailable: {exc}", requeue=True) from exc

    def _perform(self, job_id: str, action: Action) -> str:
        try:
            job = self._begin(job_id)
        except _Skip as skip:
            return self._end_here(f"skipped: {skip}")
        gate = Gate(self.ctx.limiter, self.ctx.settings.limits, job, self._rerun, holder=self.holder(job_id))
        store = self.ctx.store
        try:
            self._check_inputs(job)
            action(job, gate)
        except Parked as parked:
            store.update_stage(job_id, self.state_key, StageStatus.THROTTLED, detail=str(parked))
            return self._end_here(f"parked: {parked}")
        except Wait as wait:
            return self._park(job, wait)
        except Later as later:
            store.update_stage(job_id, self.state_key, later.status, detail=later.detail)
            # A rate turn is reserved for a moment: the time spent recording the state comes off it.
            countdown_s = later.countdown_s - (time.monotonic() - later.raised_at)
            return self._later(job_id, countdown_s, later.args_, later.detail)
        except Stop as stop:
            store.update_stage(job_id, self.state_key, StageStatus.DONE, detail=str(stop), finished_at=_now())
            return self._end_here(f"stopped: {stop}")
        except Throttled as exc:
            retry = self.ctx.settings.retry
            delay = throttle_delay_s(exc, self.request.retries, base_s=1.0, cap_s=retry.backoff_cap_s)
            store.update_stage(job_id, self.state_key, StageStatus.THROTTLED, detail=str(exc))
            return self._later(job_id, delay, None, str(exc))
        except ProviderError as exc:
            self._failed(job_id, exc)
        except (Ignore, Reject, Retry):  # Celery's own control flow (``Task.replace`` raises Ignore)
            raise
        except Exception as exc:  # every path ends: see perform
            self._failed(job_id, self._unexpected(job_id, exc))
        store.update_stage(job_id, self.state_key, StageStatus.DONE, finished_at=_now())
        return "done"

    def _check_inputs(self, job: JobRecord) -> None:
        """Refuse a job whose local inputs are not under the input roots (symlinks resolved now)."""
        roots = parse_roots(self.ctx.settings.input_roots)
        problems = outside_roots(job.request.local_files(), roots)
        if problems:
            raise BadRequest("; ".join(problems), provider="genq", code="genq_input_refused")

    @property
    def branch(self) -> int | None:
        """Which of the job's parallel branches this run is (its second argument), if any: the third
        upload chunk, the second execution ..."""
        args = self.request.args or ()
        return int(args[1]) if len(args) > 1 else None

    @property
    def state_key(self) -> str:
        """Where the job record keeps this stage's state: ``execute[2]`` for a branch."""
        return self.stage if self.branch is None else f"{self.stage}[{self.branch}]"

    def holder(self, job_id: str) -> str:
        """Who holds this run's slots and turns: the job, or ``<job id>:<branch>`` for a branch, so that
        a job's parallel branches hold one slot each."""
        return job_id if self.branch is None else f"{job_id}:{self.branch}"

    def run_key(self, job_id: str) -> str:
        """Names this stage's one pending run of the job (or of its branch) in the schedule."""
        return f"{job_id}:{self.name}" if self.branch is None else f"{job_id}:{self.name}[{self.branch}]"

    def _begin(self, job_id: str) -> JobRecord:
        store = self.ctx.store
        try:
            job = store.get(job_id)
        except JobMissing:
            log.warning("job %s has no record; %s dropped", job_id, self.name)
            self._release_slots(job_id)
            raise _Skip("the job has no record") from None
        following = self.follows_cancelled and job.status is JobStatus.CANCELLED
        if job.is_terminal and not following:
            log.info("job %s is %s; %s skipped", job_id, job.status.value, self.name)
            self._release_slots(job_id)
            raise _Skip(f"the job is {job.status.value}")
        if job.status is JobStatus.QUEUED:
            store.transition(job_id, JobStatus.RUNNING)
        state = job.stages.get(self.state_key, StageState())  # the record just read holds it
        store.start_stage(
            job_id,
            self.state_key,
            StageState(
                status=StageStatus.RUNNING, attempts=state.attempts + 1, started_at=state.started_at or _now()
            ),
        )
        return job

    def _args(self, job_id: str) -> tuple[Any, ...]:
        return tuple(self.request.args or (job_id,))

    def _rerun(self) -> tuple[str, str]:
        return rerun_message(self, tuple(self.request.args or ()))

    def _end_here(self, result: str) -> str:
        """End this run without continuing its canvas: the run parked or scheduled in its place (or
        nothing, for a job that ended) carries it."""
        self.request.chain = None
        self.request.callbacks = None
        self.request.chord = None
        return result

    def _park(self, job: JobRecord, wait: Wait) -> str:
        self.ctx.store.update_stage(job.id, self.state_key, StageStatus.WAITING, detail=str(wait))
        queue, message = rerun_message(self, self._args(job.id))
        parked = self.ctx.waits.park(
            wait.provider,
            wait.account,
            wait.provider_id,
            job=job.id,
            stage=self.state_key,
            queue=queue,
            message=message,
            check_in_s=wait.check_in_s,
            deadline_in_s=wait.deadline_in_s,
        )
        return self._end_here(str(wait) if parked else f"{wait}: it had ended, run again at once")

    def _later(self, job_id: str, delay_s: float, args: tuple[Any, ...] | None, detail: str) -> str:
        """Run this stage again in ``delay_s``, through the Redis-side schedule; its message goes to the
        *front* of its queue then: the job already holds its slot, or a turn reserved for that moment,
        so it goes before stages that have neither."""
        queue, message = rerun_message(self, args if args is not None else self._args(job_id))
        self.ctx.schedule.add(self.run_key(job_id), queue, message, delay_s)
        return self._end_here(f"again in {delay_s:.2f} s: {detail}")

    @property
    def provider(self) -> str:
        """The provider whose stage this is (task names are ``genq.<provider>.<stage>``)."""
        return self.name.split(".")[1]

    def _release_slots(self, job_id: str) -> None:
        """Give back every slot this run's holder (the job, or its branch) has in its provider's pools.
        Each branch gives back its own when it runs next and finds the job ended."""
        for pool in self.ctx.budgets.pools_of(self.provider):
            self.ctx.limiter.release(pool, self.holder(job_id))

    def _unexpected(self, job_id: str, exc: Exception) -> ProviderError:
        """An exception no provider client raised, as the error the job records."""
        detail = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, INFRASTRUCTURE):
            log.warning("%s of job %s: %s (retried)", self.name, job_id, detail)
            return InfrastructureError(detail, provider="genq", code="genq_infrastructure")
        log.exception("%s of job %s failed on an unexpected error", self.name, job_id)
        return InternalError(detail, provider="genq", code="genq_internal_error")

    def _failed(self, job_id: str, exc: ProviderError) -> NoReturn:
        retry = self.ctx.settings.retry
        store = self.ctx.store
        if exc.retryable and self.request.retries < retry.max_retries:
            backoff = backoff_s(self.request.retries, base_s=retry.backoff_base_s, cap_s=retry.backoff_cap_s)
            store.update_stage(job_id, self.state_key, StageStatus.RETRYING, detail=str(exc))
            queue, message = rerun_message(self, self._args(job_id), retries=self.request.retries + 1)
            self.ctx.schedule.add(self.run_key(job_id), queue, message, backoff)
            raise Retry(str(exc), exc=exc, when=round(backoff, 2))  # type: ignore[arg-type]
        error = JobError(
            stage=self.state_key,
            message=exc.message,
            provider=exc.provider,
            code=exc.code,
            status_code=exc.status_code,
            retryable=exc.retryable,
            request_id=exc.request_id,
        )
        store.update_stage(job_id, self.state_key, StageStatus.FAILED, detail=str(exc), finished_at=_now())
        store.fail(job_id, error, dead_letter=exc.retryable or isinstance(exc, InternalError))
        self._release_slots(job_id)
        self.on_failed(job_id, error)
        raise JobFailed(f"job {job_id} failed at {self.state_key}: {exc}")

    def on_failed(self, job_id: str, error: JobError) -> None:
        """After the job failed: what else must end with it (a batch's jobs). Nothing by default."""


def _now() -> datetime:
    return datetime.now(UTC)
