"""The job store as the workers see it: one Redis hash per job (layout in ``schemas.layout``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import redis

from schemas import JobError, JobRecord, JobStatus, Output, StageState, StageStatus
from schemas import layout as L
from worker.lua import source


class JobMissing(LookupError):
    """The job's record is gone (expired or never stored)."""


class JobStore:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._transition = client.register_script(L.TRANSITION_LUA)
        self._start = client.register_script(L.START_LUA)
        self._claim = client.register_script(source("claim"))

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

    def start_once(self, job_id: str, queue: str, message: str) -> bool | str:
        """Move a queued job to running and push its first message, in one step (``START_LUA``); True,
        else the status it had (it was started before, or cancelled)."""
        result = self._start(keys=[L.job_key(job_id), queue], args=[L.now_iso(), message])
        if result == 1:
            return True
        return L.text(result) if result else "missing"

    def transition(
        self, job_id: str, status: JobStatus, *, error: JobError | None = None, dead_letter: bool = False
    ) -> JobStatus | None:
        """Move a job that has not ended to ``status`` (with ``error``, and into the dead-letter set), all
        in one step; return its previous status (None: no such job). A job that has ended is left as it
        is: its status, its first error, its place in the dead-letter set."""
        keys, args = L.transition_call(job_id, status, error=error, dead_letter=dead_letter)
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

    def start_stage(self, job_id: str, stage: str, state: StageState) -> None:
        """Record a stage run: its state, and one more attempt for the job, in one round trip."""
        key = L.job_key(job_id)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key, mapping={L.STAGE_PREFIX + stage: state.model_dump_json(), L.F_UPDATED: L.now_iso()}
            )
            pipe.hincrby(key, L.F_ATTEMPTS, 1)
            pipe.execute()

    def succeed(self, job_id: str, outputs: list[Output]) -> None:
        payload = "[" + ",".join(o.model_dump_json() for o in outputs) + "]"
        self.redis.hset(L.job_key(job_id), L.F_OUTPUTS, payload)
        self.transition(job_id, JobStatus.SUCCEEDED)

    def fail(self, job_id: str, error: JobError, *, dead_letter: bool = False) -> None:
        self.transition(job_id, JobStatus.FAILED, error=error, dead_letter=dead_letter)

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
