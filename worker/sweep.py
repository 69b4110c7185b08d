"""One status sweep per provider account: the only status requests genq sends for parked waits.

Every worker runs a ``Sweeper`` thread per account, and for each account only the holder of a Redis lease
sweeps; the others keep trying to take the lease, so when the holder dies another worker takes over within
``lease_s``. When a check is due, the holder first takes a turn of the account's rate budget through the
limiter (so nothing waits claimed behind a busy or paused budget), then claims the ids whose check is due,
oldest-due first, as many as one status request can carry (``Watcher.page_size``), checks them, and wakes
every parked stage whose provider job ended and schedules the next check of the rest (``check_interval_s``
later; a page whose check failed in any way is checked again then too). When a check is due, the ids due
within half a check interval go along, so requests carry full pages. Status requests so grow with the
number of parked jobs divided by the page size, and an ended job is seen at most about one check interval
late. An account has a thread of its own, so one that waits (a paused budget, a slow provider, a steady stream
of due ids) never delays the checks of another. Weak spots: a page claimed by a holder that dies mid-check is
checked again only after ``claim_hold_s``; the lease bounds overlap by time, so a holder stalled past its
lease (a long GC pause) may sweep once more beside its successor (harmless: resolving is idempotent, only a
request is spent twice).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import Protocol

import redis

from schemas import layout as L
from worker.limits import Limiter, RateBudget, Turn
from worker.limits.budgets import pause_for
from worker.lua import source
from worker.providers.errors import ProviderError, Throttled
from worker.waits import WaitResult, Waits

log = logging.getLogger(__name__)


class Watcher(Protocol):
    """What the sweeper needs of a provider: how to check a page of ids, and what that costs."""

    @property
    def provider(self) -> str: ...
    @property
    def account(self) -> str:
        """A label of the account (never a secret)."""
        ...

    @property
    def rate(self) -> RateBudget:
        """What each status request spends."""
        ...

    @property
    def check_interval_s(self) -> float:
        """How often one parked job is checked."""
        ...

    @property
    def page_size(self) -> int:
        """How many ids one sweep round claims."""
        ...

    @property
    def lookahead_s(self) -> float:
        """When a check is due, ids due within this long go along (0 where the provider forbids
        checking one id sooner than its interval)."""
        ...

    def pages(self, ids: Sequence[str]) -> list[list[str]]:
        """``ids`` split into the pages of one status request each."""
        ...

    def check(self, ids: Sequence[str]) -> Mapping[str, WaitResult | None]:
        """One status request: for each id the provider knows, its end, or None while it runs. An id
        left out is one the provider does not know (``missing``)."""
        ...


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Sweeper:
    def __init__(
        self,
        client: redis.Redis,
        limiter: Limiter,
        watcher: Watcher,
        *,
        lease_s: float,
        horizon_s: float,
        pause_s: float,
        max_pause_s: float = 300.0,
        holder: str | None = None,
        plan: str | None = None,
    ) -> None:
        self.redis = client
        self.waits = Waits(client)
        self.limiter = limiter
        self.watcher = watcher
        self.lease_s = lease_s
        self.horizon_s = horizon_s
        self.pause_s = pause_s  # a 429 without Retry-After pauses the budget this long
        self.max_pause_s = max_pause_s  # and no Retry-After pauses it longer than this
        self.holder = holder or holder_id()
        self.plan = plan  # the account's plan as the settings name it, registered with the account
        self.stopped = threading.Event()
        self._lease = client.register_script(source("lease"))
        self.requests = 0  # status requests sent by this sweeper

    @property
    def claim_hold_s(self) -> float:
        return max(30.0, 3 * self.lease_s)

    def run(self) -> None:
        watcher = self.watcher
        registered = False
        while not self.stopped.is_set():
            # Look at least as often as a parked id may be checked: one parked a moment ago waits no
            # longer for its first check than the check interval says.
            pause_s = min(1.0, self.lease_s / 3, watcher.check_interval_s)
            try:
                if not registered:
                    self._register(watcher)
                    registered = True
                if self.holds(watcher):
                    pause_s = min(pause_s, self.sweep(watcher))
            except redis.RedisError:
                log.warning("sweep of %s: Redis unavailable", watcher.provider)
            self.stopped.wait(pause_s)

    def stop(self) -> None:
        self.stopped.set()

    def _register(self, watcher: Watcher) -> None:
        """The account (for the reports of services that hold no credentials, and producers' warnings)
        and its plan (for producers' checks at submit), in Redis."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(L.ACCOUNTS_KEY, watcher.provider, watcher.account)
            if self.plan is not None:
                pipe.hset(L.PLANS_KEY, watcher.provider, self.plan)
            pipe.execute()

    def holds(self, watcher: Watcher) -> bool:
        """Take or keep the account's sweep lease."""
        key = L.SWEEP_LEASE_KEY.format(provider=watcher.provider, account=watcher.account)
        return bool(self._lease(keys=[key], args=[self.holder, round(self.lease_s * 1000)]))

    def sweep(self, watcher: Watcher) -> float:
        """Check everything due now; return how long until the next check is due (at most 1 s).

        A turn of the rate budget is taken *before* ids are claimed, so no id waits claimed ("being
        checked") behind a busy or paused budget; a page whose check fails in any way, and the pages a
        lost lease leaves unchecked, are due again rather than held for ``claim_hold_s``."""
        provider, account = watcher.provider, watcher.account
        while not self.stopped.is_set():
            next_check_s = self.waits.counts(provider, account).next_check_s
            if next_check_s is None or next_check_s > 0:
                idle_s = min(1.0, watcher.check_interval_s)
                return idle_s if next_check_s is None else min(idle_s, next_check_s)
            if not self._turn(watcher):
                return 0.0
            # Ids due within half a check interval go along: pages stay full, and each job is still
            # checked at least every check interval.
            ids = self.waits.claim_due(
                provider, account, watcher.page_size, hold_s=self.claim_hold_s, ahead_s=watcher.lookahead_s
            )
            pages = watcher.pages(ids)
            for n, page in enumerate(pages):
                if n and not self._turn(watcher):
                    self._due_again(watcher, [pid for rest in pages[n:] for pid in rest], in_s=0.0)
                    return 0.0
                self._check(watcher, page)
        return 0.0

    def _turn(self, watcher: Watcher) -> bool:
        """Wait for a turn of the account's rate budget, keeping the lease; False if it was lost."""
        holder = f"sweep:{self.holder}"
        while not self.stopped.is_set():
            turn = self.limiter.take_turn(watcher.rate, holder, horizon_s=self.horizon_s)
            if turn.turn is Turn.GO:
                return True
            if not self.holds(watcher):
                return False
            self.stopped.wait(min(turn.wait_s, self.lease_s / 3))
        return False

    def _check(self, watcher: Watcher, page: list[str]) -> None:
        provider = watcher.provider
        self.requests += 1
        try:
            found = watcher.check(page)
        except Throttled as exc:
            pause_s = pause_for(exc.retry_after_s, pause_s=self.pause_s, most_s=self.max_pause_s)
            self.limiter.pause(watcher.rate, pause_s)
            self._due_again(watcher, page, in_s=pause_s)
            log.warning("sweep of %s throttled: %s", provider, exc)
            return
        except ProviderError as exc:
            self._due_again(watcher, page, in_s=watcher.check_interval_s)
            log.warning("sweep of %s: %s", provider, exc)
            return
        except Exception:  # a bug in a provider's check: the page is checked again, not held
            self._due_again(watcher, page, in_s=watcher.check_interval_s)
            raise
        ended = {pid: r for pid, r in found.items() if r is not None}
        ended |= {pid: WaitResult(state="missing", source="sweep") for pid in page if pid not in found}
        self._due_again(watcher, [pid for pid in page if pid not in ended], in_s=watcher.check_interval_s,
                        ended=ended)  # fmt: skip

    def _due_again(
        self, watcher: Watcher, ids: list[str], *, in_s: float, ended: dict[str, WaitResult] | None = None
    ) -> None:
        """Next check of ``ids`` in ``in_s``; the ones past their deadline end (``timeout``), with
        ``ended``, in one resolve."""
        late = self.waits.recheck(watcher.provider, watcher.account, ids, in_s=in_s)
        ended = (ended or {}) | {pid: WaitResult(state="timeout", source="sweep") for pid in late}
        self.waits.resolve_many(watcher.provider, ended)
