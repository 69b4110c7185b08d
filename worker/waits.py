"""Parked waits: a stage waiting for a provider job to end keeps nothing in any worker. Its next message
waits in Redis under the provider job's id, and whatever learns that the job ended (the account's status
sweep, ``worker.sweep``, or a verified webhook, ``worker.webhooks``) records the end and pushes that
message onto its queue in one Lua step. The end is kept (``WAIT_RESULT_TTL_S``), so a stage that parks
after its job already ended is woken at once, and the woken run reads the end instead of asking the
provider again. Key layout: ``schemas.layout``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import redis
from pydantic import BaseModel, ConfigDict

from schemas import layout as L
from worker.lua import source
from worker.schedule import due_set


class WaitResult(BaseModel):
    """How a parked wait ended: the provider job ``ended`` (``body`` is the provider's view of it), the
    provider no longer knows the id (``missing``), or genq's deadline passed first (``timeout``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state: Literal["ended", "missing", "timeout"]
    body: dict[str, Any] = {}
    source: str = ""  # "sweep" or "webhook"


@dataclass(frozen=True)
class WaitCounts:
    provider: str
    account: str
    parked: int
    next_check_s: float | None  # seconds until the earliest due check


class Waits:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        scripts = ("wait_park", "wait_resolve", "wait_claim", "wait_recheck")
        self._scripts = {name: client.register_script(source(name)) for name in scripts}

    def park(
        self,
        provider: str,
        account: str,
        provider_id: str,
        *,
        job: str,
        stage: str,
        queue: str,
        message: str,
        check_in_s: float,
        deadline_in_s: float,
    ) -> bool:
        """Park a stage's next run until ``provider_id`` ends; False: it had ended, the run is queued."""
        entries, messages, due = L.wait_keys(provider)
        entry = json.dumps({"job": job, "stage": stage, "account": account})
        keys = [entries, messages, due + account, _result_key(provider, provider_id)]
        args: list[str | int] = [provider_id, entry, _ms(check_in_s), _ms(deadline_in_s), queue, message]
        return int(self._scripts["wait_park"](keys=keys, args=args)) != 0

    def resolve(self, provider: str, provider_id: str, result: WaitResult) -> int:
        """Record how ``provider_id`` ended and wake its parked stage: 1 woken, 0 none parked yet, -1 an
        end was recorded before (nothing changes)."""
        return int(self._resolve(provider, provider_id, result))

    def resolve_many(self, provider: str, results: Mapping[str, WaitResult]) -> None:
        """``resolve`` for many ids in one round trip."""
        if not results:
            return
        with self.redis.pipeline(transaction=False) as pipe:
            for provider_id, result in results.items():
                self._resolve(provider, provider_id, result, pipe)
            pipe.execute()

    def _resolve(
        self, provider: str, provider_id: str, result: WaitResult, pipe: redis.client.Pipeline | None = None
    ) -> Any:
        entries, messages, due = L.wait_keys(provider)
        keys = [entries, messages, _result_key(provider, provider_id)]
        args: list[str | int] = [provider_id, result.model_dump_json(), L.WAIT_RESULT_TTL_S, due]
        return self._scripts["wait_resolve"](keys=keys, args=args, client=pipe)

    def result(self, provider: str, provider_id: str) -> WaitResult | None:
        raw = self.redis.get(_result_key(provider, provider_id))
        return WaitResult.model_validate_json(raw) if raw else None

    def forget(self, provider: str, provider_id: str) -> None:
        """Drop a recorded end that turned out wrong, so the stage can park again."""
        self.redis.delete(_result_key(provider, provider_id))

    def claim_due(
        self, provider: str, account: str, limit: int, *, hold_s: float, ahead_s: float = 0.0
    ) -> list[str]:
        """Nothing unless a check is due; then up to ``limit`` ids due within ``ahead_s``, oldest-due
        first. They are not due again for ``hold_s`` unless ``recheck`` says otherwise."""
        due = L.wait_keys(provider)[2] + account
        ids = self._scripts["wait_claim"](keys=[due], args=[limit, _ms(hold_s), _ms(ahead_s)])
        return [L.text(i) for i in ids]

    def recheck(self, provider: str, account: str, ids: list[str], *, in_s: float) -> list[str]:
        """Next check of ``ids`` (still running) in ``in_s``; returns the ids past their deadline."""
        if not ids:
            return []
        entries, _, due = L.wait_keys(provider)
        late = self._scripts["wait_recheck"](keys=[due + account, entries], args=[_ms(in_s), *ids])
        return [L.text(i) for i in late]

    def check_now(self, provider: str, provider_id: str) -> bool:
        """Put ``provider_id`` first in line for its account's next status check (a webhook said it
        moved); False if nothing is parked for it."""
        entries, _, due = L.wait_keys(provider)
        entry = self.redis.hget(entries, provider_id)
        if not isinstance(entry, bytes | str):
            return False
        # XX: only while it is parked (a resolve removes it from the due set).
        self.redis.zadd(due + json.loads(entry)["account"], {provider_id: 0}, xx=True)
        return True

    def counts(self, provider: str, account: str) -> WaitCounts:
        return WaitCounts(provider, account, *due_set(self.redis, L.wait_keys(provider)[2] + account))


def _result_key(provider: str, provider_id: str) -> str:
    return L.WAIT_RESULT_KEY.format(provider=provider, provider_id=provider_id)


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))
