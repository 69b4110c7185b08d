"""The life of one stage run: load the job, skip it if it ended, run the plain function, and map what
happened to the job record and to Celery.

Stage functions stay plain and testable; they signal with return values and exceptions:
- return normally: the stage is done, and one Lua step records it and pushes what the job's step graph
  says follows (worker/graph.py), or ends the job with the outputs returned (``Done``);
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

Every run has a time limit (``GENQ_TIME_LIMITS__``: an API stage's, or a transfer's for a stage that moves
a file). Past the soft limit the run is stopped where it is and retried like a network error
(``genq_stage_timeout``), then the job fails; past the hard limit (``grace_s`` later) Celery kills the
run's process and the job fails at once, recorded by the worker's main process.

A run begins in one Lua step too: it is skipped when the job ended, when the stage advanced before (a
copy of a message whose run finished), or when another process runs this very message now (a copy
delivered again while its run is alive: that run holds the stage's run lease, which its worker's
heartbeat renews); otherwise it takes the lease and is recorded.

Every message (the next step, a re-run, a retry) is built by ``schemas.wire.task_message``: a new task
whose parent is this run and whose root is the job's first, so Flower shows every run as one row that
ends in a final state: a run that parks, waits or is re-scheduled ends as a SUCCESS whose result says
so; a retried run ends as RETRY, a failed job as FAILURE.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

import httpx
import redis
from billiard.einfo import ExceptionInfo
from celery import Task
from celery.exceptions import Ignore, Reject, Retry, SoftTimeLimitExceeded, TimeLimitExceeded

from schemas import JobError, JobRecord, Output, StageState, StageStatus
from schemas.inputs import outside_roots
from worker.context import Context, get_context
from worker.graph import branch_of, run_message, state_key
from worker.handoff import handed_on, presigned_inputs
from worker.inputs import refused
from worker.limits import Gate, Parked
from worker.outcomes import Awaiting, Done, JobFailed, Later, Stop, Wait
from worker.outputs import OutputBudget
from worker.providers.errors import (
    BudgetExceeded,
    InfrastructureError,
    InternalError,
    ProviderError,
    Throttled,
)
from worker.providers.registry import for_kind, graph_for
from worker.providers.spec import load
from worker.retry import backoff_s, throttle_delay_s
from worker.spend import charge_of, next_period_in_s

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
    # A stage that moves a file (a download, an upload, a chunk): the transfer time limit, not the API one.
    transfer: bool = False

    @property
    def ctx(self) -> Context:
        return get_context()

    # Celery reads both when the worker starts (the prefork pool enforces them; threads and solo do not).
    @property
    def soft_time_limit(self) -> float:  # type: ignore[override]
        return self.ctx.settings.time_limits.soft_s(self.name, self.transfer)

    @property
    def time_limit(self) -> float:  # type: ignore[override]
        return self.soft_time_limit + self.ctx.settings.time_limits.grace_s

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
        except SoftTimeLimitExceeded as exc:
            # Past the limit while beginning or recording the run, not in the stage's own work: the run
            # happens again (a stage that advanced is skipped then).
            log.warning("%s of job %s: time limit reached outside the stage's work; the message goes "
                        "back to the broker", self.name, job_id)  # fmt: skip
            raise Reject("time limit reached while recording the run", requeue=True) from exc

    def _perform(self, job_id: str, action: Action) -> str:
        try:
            job = self._begin(job_id)
        except _Skip as skip:
            return f"skipped: {skip}"
        gate = Gate(self.ctx.limiter, self.ctx.settings.limits, job, self._rerun, holder=self.holder(job_id))
        state = job.stages[self.state_key]  # as the begin recorded it
        store = self.ctx.store
        try:
            self._check_inputs(job)
            job = presigned_inputs(job, self.ctx)
            self._reserve(job, gate)
            result = action(job, gate)
        except Parked as parked:
            store.set_stage(job_id, self.state_key, _moved(state, StageStatus.THROTTLED, str(parked)))
            return f"parked: {parked}"
        except Wait as wait:
            return self._park(job, state, wait)
        except Later as later:
            store.set_stage(job_id, self.state_key, _moved(state, later.status, later.detail))
            # A rate turn is reserved for a moment: the time spent recording the state comes off it.
            countdown_s = later.countdown_s - (time.monotonic() - later.raised_at)
            return self._later(job_id, countdown_s, later.args_, later.detail)
        except Stop as stop:
            store.set_stage(job_id, self.state_key, _moved(state, StageStatus.DONE, str(stop), ended=True))
            return f"stopped: {stop}"
        except Awaiting as awaiting:
            store.set_stage(job_id, self.state_key, _moved(state, StageStatus.WAITING, str(awaiting)))
            return str(awaiting)
        except Throttled as exc:
            retry, most_s = self.ctx.settings.retry, self.ctx.settings.limits.max_retry_after_s
            delay = throttle_delay_s(exc, self.request.retries, base_s=1.0, cap_s=retry.backoff_cap_s,
                                     max_retry_after_s=most_s)  # fmt: skip
            store.set_stage(job_id, self.state_key, _moved(state, StageStatus.THROTTLED, str(exc)))
            return self._later(job_id, delay, None, str(exc))
        except ProviderError as exc:
            self._failed(job, state, exc)
        except SoftTimeLimitExceeded:
            self._failed(job, state, self._timed_out(job_id))
        except (Ignore, Reject, Retry):  # Celery's own control flow
            raise
        except Exception as exc:  # every path ends: see perform
            self._failed(job, state, self._unexpected(job_id, exc))
        return self._advance(job, state, result)

    def _advance(self, job: JobRecord, state: StageState, result: object) -> str:
        """Record this stage done and push what follows it in the job's graph, in one step."""
        graph = graph_for(job.kind)
        if graph.fans_out_after(job, self.step_name):
            job = self.ctx.store.get(job.id)  # the fan's width may be what this run recorded
        after = graph.after(job, self.step_name, self.branch)
        done = result if isinstance(result, Done) else Done(outputs=_outputs(result))
        pushes = [self.message(run.step.task, job.id, *run.args) for run in after.runs]
        pushes += [self.message(task, other) for task, other in done.also]
        more = [(then.join, [self.message(run.step.task, job.id, *run.args) for run in then.runs])
                for then in after.more]  # fmt: skip
        outputs = (done.outputs or []) if after.end else None
        if (
            after.end and job.tenant is not None and job.reserved_usd is not None
        ):  # before the end is recorded:
            # a crash between settles again
            self.ctx.spend.settle(job.id, job.tenant, done.cost_usd)
        ended = _moved(state, StageStatus.DONE, done.detail, ended=True)
        outcome = self.ctx.store.advance(
            job.id, self.state_key, ended, join=after.join, pushes=pushes, more=more, outputs=outputs
        )
        return "done" if outcome in ("advanced", "ended", "joined") else f"done ({outcome})"

    def _spends(self, job: JobRecord) -> bool:
        """Whether this run is of the step whose provider call costs money (``Step.spends``)."""
        step = graph_for(job.kind).spending_step()
        return step is not None and step.name == self.step_name

    def _reserve(self, job: JobRecord, gate: Gate) -> None:
        """Reserve the job's cost against its tenant's budget, once (a resent or re-run stage reserves
        nothing more). Over the budget, the job fails (``genq_budget_exceeded``, nothing created) or, if
        the budget says ``wait``, runs this stage again when the next period starts or
        ``GENQ_LIMITS__BUDGET_RECHECK_S`` from now, whichever is sooner (a raised limit lets it through
        then)."""
        if job.tenant is None or not self._spends(job):
            return
        spend = self.ctx.spend
        budget = spend.budget(job.tenant)
        if budget is None or job.reserved_usd is not None:  # reserved by an earlier run
            return
        if budget.over == "refuse" and (left := spend.nothing_left(budget)):
            # Refused without asking the provider for an estimate: the reservation below is what holds
            # the limit; this spares a spent tenant's jobs their estimate calls.
            raise BudgetExceeded(f"over budget: {left}; nothing was created", provider="genq",
                                 code="genq_budget_exceeded")  # fmt: skip
        cost_of = for_kind(job.kind).cost
        amount = load(cost_of)(job, self.ctx, gate) if cost_of else None
        if amount is None:
            if budget.unknown_usd is None:
                admit = f"genq budgets set {job.tenant} --unknown-usd N admits such jobs at N"
                raise BudgetExceeded(
                    f"tenant {job.tenant} has a spend budget and this job's cost cannot be estimated; "
                    f"nothing was created ({admit})",
                    provider="genq", code="genq_budget_exceeded",
                )  # fmt: skip
            amount = budget.unknown_usd
        reserved = spend.reserve(job.id, budget, amount)
        if reserved.outcome != "over":
            return
        figures = (f"tenant {job.tenant}: ${reserved.spent_usd:.2f} spent and ${reserved.reserved_usd:.2f} "
                   f"reserved of ${reserved.limit_usd:.2f} a {budget.per}; "
                   f"this job needs ${amount:.2f}")  # fmt: skip
        if budget.over == "wait":
            spend.waiting(job.tenant, job.id, now_waiting=True)
            recheck_s = self.ctx.settings.limits.budget_recheck_s
            raise Later(min(next_period_in_s(budget.per), recheck_s), f"over budget: {figures}",
                        status=StageStatus.THROTTLED)  # fmt: skip
        raise BudgetExceeded(f"over budget: {figures}; nothing was created", provider="genq",
                             code="genq_budget_exceeded")  # fmt: skip

    def _check_inputs(self, job: JobRecord) -> None:
        """Refuse a job whose local inputs are not under the input roots (symlinks resolved now), before
        anything is sent; an input a pipeline handed on from an earlier step must be in this process's file
        store instead. What reads a file opens it again with ``worker.inputs.open_local``, which checks
        what it opened: a link swapped after this check is refused there."""
        files, handed, roots = job.request.local_files(), handed_on(job), self.ctx.roots
        problems = outside_roots({f: p for f, p in files.items() if f not in handed}, roots.inputs)
        problems += outside_roots({f: p for f, p in files.items() if f in handed}, roots.outputs)
        if problems:
            raise refused("; ".join(problems))

    @property
    def branch(self) -> int | None:
        """Which of the job's parallel branches this run is (its second argument), if any: the third
        upload chunk, the second execution ..."""
        return self.branch_in(self.request.args or ())

    @property
    def state_key(self) -> str:
        """Where the job record keeps this stage's state: ``execute[2]`` for a branch."""
        return self.run_state(self.request.args or ())

    @property
    def step_name(self) -> str:
        """The step of the job's graph this run is (the stage, but for a task that runs several)."""
        return self.stage

    @classmethod
    def branch_in(cls, args: Sequence[Any]) -> int | None:
        """The branch a run of this task with ``args`` is."""
        return branch_of(args)

    @classmethod
    def run_state(cls, args: Sequence[Any]) -> str:
        """The state key of a run of this task with ``args`` (the heartbeat asks it too)."""
        return state_key(cls.stage, cls.branch_in(args))

    def holder(self, job_id: str) -> str:
        """Who holds this run's slots and turns: the job, or ``<job id>:<branch>`` for a branch, so that
        a job's parallel branches hold one slot each."""
        return job_id if self.branch is None else f"{job_id}:{self.branch}"

    def output_budget(self, job_id: str) -> OutputBudget:
        """What this run's download may write of the job's outputs (``GENQ_CAPS__MAX_JOB_OUTPUT_BYTES``,
        shared by the job's downloads)."""
        cap = self.ctx.settings.caps.max_job_output_bytes
        return OutputBudget(self.ctx.redis, job_id, self.state_key, cap, provider=self.provider)

    def run_key(self, job_id: str) -> str:
        """Names this stage's one pending run of the job (or of its branch) in the schedule."""
        return f"{job_id}:{self.name}" if self.branch is None else f"{job_id}:{self.name}[{self.branch}]"

    def _begin(self, job_id: str) -> JobRecord:
        begun = self.ctx.store.begin(
            job_id,
            self.state_key,
            task_id=self.request.id or "",
            holder=run_holder(self.request.id or "", os.getpid()),
            lease_s=self.ctx.settings.run_lease_s,
            follows_cancelled=self.follows_cancelled,
        )
        if begun.job is not None:
            return begun.job
        if begun.outcome == "missing":
            log.warning("job %s has no record; %s dropped", job_id, self.name)
            self._release_slots(job_id)
            raise _Skip("the job has no record")
        if begun.outcome == "ended":
            log.info("job %s is %s; %s skipped", job_id, begun.status, self.name)
            self._release_slots(job_id)
            raise _Skip(f"the job is {begun.status}")
        if begun.outcome == "done":
            raise _Skip("the stage is done (a copy of a message whose run advanced)")
        raise _Skip("another process runs this message now")

    def message(
        self, task: str, job_id: str, *args: Any, retries: int = 0, kept: bool = False
    ) -> tuple[str, str]:
        """(queue, message) of a run of ``task`` for the job: a new task whose parent is this run and
        whose root is the job's first message."""
        root = self.request.root_id or self.request.id
        return run_message(task, job_id, args, root_id=root, parent_id=self.request.id, retries=retries,
                           kept=kept)  # fmt: skip

    def again(self, args: tuple[Any, ...], *, retries: int | None = None) -> tuple[str, str]:
        """(queue, message) that runs this stage again with ``args``, kept in Redis until its time."""
        retries = self.request.retries if retries is None else retries
        return self.message(self.name, *args, retries=retries, kept=True)

    def _args(self, job_id: str) -> tuple[Any, ...]:
        return tuple(self.request.args or (job_id,))

    def _rerun(self) -> tuple[str, str]:
        return self.again(tuple(self.request.args or ()))

    def _park(self, job: JobRecord, state: StageState, wait: Wait) -> str:
        self.ctx.store.set_stage(job.id, self.state_key, _moved(state, StageStatus.WAITING, str(wait)))
        queue, message = self.again(self._args(job.id))
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
        return str(wait) if parked else f"{wait}: it had ended, run again at once"

    def _later(self, job_id: str, delay_s: float, args: tuple[Any, ...] | None, detail: str) -> str:
        """Run this stage again in ``delay_s``, through the Redis-side schedule; its message goes to the
        *front* of its queue then: the job already holds its slot, or a turn reserved for that moment,
        so it goes before stages that have neither."""
        queue, message = self.again(args if args is not None else self._args(job_id))
        self.ctx.schedule.add(self.run_key(job_id), queue, message, delay_s)
        return f"again in {delay_s:.2f} s: {detail}"

    @property
    def provider(self) -> str:
        """The provider whose stage this is (task names are ``genq.<provider>.<stage>``)."""
        return self.name.split(".")[1]

    def _release_slots(self, job_id: str, holder: str | None = None) -> None:
        """Give back every slot this run's holder (the job, or its branch) has in its provider's pools.
        Each branch gives back its own when it runs next and finds the job ended."""
        for pool in self.ctx.budgets.pools_of(self.provider):
            self.ctx.limiter.release(pool, holder or self.holder(job_id))

    def _timed_out(self, job_id: str) -> ProviderError:
        """The error of a run stopped at its soft time limit: retried like a network error."""
        limit = self.soft_time_limit
        log.warning("%s of job %s ran past its time limit (%g s): stopped", self.name, job_id, limit)
        return InfrastructureError(
            f"the stage ran past its time limit of {limit:g} s", provider="genq", code="genq_stage_timeout"
        )

    def on_failure(
        self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: ExceptionInfo | None
    ) -> None:
        """Celery's hook after a run failed. A run past its hard time limit was killed with its process,
        so nothing in it recorded the end: the worker's main process fails the job here (dead-lettered,
        so ``genq replay`` runs it again), and gives back the run's slots."""
        if isinstance(exc, TimeLimitExceeded) and args:
            self._killed(str(args[0]), self.run_state(args), self.branch_in(args))

    def _killed(self, job_id: str, key: str, branch: int | None) -> None:
        message = f"the stage ran past its hard time limit of {self.time_limit:g} s; its process was killed"
        log.error("%s of job %s: %s", self.name, job_id, message)
        store = self.ctx.store
        failed = _moved(store.stage_state(job_id, key), StageStatus.FAILED, message, ended=True)
        error = JobError(
            stage=key, message=message, provider="genq", code="genq_stage_timeout", retryable=True
        )
        store.fail(job_id, error, dead_letter=True, stage=(key, failed))
        self._settle_ended(job_id)
        self._release_slots(job_id, job_id if branch is None else f"{job_id}:{branch}")
        self.on_failed(job_id, error)

    def _unexpected(self, job_id: str, exc: Exception) -> ProviderError:
        """An exception no provider client raised, as the error the job records."""
        detail = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, INFRASTRUCTURE):
            log.warning("%s of job %s: %s (retried)", self.name, job_id, detail)
            return InfrastructureError(detail, provider="genq", code="genq_infrastructure")
        log.exception("%s of job %s failed on an unexpected error", self.name, job_id)
        return InternalError(detail, provider="genq", code="genq_internal_error")

    def _failed(self, job: JobRecord, state: StageState, exc: ProviderError) -> NoReturn:
        retry = self.ctx.settings.retry
        store = self.ctx.store
        if exc.retryable and self.request.retries < retry.max_retries:
            backoff = backoff_s(self.request.retries, base_s=retry.backoff_base_s, cap_s=retry.backoff_cap_s)
            store.set_stage(job.id, self.state_key, _moved(state, StageStatus.RETRYING, str(exc)))
            queue, message = self.again(self._args(job.id), retries=self.request.retries + 1)
            self.ctx.schedule.add(self.run_key(job.id), queue, message, backoff)
            raise Retry(str(exc), exc=exc, when=round(backoff, 2))  # type: ignore[arg-type]
        error = JobError(
            stage=self.state_key,
            message=exc.message,
            provider=exc.provider,
            code=exc.code,
            status_code=exc.status_code,
            retryable=exc.retryable,
            request_id=exc.request_id,
            failed_provider_ids=exc.failed_provider_ids,
        )
        failed = _moved(state, StageStatus.FAILED, str(exc), ended=True)
        dead = exc.retryable or isinstance(exc, InternalError)
        store.fail(job.id, error, dead_letter=dead, stage=(self.state_key, failed))
        if job.tenant is not None:  # only a tenant's job may hold a reservation
            self._settle_ended(job.id)
        self._release_slots(job.id)
        self.on_failed(job.id, error)
        raise JobFailed(f"job {job.id} failed at {self.state_key}: {exc}")

    def _settle_ended(self, job_id: str) -> None:
        """Settle the reservation of a job that has just ended otherwise than by succeeding (``charge_of``);
        should this be lost, the reconciler settles it."""
        job = self.ctx.store.get(job_id)
        if job.tenant is not None:
            self.ctx.spend.settle(job_id, job.tenant, charge_of(job, graph_for(job.kind).spent(job)))

    def on_failed(self, job_id: str, error: JobError) -> None:
        """After the job failed: what else must end with it (a batch's jobs). Nothing by default."""


def run_holder(task_id: str, pid: int) -> str:
    """Who holds a stage run's lease: its message's task id and the process running it."""
    return f"{task_id} {socket.gethostname()}:{pid}"


def _now() -> datetime:
    return datetime.now(UTC)


def _moved(state: StageState, status: StageStatus, detail: str | None, *, ended: bool = False) -> StageState:
    """``state`` moved to ``status`` with ``detail`` (and its end time, when the run ``ended`` it)."""
    changes: dict[str, Any] = {"status": status, "detail": detail}
    if ended:
        changes["finished_at"] = _now()
    return state.model_copy(update=changes)


def _outputs(result: object) -> list[Output] | None:
    if isinstance(result, list) and all(isinstance(o, Output) for o in result):
        return result
    return None
