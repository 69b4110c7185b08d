"""One contract for both limiters: the Redis one (real server, Lua) and the in-memory fake.
Every call passes an explicit clock, so the tests are exact."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import redis

from tests.conftest import Services
from worker.limits.base import Limiter, Turn, Waiter
from worker.limits.budgets import Pool, RateBudget
from worker.limits.memory import MemoryLimiter
from worker.limits.redis_limiter import RedisLimiter

T0 = 1_800_000_000.0


def approx(x: float) -> object:
    return pytest.approx(x, abs=1e-5)  # seconds near T0 carry about 2e-7 of float error


@dataclass
class Backend:
    limiter: Limiter
    woken: Callable[[str], list[str]]  # messages pushed to the front of a queue, in the order pushed
    tag: str  # makes budget and queue names unique to the test


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest, services: Services) -> Iterator[Backend]:
    tag = uuid.uuid4().hex[:8]
    if request.param == "memory":
        memory = MemoryLimiter(clock=lambda: T0)
        yield Backend(memory, lambda q: list(memory.queues[q]), tag)
        return
    client = redis.Redis.from_url(services.redis.url)
    yield Backend(RedisLimiter(client), lambda q: [m.decode() for m in client.lrange(q, 0, -1)], tag)
    client.close()


def rate(b: Backend, limit: int = 5, period_s: float = 1.0, guard_s: float = 0.0) -> RateBudget:
    return RateBudget(f"test{b.tag}.rate", limit, period_s, guard_s)


def pool(b: Backend, size: int = 2, ttl_s: float = 10.0) -> Pool:
    return Pool(f"test{b.tag}.pool", size, ttl_s)


def waiter(b: Backend, holder: str, tenant: str = "", order: float = 0.0) -> Waiter:
    return Waiter(holder, tenant, order, f"q{b.tag}", f"run {holder}")


# Rate budgets


def test_turns_are_spaced_by_the_interval_and_kept_for_their_holders(backend: Backend) -> None:
    lim, budget = backend.limiter, rate(backend)  # 5/s: one turn every 0.2 s
    assert lim.take_turn(budget, "a", horizon_s=10, now=T0).turn is Turn.GO
    b = lim.take_turn(budget, "b", horizon_s=10, now=T0)
    c = lim.take_turn(budget, "c", horizon_s=10, now=T0)
    assert (b.turn, c.turn) == (Turn.WAIT, Turn.WAIT)
    assert (b.wait_s, c.wait_s) == (approx(0.2), approx(0.4))
    early = lim.take_turn(budget, "b", horizon_s=10, now=T0 + 0.1)
    assert (early.turn, early.wait_s) == (Turn.WAIT, approx(0.1))
    assert lim.take_turn(budget, "b", horizon_s=10, now=T0 + 0.2).turn is Turn.GO
    assert lim.take_turn(budget, "c", horizon_s=10, now=T0 + 0.4).turn is Turn.GO
    assert lim.take_turn(budget, "d", horizon_s=10, now=T0 + 0.4).wait_s == approx(0.2)


def test_nothing_is_reserved_beyond_the_horizon(backend: Backend) -> None:
    lim, budget = backend.limiter, rate(backend)
    turns = [lim.take_turn(budget, h, horizon_s=0.5, now=T0) for h in "abcd"]
    assert [t.turn for t in turns] == [Turn.GO, Turn.WAIT, Turn.WAIT, Turn.FULL]
    assert turns[3].wait_s == approx(0.1)  # when the backlog is back inside the horizon
    assert lim.state(budget, now=T0).waiting == 2


def test_a_late_holder_goes_when_the_window_has_room_else_gets_a_new_turn(backend: Backend) -> None:
    lim, budget = backend.limiter, rate(backend, limit=2, period_s=1.0)  # one turn every 0.5 s
    assert lim.take_turn(budget, "a", horizon_s=10, now=T0).turn is Turn.GO
    assert lim.take_turn(budget, "b", horizon_s=10, now=T0).wait_s == approx(0.5)
    assert lim.take_turn(budget, "c", horizon_s=10, now=T0).wait_s == approx(1.0)
    assert lim.take_turn(budget, "b", horizon_s=10, now=T0 + 0.9).turn is Turn.GO  # 0.4 s late: room
    # c comes on time at T0 + 1.0: the window is (T0, T0 + 1.0], so a's call has just left it and b's
    # is the only one in it: c goes, and the window then holds exactly the limit.
    late = lim.take_turn(budget, "c", horizon_s=10, now=T0 + 1.0)
    assert (late.turn, late.wait_s) == (Turn.GO, 0.0)
    assert lim.state(budget, now=T0 + 1.0).in_use == 2
    # d asks in the same instant: the window is full until b's call leaves it at T0 + 1.9.
    full = lim.take_turn(budget, "d", horizon_s=10, now=T0 + 1.0)
    assert (full.turn, full.wait_s) == (Turn.WAIT, approx(0.9))


@pytest.mark.parametrize(
    ("lateness_s", "first_5_s"),
    [([0.0], 50), ([0.0, 0.0, 0.01, 0.2, 0.6], 42)],  # punctual callers; 40% late by 2 to 6 intervals
)
def test_no_window_ever_holds_more_than_the_limit(
    backend: Backend, lateness_s: list[float], first_5_s: int
) -> None:
    lim, budget = backend.limiter, rate(backend, limit=10, period_s=1.0, guard_s=0.01)
    sent: list[float] = []
    lateness = random.Random(5)
    pending = {f"h{i}": T0 for i in range(60)}  # 60 callers arrive at once
    while pending:
        holder, at = min(pending.items(), key=lambda kv: kv[1])
        turn = lim.take_turn(budget, holder, horizon_s=100, now=at)
        if turn.turn is Turn.GO:
            sent.append(at)
            del pending[holder]
        else:  # back at its turn, but often late, as a busy worker would be
            pending[holder] = at + turn.wait_s + lateness.choice(lateness_s)
    assert max(sum(1 for s in sent if t <= s < t + budget.period_s) for t in sent) <= budget.limit
    # While callers wait, the budget is used: punctual callers use all of it, late ones most of it.
    assert sum(1 for s in sent if s < T0 + 5.0) >= first_5_s


def test_a_pause_holds_every_new_turn_until_it_ends(backend: Backend) -> None:
    lim, budget = backend.limiter, rate(backend)
    assert lim.take_turn(budget, "a", horizon_s=10, now=T0).turn is Turn.GO
    lim.pause(budget, 2.0, now=T0)
    turn = lim.take_turn(budget, "b", horizon_s=10, now=T0 + 0.5)
    assert (turn.turn, turn.wait_s) == (Turn.WAIT, approx(1.5))
    assert lim.state(budget, now=T0 + 0.5).paused_until == approx(T0 + 2.0)
    assert lim.state(budget, now=T0 + 2.5).paused_until is None


# Concurrency pools


def test_a_full_pool_parks_callers_and_a_release_wakes_the_oldest(backend: Backend) -> None:
    lim, p = backend.limiter, pool(backend, size=2)
    assert lim.acquire(p, waiter(backend, "a"), now=T0)
    assert lim.acquire(p, waiter(backend, "b"), now=T0)
    assert not lim.acquire(p, waiter(backend, "d", order=2), now=T0)
    assert not lim.acquire(p, waiter(backend, "c", order=1), now=T0)
    state = lim.state(p, now=T0)
    assert (state.in_use, state.waiting) == (2, 2)

    assert lim.release(p, "a", now=T0 + 1) == 1
    assert backend.woken(f"q{backend.tag}") == ["run c"]
    assert lim.acquire(p, waiter(backend, "c", order=1), now=T0 + 1)  # it already holds the slot
    assert lim.state(p, now=T0 + 1).in_use == 2


def test_parked_tenants_are_served_round_robin_oldest_first(backend: Backend) -> None:
    lim, p = backend.limiter, pool(backend, size=1)
    assert lim.acquire(p, waiter(backend, "x"), now=T0)
    for order, holder in [(5, "big5"), (1, "big1"), (3, "big3"), (2, "big2"), (4, "big4")]:
        lim.acquire(p, waiter(backend, holder, tenant="big", order=order), now=T0)
    for order, holder in [(9, "small1"), (10, "small2")]:
        lim.acquire(p, waiter(backend, holder, tenant="small", order=order), now=T0)
    holder = "x"
    for step in range(7):
        lim.release(p, holder, now=T0 + step)
        holder = backend.woken(f"q{backend.tag}")[-1].removeprefix("run ")
    assert backend.woken(f"q{backend.tag}") == [
        "run big1", "run small1", "run big2", "run small2", "run big3", "run big4", "run big5"
    ]  # fmt: skip


def test_a_lapsed_lease_is_reclaimed_by_a_sweep(backend: Backend) -> None:
    lim, p = backend.limiter, pool(backend, size=1, ttl_s=1.0)
    assert lim.acquire(p, waiter(backend, "dead"), now=T0)
    assert not lim.acquire(p, waiter(backend, "next"), now=T0 + 0.5)
    assert lim.sweep(p, now=T0 + 0.9) == 0
    assert lim.state(p, now=T0 + 1.1).in_use == 0
    assert lim.sweep(p, now=T0 + 1.1) == 1
    assert backend.woken(f"q{backend.tag}") == ["run next"]


def test_renewal_keeps_a_lease_and_takes_back_a_lapsed_one_even_over_size(backend: Backend) -> None:
    lim, p = backend.limiter, pool(backend, size=1, ttl_s=1.0)
    assert lim.acquire(p, waiter(backend, "a"), now=T0)
    lim.renew(p, "a", ttl_s=5.0, now=T0 + 0.9)
    assert lim.state(p, now=T0 + 3).in_use == 1
    assert lim.sweep(p, now=T0 + 6) == 0  # lapsed: gone
    assert lim.acquire(p, waiter(backend, "b"), now=T0 + 6)
    lim.renew(p, "a", now=T0 + 6)  # its provider job still runs: it counts again
    assert lim.state(p, now=T0 + 6).in_use == 2
    assert not lim.acquire(p, waiter(backend, "c"), now=T0 + 6)


def test_a_paused_pool_grants_nothing_until_the_pause_ends(backend: Backend) -> None:
    lim, p = backend.limiter, pool(backend, size=2)
    lim.pause(p, 3.0, now=T0)
    assert not lim.acquire(p, waiter(backend, "a"), now=T0 + 1)
    assert lim.sweep(p, now=T0 + 2) == 0
    assert lim.state(p, now=T0 + 2).paused_until == approx(T0 + 3)
    assert lim.sweep(p, now=T0 + 3.1) == 1
    assert backend.woken(f"q{backend.tag}") == ["run a"]


def test_a_pause_parks_even_a_holder_about_to_start_a_provider_job(backend: Backend) -> None:
    lim, p = backend.limiter, pool(backend, size=2)
    assert lim.acquire(p, waiter(backend, "a"), now=T0)
    lim.pause(p, 2.0, now=T0 + 1)
    assert not lim.acquire(p, waiter(backend, "a"), now=T0 + 1.5)
    state = lim.state(p, now=T0 + 1.5)
    assert (state.in_use, state.waiting) == (0, 1)
    assert lim.sweep(p, now=T0 + 3.1) == 1
    assert backend.woken(f"q{backend.tag}") == ["run a"]


def test_a_released_parked_caller_is_never_woken(backend: Backend) -> None:
    lim, p = backend.limiter, pool(backend, size=1)
    lim.acquire(p, waiter(backend, "a"), now=T0)
    lim.acquire(p, waiter(backend, "cancelled", order=1), now=T0)
    lim.acquire(p, waiter(backend, "b", order=2), now=T0)
    lim.acquire(p, waiter(backend, "b", order=2), now=T0)  # parked twice (a redelivery): once in line
    lim.release(p, "cancelled", now=T0)
    lim.release(p, "a", now=T0)
    lim.release(p, "b", now=T0)
    assert backend.woken(f"q{backend.tag}") == ["run b"]
    assert lim.state(p, now=T0).waiting == 0
