"""The status sweep never leaves a parked id claimed ("being checked") without a check in flight: a
page whose check raised is due again at its next interval, and while the sweep waits for a turn of a
busy budget it claims nothing (on the session Redis's scratch database)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pytest
import redis

from schemas import layout as L
from tests.conftest import until
from worker.limits import RateBudget, RedisLimiter
from worker.providers.errors import RateLimited
from worker.sweep import Sweeper
from worker.waits import WaitResult, Waits

RATE = RateBudget("sweep-test.rate", 1000, 1.0, 0.0)


@dataclass
class Broken:
    """A watcher whose check has a bug."""

    provider: str = "syncso"
    account: str = "sweep-test"
    rate: RateBudget = RATE
    check_interval_s: float = 0.5
    page_size: int = 10
    lookahead_s: float = 0.0
    calls: int = 0

    def pages(self, ids: Sequence[str]) -> list[list[str]]:
        return [list(ids)]

    def check(self, ids: Sequence[str]) -> Mapping[str, WaitResult | None]:
        self.calls += 1
        raise KeyError("a field the provider no longer sends")


def park(waits: Waits, watcher: Broken, provider_id: str) -> None:
    waits.park(watcher.provider, watcher.account, provider_id, job="j", stage="wait", queue="nowhere",
               message="m", check_in_s=0.0, deadline_in_s=600)  # fmt: skip


def test_a_page_whose_check_raised_is_due_again_at_its_interval_not_held(scratch: redis.Redis) -> None:
    waits, watcher = Waits(scratch), Broken()
    park(waits, watcher, "gen-1")
    sweeper = Sweeper(scratch, RedisLimiter(scratch), watcher, lease_s=5, horizon_s=30, pause_s=1)
    with pytest.raises(KeyError):
        sweeper.sweep(watcher)
    assert watcher.calls == 1
    next_check_s = waits.counts(watcher.provider, watcher.account).next_check_s
    assert next_check_s is not None and 0 < next_check_s <= watcher.check_interval_s  # not claim_hold_s


def test_a_sweep_that_gets_no_turn_claims_nothing(scratch: redis.Redis) -> None:
    waits, watcher = Waits(scratch), Broken()
    park(waits, watcher, "gen-2")
    due_key = L.wait_keys(watcher.provider)[2] + watcher.account
    due = scratch.zscore(due_key, "gen-2")
    limiter = RedisLimiter(scratch)
    limiter.pause(watcher.rate, 30.0)  # another worker's 429: no turn for 30 s
    # Another worker holds the account's sweep lease: waiting for a turn, this one gives up.
    scratch.set(
        L.SWEEP_LEASE_KEY.format(provider=watcher.provider, account=watcher.account), "other", px=5000
    )
    sweeper = Sweeper(scratch, limiter, watcher, lease_s=5, horizon_s=30, pause_s=1)
    assert sweeper.sweep(watcher) == 0.0
    assert scratch.zscore(due_key, "gen-2") == due  # still due as it was: not claimed, not "being checked"
    assert watcher.calls == 0


def test_a_running_sweep_registers_its_account_for_services_without_credentials(scratch: redis.Redis) -> None:
    """`genq metrics` (given no provider key in compose) reports the accounts the workers sweep, and
    producers check a batch against the plan registered with it."""
    watcher = Broken(account="registered-acct")
    sweeper = Sweeper(
        scratch, RedisLimiter(scratch), watcher, lease_s=5, horizon_s=30, pause_s=1, plan="growth"
    )
    thread = threading.Thread(target=sweeper.run, daemon=True)
    thread.start()
    try:
        until(lambda: scratch.hget(L.ACCOUNTS_KEY, "syncso") == b"registered-acct", 5, "the registration")
        assert scratch.hget(L.PLANS_KEY, "syncso") == b"growth"
    finally:
        sweeper.stop()
        thread.join(5)


@dataclass
class Throttling(Broken):
    """A watcher whose provider answers 429 with a Retry-After of a day."""

    def check(self, ids: Sequence[str]) -> Mapping[str, WaitResult | None]:
        self.calls += 1
        raise RateLimited("slow down", provider="syncso", retry_after_s=86400.0)


def test_a_retry_after_of_a_day_pauses_the_sweep_for_max_pause_s_only(scratch: redis.Redis) -> None:
    waits, watcher = Waits(scratch), Throttling()
    park(waits, watcher, "gen-3")
    limiter = RedisLimiter(scratch)
    sweeper = Sweeper(scratch, limiter, watcher, lease_s=5, horizon_s=30, pause_s=1, max_pause_s=300)
    now = float(scratch.time()[0])
    sweeper.sweep(watcher)
    assert watcher.calls == 1
    paused_until = limiter.state(watcher.rate).paused_until
    assert paused_until is not None and paused_until <= now + 302
    next_check_s = waits.counts(watcher.provider, watcher.account).next_check_s
    assert next_check_s is not None and next_check_s <= 301
