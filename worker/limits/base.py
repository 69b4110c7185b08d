"""The limiter's interface: rate turns and concurrency leases shared by every worker.

Rate budgets ("at most ``limit`` calls in any ``period_s``") combine two mechanisms. Turns are scheduled
GCRA-style: each caller is given its own turn, ``interval_s`` after the one before, and a caller whose turn
is in the future keeps it and comes back then (its stage re-queued with that countdown), so a backlog is
served in arrival order, evenly, with no retry storms. Whether a call may go is decided by a sliding log of
the calls actually sent: it goes only while the last ``period_s + guard_s`` holds fewer than ``limit``. So
a caller that comes back late still uses the room its turn left, and callers that bunch up can never put
more than ``limit`` calls into one window. Weak spots: no burst (an idle budget releases a backlog at one
call per interval, not all at once, though the provider would allow it); the log costs one sorted-set
entry per call in the window (600 for sync.so's 600/min); a turn whose caller never comes back is lost;
and the bound holds at the provider only while the provider's clock and genq's (the Redis server's) and
the network between them differ by less than ``guard_s``.

Concurrency pools are leases with a time to live, renewed while the provider job runs and released when it
ends; a dead worker's lease lapses and is reclaimed. A caller that finds the pool full is *parked* with the
Celery message that re-runs it; whoever frees a slot (a release, a lapsed lease, the end of a pause) grants
it to the next parked caller and pushes that message onto its queue in the same atomic step. Parked callers
are served round-robin between tenants, oldest job first within one. Weak spots: when every holder dies at
once, slots come back only as their leases lapse (``lease_ttl_s``) and a sweep runs; and a worker that dies
between parking a stage and acknowledging its message leaves two copies, both of which may run (stages are
idempotent, so the cost is a duplicate status check and download, never a second provider job).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from worker.limits.budgets import Pool, RateBudget


class Turn(StrEnum):
    GO = "go"  # spend it now
    WAIT = "wait"  # a turn is reserved for this holder in `wait_s`
    FULL = "full"  # nothing reserved: the backlog is longer than the horizon; ask again in `wait_s`


@dataclass(frozen=True)
class RateTurn:
    turn: Turn
    wait_s: float = 0.0


@dataclass(frozen=True)
class Waiter:
    """A stage waiting for a slot: who it is, whom it belongs to, and how to run it again."""

    holder: str  # the job id
    tenant: str  # "" for jobs without one
    order: float  # the job's submission time: older jobs first
    queue: str
    message: str  # a Celery message, as the Redis transport stores it


@dataclass(frozen=True)
class BudgetState:
    name: str
    kind: str  # "rate" or "pool"
    limit: int
    in_use: float  # pool: live leases; rate: calls sent in the last period
    waiting: int  # pool: parked callers; rate: reserved turns not yet used
    paused_until: float | None  # unix time, or None


class Limiter(Protocol):
    """Every call is atomic across processes and hosts. ``now`` (unix seconds) is for tests; by default
    the limiter's own clock is used (the Redis server's, for every worker alike)."""

    def take_turn(
        self, budget: RateBudget, holder: str, *, horizon_s: float, now: float | None = None
    ) -> RateTurn: ...

    def acquire(self, pool: Pool, waiter: Waiter, *, now: float | None = None) -> bool:
        """Take (or renew) the holder's lease; False: the waiter is parked and will be woken."""
        ...

    def renew(self, pool: Pool, holder: str, *, ttl_s: float | None = None, now: float | None = None) -> None:
        """Keep the holder's lease for ``ttl_s`` more, taking it back if it lapsed (the provider job
        still runs, so it still counts)."""
        ...

    def release(self, pool: Pool, holder: str, *, now: float | None = None) -> int:
        """Give the holder's lease (or parked place) back; returns how many parked callers were woken."""
        ...

    def pause(self, budget: RateBudget | Pool, for_s: float, *, now: float | None = None) -> None:
        """Spend nothing of this budget for ``for_s`` (a 429), for every worker."""
        ...

    def sweep(self, pool: Pool, *, now: float | None = None) -> int:
        """Reap lapsed leases and wake parked callers into free slots; returns how many were woken."""
        ...

    def state(self, budget: RateBudget | Pool, *, now: float | None = None) -> BudgetState: ...


class Unlimited:
    """A ``Limiter`` that never says no (``GENQ_LIMITS__ENABLED=false``): every call goes at once, and
    provider 429s are the only brake."""

    def take_turn(
        self, budget: RateBudget, holder: str, *, horizon_s: float, now: float | None = None
    ) -> RateTurn:
        return RateTurn(Turn.GO)

    def acquire(self, pool: Pool, waiter: Waiter, *, now: float | None = None) -> bool:
        return True

    def renew(self, pool: Pool, holder: str, *, ttl_s: float | None = None, now: float | None = None) -> None:
        pass

    def release(self, pool: Pool, holder: str, *, now: float | None = None) -> int:
        return 0

    def pause(self, budget: RateBudget | Pool, for_s: float, *, now: float | None = None) -> None:
        pass

    def sweep(self, pool: Pool, *, now: float | None = None) -> int:
        return 0

    def state(self, budget: RateBudget | Pool, *, now: float | None = None) -> BudgetState:
        limit = budget.size if isinstance(budget, Pool) else budget.limit
        return BudgetState(budget.name, "pool" if isinstance(budget, Pool) else "rate", limit, 0, 0, None)
