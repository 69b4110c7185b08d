"""The job store as the workers see it: one Redis hash per job (layout in ``schemas.layout``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from schemas import JobError, JobRecord, JobStatus, Output, StageState, StageStatus
from schemas import layout as L
from worker.lua import source


class JobMissing(LookupError):
    """The job's record is gone (expired or never stored)."""


@dataclass(frozen=True)
class Begun:
    """How a stage run's begin went: ``run`` (``job`` holds the record, the run recorded), or why the
    run has nothing to do: ``busy`` (another process runs this very message), ``missing``, ``ended``
    (``status`` says how) or ``done`` (the stage advanced before)."""

    outcome: str
    job: JobRecord | None = None
    status: str = ""


class JobStore:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._transition = client.register_script(L.TRANSITION_LUA)
        self._start = client.register_script(L.START_LUA)
        # The scripts that store a job or change its status keep the jobs index with it.
        self._begin = client.register_script(L.INDEX_LUA + source("run_begin"))
        self._advance = client.register_script(L.INDEX_LUA + source("advance"))
        self._claim = client.register_script(source("claim"))
        self._step_job = client.register_script(L.INDEX_LUA + source("pipeline_step"))

    def get(self, job_id: str) -> JobRecord:
        raw = self.redis.hgetall(L.job_key(job_id))
        if not raw:
            raise JobMissing(job_id)
        return L.record_from_fields(job_id, raw)

    def get_many(self, job_ids: list[str]) -> list[JobRecord | None]:
        """The records of ``job_ids`` in one round trip; None where a record is gone."""
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(L.job_key(job_id))
            raws = pipe.execute()
        return [
            L.record_from_fields(job_id, raw) if raw else None
            for job_id, raw in zip(job_ids, raws, strict=True)
        ]

    def start_once(self, job_id: str, queue: str, messages: list[str], *, root: str) -> bool | str:
        """Move a queued job to running and push its first messages, in one step (``START_LUA``); True,
        else the status it had (it was started before, or cancelled)."""
        result = self._start(keys=[L.job_key(job_id), queue], args=[L.now_iso(), job_id, root, *messages])
        if result == 1:
            return True
        return L.text(result) if result else "missing"

    def begin(
        self,
        job_id: str,
        state_key: str,
        *,
        task_id: str,
        holder: str,
        lease_s: float,
        follows_cancelled: bool,
    ) -> Begun:
        """Begin a stage run in one step (``run_begin.lua``): unless the run has nothing to do, take its
        lease, record it (running, one more attempt) and return the job's record."""
        keys = [L.job_key(job_id), L.run_key(job_id, state_key), L.RUNNING_KEY]
        args: list[str | int] = [task_id, holder, round(lease_s * 1000), L.STAGE_PREFIX + state_key,
                                 L.now_iso(), "1" if follows_cancelled else "0"]  # fmt: skip
        outcome, *rest = self._begin(keys=keys, args=args)
        outcome = L.text(outcome)
        if outcome == "run":
            flat = rest[0]
            return Begun(
                outcome, job=L.record_from_fields(job_id, dict(zip(flat[::2], flat[1::2], strict=True)))
            )
        return Begun(outcome, status=L.text(rest[0]) if rest else "")

    def advance(
        self,
        job_id: str,
        state_key: str,
        state: StageState,
        *,
        join: tuple[str, ...] = (),
        pushes: list[tuple[str, str]] | None = None,
        more: Sequence[tuple[tuple[str, ...], list[tuple[str, str]]]] = (),
        outputs: list[Output] | None = None,
    ) -> str:
        """Record a done stage and move the job on, in one step (``advance.lua``): push ``pushes``
        ((queue, message)) once every state of ``join`` is done, and each of ``more`` ((join, pushes))
        once its own join is; end the job with ``outputs`` when they are given (once every join is done).
        Returns what happened: advanced, joined, ended, again (the stage had advanced before: nothing is
        pushed twice), the status of a job no longer running, or missing."""
        ended = outputs is not None
        outputs_json = "[" + ",".join(o.model_dump_json() for o in outputs or []) + "]"
        groups = [(join, pushes or []), *more]
        args: list[str | int] = [L.STAGE_PREFIX + state_key, state.model_dump_json(), L.now_iso(),
                                 L.JOB_TTL_S, "1" if ended else "0", outputs_json if ended else "",
                                 len(groups)]  # fmt: skip
        for fields, messages in groups:
            args += [len(fields), *(L.STAGE_PREFIX + key for key in fields), len(messages)]
            for queue, message in messages:
                args += [queue, message]
        keys = [L.job_key(job_id), L.RUNNING_KEY, L.METRICS_JOBS_KEY, L.PIPELINE_NOTIFY_KEY]
        result = self._advance(keys=keys, args=args)
        return L.text(result) if result else "missing"

    def step_job(
        self,
        pipeline_id: str,
        node: str,
        job_id: str,
        notice: str,
        *,
        made: tuple[str, str, dict[str, str]] | None = None,
    ) -> list[str]:
        """Make a pipeline's step job ``job_id`` (``made``: its queue, start message and hash) with its
        ``notice``, or wait for it again (``pipeline_step.lua``); the script's answer, as text."""
        queue, start, fields = made if made is not None else (L.DEFAULT_QUEUE, "", {})
        keys = [L.job_key(pipeline_id), L.job_key(job_id), L.PIPELINE_NOTIFY_KEY, queue]
        args: list[str | int] = [L.PROVIDER_ID_PREFIX + node, job_id, notice]
        if made is not None:
            args += [start, L.epoch_ms(fields[L.F_CREATED]), *(x for pair in fields.items() for x in pair)]
        return [L.text(x) for x in self._step_job(keys=keys, args=args)]

    def transition(
        self,
        job_id: str,
        status: JobStatus,
        *,
        error: JobError | None = None,
        dead_letter: bool = False,
        stage: tuple[str, StageState] | None = None,
    ) -> JobStatus | None:
        """Move a job that has not ended to ``status`` (with ``error``, into the dead-letter set, and with
        the ``stage`` it ends in), all in one step; return its previous status (None: no such job). A job
        that has ended is left as it is: its status, its first error, its place in the dead-letter set."""
        keys, args = L.transition_call(job_id, status, error=error, dead_letter=dead_letter, stage=stage)
        previous = self._transition(keys=keys, args=args)
        return JobStatus(L.text(previous)) if previous else None

    def set_stage(self, job_id: str, stage: str, state: StageState) -> None:
        self.redis.hset(
            L.job_key(job_id),
            mapping={L.STAGE_PREFIX + stage: state.model_dump_json(), L.F_UPDATED: L.now_iso()},
        )

    def record_provider_id(self, job_id: str, name: str, value: str) -> str:
        """Store a provider id once; return the stored one (the first writer wins on a redelivery)."""
        key, field = L.job_key(job_id), L.PROVIDER_ID_PREFIX + name
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, field, value)
            pipe.hget(key, field)
            _, stored = pipe.execute()
        return L.text(stored)

    def set_data(self, job_id: str, name: str, value: object) -> None:
        """Keep what a stage produced for later stages (JSON), e.g. an analysis or a branch's output."""
        self.redis.hset(L.job_key(job_id), L.DATA_PREFIX + name, json.dumps(value))

    def set_provider_id(self, job_id: str, name: str, value: str) -> None:
        """Record a provider-side fact that moves on (e.g. an export ``requested``, then ``accepted``)."""
        self.redis.hset(L.job_key(job_id), L.PROVIDER_ID_PREFIX + name, value)

    def clear_provider_id(self, job_id: str, name: str) -> None:
        """Forget a provider-side fact that turned out not to hold (a create refused with a 429)."""
        self.redis.hdel(L.job_key(job_id), L.PROVIDER_ID_PREFIX + name)

    def claim(self, kind: str, provider_id: str, *, job_id: str, name: str) -> str | None:
        """Mark a provider id as owned by the record ``job_id`` and record it there as the provider id
        ``name``, in one step; return the recorded id, or None (nothing recorded) if some record owned it
        already. A search after a crash adopts only unclaimed ids, so neither two records adopt one, nor
        does a crash leave one claimed but unrecorded, for the next run to create another."""
        keys = [L.CLAIMED_KEY.format(kind=kind), L.job_key(job_id)]
        recorded = self._claim(keys=keys, args=[provider_id, L.PROVIDER_ID_PREFIX + name])
        return L.text(recorded) if recorded else None

    def fail(
        self,
        job_id: str,
        error: JobError,
        *,
        dead_letter: bool = False,
        stage: tuple[str, StageState] | None = None,
    ) -> None:
        self.transition(job_id, JobStatus.FAILED, error=error, dead_letter=dead_letter, stage=stage)

    def fail_at(self, job_id: str, stage: str, error: JobError, *, dead_letter: bool = False) -> None:
        """Fail a job at ``stage`` from outside its own stage runs (e.g. a batch failing its jobs)."""
        self.update_stage(job_id, stage, StageStatus.FAILED, detail=error.message, finished_at=_utcnow())
        self.fail(job_id, error, dead_letter=dead_letter)

    def stage_state(self, job_id: str, stage: str) -> StageState:
        raw = self.redis.hget(L.job_key(job_id), L.STAGE_PREFIX + stage)
        return StageState.model_validate_json(raw) if raw else StageState()

    def update_stage(self, job_id: str, stage: str, status: StageStatus, **changes: Any) -> StageState:
        """Read-modify-write of one stage's state. Parallel branches of a stage each have their own
        (``execute[2]``), and one stage or branch of a job never runs twice at once."""
        state = self.stage_state(job_id, stage).model_copy(update={"status": status, **changes})
        self.set_stage(job_id, stage, state)
        return state


def _utcnow() -> datetime:
    return datetime.now(UTC)
