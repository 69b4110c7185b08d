"""The first step of every ``wait`` stage: the provider job's recorded end, or park until there is one.

While the provider works the job keeps its slot (renewed to the wait's deadline) and the stage parks
(``Wait``): the account's status sweep or a webhook records the end and wakes it. Past the deadline the
job fails (``genq_wait_timeout``). What an end means (success, failure) is the provider's; an id the
sweep did not find is asked for alone (``followed_end``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from schemas import StageStatus
from worker.limits import Gate, Pool
from worker.outcomes import Later, Wait
from worker.providers.errors import JobRejected
from worker.waits import WaitResult, Waits


@dataclass(frozen=True)
class Followed:
    """A provider job a stage waits for."""

    provider: str
    account: str
    provider_id: str
    what: str  # for people: "generation 1f2e…"
    pool: Pool  # the slot it holds while it runs
    check_interval_s: float
    max_wait_s: float
    max_wait_setting: str  # the setting that says max_wait_s, named in the timeout error
    since: datetime  # when the provider job started


def recorded_end(followed: Followed, waits: Waits, gate: Gate) -> WaitResult:
    """The end recorded for ``followed`` (``ended`` or ``missing``), or raise ``Wait`` to park until a
    sweep or webhook records it; past its deadline, release the slot and fail the job."""
    result = waits.result(followed.provider, followed.provider_id)
    if result is None:
        remaining_s = max(0.0, followed.max_wait_s - (time.time() - followed.since.timestamp()))
        gate.keep(followed.pool, for_s=remaining_s)
        raise Wait(followed.provider, followed.account, followed.provider_id, what=followed.what,
                   check_in_s=followed.check_interval_s, deadline_in_s=remaining_s)  # fmt: skip
    if result.state == "timeout":
        gate.let_go(followed.pool)
        raise JobRejected(
            f"{followed.what} still running after {followed.max_wait_s:g} s ({followed.max_wait_setting})",
            provider=followed.provider,
            code="genq_wait_timeout",
        )
    return result


def followed_end(
    followed: Followed, waits: Waits, gate: Gate, ask: Callable[[], WaitResult | str]
) -> WaitResult:
    """The end of ``followed`` (``recorded_end``), with its slot given back. If the sweep did not find
    the id (``missing``), ``ask`` asks the provider for it alone (a 404 fails the job) and returns its
    end, or, while it still runs, where it is (for people): then the ``missing`` is dropped and the stage
    runs again at once, to park again."""
    result = recorded_end(followed, waits, gate)
    if result.state == "missing":
        answer = ask()
        if isinstance(answer, str):
            waits.forget(followed.provider, followed.provider_id)
            raise Later(0.0, answer, status=StageStatus.WAITING)
        result = answer
    gate.let_go(followed.pool)
    return result
