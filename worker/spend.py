"""Spend budgets per tenant: a job reserves what it will cost before its first provider call that costs
money, and settles what it cost at its end, each in one Lua step keyed by its id.

A tenant's budget (``genq budgets set TENANT --usd N --per day|month``) is a limit per period (a UTC day or
month). ``spend_reserve.lua`` checks spent + reserved + the job's estimate against the limit and adds
the estimate to ``reserved`` in the same step, so jobs reserving at once never pass the limit together; a
job reserves once (its hold is recorded on its record), so a resent or re-run stage adds nothing.
``spend_settle.lua`` moves the hold to ``spent`` (the cost) and returns the rest, once. A job that ended
without settling (cancelled, its worker killed between its end and the settle) is settled by the
reconciler (``settle_ended``), with the same rule as a stage: ``charge_of``.

All amounts are integers of micro-dollars in Redis, so sums are exact to the cent.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import redis

from schemas import JobRecord, JobStatus
from schemas import layout as L
from worker.lua import source

MICROS = L.MICROS
Per = Literal["day", "month"]
# A period's spend is kept this long after its last change: long enough to show last month's.
SPEND_TTL_S = 70 * 24 * 3600


def micros(usd: float) -> int:
    return round(usd * MICROS)


def usd(amount: int) -> float:
    return amount / MICROS


@dataclass(frozen=True)
class Budget:
    """A tenant's limit per period; what a job over it gets (``refuse``: it fails with
    ``genq_budget_exceeded``; ``wait``: it waits for the next period or a raised limit); and the price a
    job whose cost cannot be estimated is admitted at (None: it is refused)."""

    tenant: str
    limit_usd: float
    per: Per = "day"
    over: Literal["refuse", "wait"] = "refuse"
    unknown_usd: float | None = None

    def fields(self) -> dict[str, str]:
        found = {"limit": str(micros(self.limit_usd)), "per": self.per, "over": self.over}
        if self.unknown_usd is not None:
            found["unknown"] = str(micros(self.unknown_usd))
        return found

    @classmethod
    def from_fields(cls, tenant: str, raw: Mapping[bytes | str, bytes | str]) -> Budget:
        fields = {L.text(k): L.text(v) for k, v in raw.items()}
        unknown = fields.get("unknown")
        return cls(tenant, usd(int(fields["limit"])), fields.get("per", "day"),  # type: ignore[arg-type]
                   fields.get("over", "refuse"),  # type: ignore[arg-type]
                   usd(int(unknown)) if unknown is not None else None)  # fmt: skip


def period_of(per: Per, now: datetime | None = None) -> str:
    """The period ``now`` falls in: ``2026-12-06`` for a day, ``2026-12`` for a month (UTC)."""
    now = now or datetime.now(UTC)
    return now.strftime("%Y-%m-%d" if per == "day" else "%Y-%m")


def next_period_in_s(per: Per, now: datetime | None = None) -> float:
    now = now or datetime.now(UTC)
    day = datetime(now.year, now.month, now.day, tzinfo=UTC)
    if per == "day":
        start = day + timedelta(days=1)
    else:
        start = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    return (start - now).total_seconds()


@dataclass(frozen=True)
class Usage:
    """A tenant's spend in one period."""

    period: str
    spent_usd: float
    reserved_usd: float
    refused: int
    waiting: int


@dataclass(frozen=True)
class Reserved:
    """How a reservation went: ``ok``, ``again`` (reserved before), ``over`` (with the figures), or
    ``missing`` (the job has no record)."""

    outcome: str
    spent_usd: float = 0.0
    reserved_usd: float = 0.0
    limit_usd: float = 0.0


class Spend:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._reserve = client.register_script(source("spend_reserve"))
        self._settle = client.register_script(source("spend_settle"))

    # Budgets.

    def set_budget(self, budget: Budget) -> None:
        key = L.BUDGET_KEY.format(tenant=budget.tenant)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping=budget.fields())  # type: ignore[arg-type]
            pipe.sadd(L.BUDGETS_KEY, budget.tenant)
            pipe.execute()

    def delete_budget(self, tenant: str) -> bool:
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(L.BUDGET_KEY.format(tenant=tenant))
            pipe.srem(L.BUDGETS_KEY, tenant)
            deleted, _ = pipe.execute()
        return bool(deleted)

    def budget(self, tenant: str) -> Budget | None:
        raw = self.redis.hgetall(L.BUDGET_KEY.format(tenant=tenant))
        return Budget.from_fields(tenant, raw) if raw else None

    def budgets(self) -> list[Budget]:
        tenants = sorted(L.text(t) for t in self.redis.smembers(L.BUDGETS_KEY))
        return [b for t in tenants if (b := self.budget(t)) is not None]

    def usage(self, budget: Budget, now: datetime | None = None) -> Usage:
        period = period_of(budget.per, now)
        spent, reserved, refused = self.redis.hmget(
            L.spend_key(budget.tenant, period), "spent", "reserved", "refused"
        )
        waiting = self.redis.scard(L.SPEND_WAITING_KEY.format(tenant=budget.tenant))
        return Usage(period, usd(int(spent or 0)), usd(int(reserved or 0)), int(refused or 0), int(waiting))

    # Reserve and settle.

    def reserve(self, job_id: str, budget: Budget, amount_usd: float) -> Reserved:
        tenant = budget.tenant
        period = period_of(budget.per)
        keys = [L.BUDGET_KEY.format(tenant=tenant), L.spend_key(tenant, period), L.job_key(job_id),
                L.SPEND_HOLDS_KEY.format(tenant=tenant), L.METRICS_REFUSALS_KEY]  # fmt: skip
        args: list[str | int] = [job_id, micros(amount_usd), period, SPEND_TTL_S, tenant]
        outcome, *rest = self._reserve(keys=keys, args=args)
        said = L.text(outcome)
        waiting = L.SPEND_WAITING_KEY.format(tenant=tenant)
        if said == "over":
            spent, reserved, limit = (usd(int(L.text(x))) for x in rest)
            return Reserved(said, spent, reserved, limit)
        self.redis.srem(waiting, job_id)
        return Reserved(said)

    def nothing_left(self, budget: Budget) -> str | None:
        """When spent + reserved has reached the limit, what to say of it (the refusal counted, as the
        reservation counts one); else None."""
        usage = self.usage(budget)
        if usage.spent_usd + usage.reserved_usd < budget.limit_usd:
            return None
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(L.spend_key(budget.tenant, usage.period), "refused", 1)
            pipe.hincrby(L.METRICS_REFUSALS_KEY, budget.tenant, 1)
            pipe.execute()
        return (f"tenant {budget.tenant}: ${usage.spent_usd:.2f} spent and ${usage.reserved_usd:.2f} "
                f"reserved of ${budget.limit_usd:.2f} a {budget.per}")  # fmt: skip

    def waiting(self, tenant: str, job_id: str, *, now_waiting: bool) -> None:
        """Count the job among the tenant's jobs waiting for budget (or no longer)."""
        key = L.SPEND_WAITING_KEY.format(tenant=tenant)
        if now_waiting:
            self.redis.sadd(key, job_id)
        else:
            self.redis.srem(key, job_id)

    def settle(self, job_id: str, tenant: str, cost_usd: float | None) -> str:
        """Spend ``cost_usd`` of the job's hold (None: all of it) and return the rest; 'settled', or 'none'
        when the job holds nothing (never reserved, or settled before)."""
        holds = L.SPEND_HOLDS_KEY.format(tenant=tenant)
        held = self.redis.hget(holds, job_id)
        if held is None:
            return "none"
        period, amount = L.text(held).split(" ")
        cost = int(amount) if cost_usd is None else micros(cost_usd)
        keys = [L.job_key(job_id), L.spend_key(tenant, period), holds]
        return L.text(self._settle(keys=keys, args=[job_id, cost, SPEND_TTL_S]))

    def holds(self, tenant: str) -> dict[str, tuple[str, float]]:
        """The tenant's jobs holding a reservation: job id -> (period, amount)."""
        found = {}
        for job_id, held in self.redis.hgetall(L.SPEND_HOLDS_KEY.format(tenant=tenant)).items():
            period, amount = L.text(held).split(" ")
            found[L.text(job_id)] = (period, usd(int(amount)))
        return found

    def settle_ended(self, held: Iterator[tuple[str, str, JobRecord | None, bool]]) -> int:
        """Settle each (tenant, job id, its record or None, whether its costly step is done) whose job
        ended (by ``charge_of``) or is gone (nothing charged); return how many."""
        settled = 0
        for tenant, job_id, job, costly_done in held:
            if job is not None and not job.is_terminal:
                continue
            cost = 0.0 if job is None else charge_of(job, costly_done)
            if self.settle(job_id, tenant, cost) == "settled":
                settled += 1
        return settled


def charge_of(job: JobRecord, costly_done: bool) -> float | None:
    """What a job that ended is charged of its hold: all of it (None) once its provider job was made,
    unless the provider itself failed it (a failed generation, render or execution is not billed);
    nothing if it ended before."""
    if not costly_done:
        return 0.0
    if (
        job.status is JobStatus.FAILED
        and job.error is not None
        and job.error.provider not in ("genq", "store")
    ):
        return 0.0
    return None
