"""What ``genq limits`` prints: budgets, parked waits and scheduled runs, as tables."""

from __future__ import annotations

import time
from collections.abc import Iterable

from rich.table import Table

from schemas import layout as L
from worker.context import Context, accounts_in_use, budgets_from, providers_in_use
from worker.limits import BudgetState
from worker.limits.report import snapshot
from worker.schedule import ScheduleState
from worker.waits import WaitCounts


def in_use(ctx: Context) -> tuple[list[BudgetState], list[WaitCounts], list[ScheduleState]]:
    """The budgets of the providers in use, their parked waits per account and the scheduled runs per
    queue. In use: the credentials are set here, or a worker's status sweep registered the account (so
    a service without credentials, like compose's `metrics`, reports the fleet's)."""
    accounts = accounts_in_use(ctx)
    providers = providers_in_use(ctx, accounts)
    states = snapshot(ctx.limiter, budgets_from(ctx.settings, names=providers))
    waits = [ctx.waits.counts(namespace, account) for namespace, account in accounts.items()]
    queues = [L.DEFAULT_QUEUE, *providers]
    return states, waits, [ctx.schedule.state(queue) for queue in queues]


def budget_table(states: Iterable[BudgetState]) -> Table:
    table = Table(title="provider budgets", title_justify="left")
    for column in ("budget", "kind", "limit", "in use", "waiting", "paused until"):
        table.add_column(column)
    for s in states:
        paused = time.strftime("%H:%M:%S", time.localtime(s.paused_until)) if s.paused_until else ""
        table.add_row(s.name, s.kind, str(s.limit), f"{s.in_use:g}", str(s.waiting), paused)
    return table


def _in(seconds: float | None) -> str:
    return "" if seconds is None else f"in {seconds:.1f} s"


def backlog_tables(waits: Iterable[WaitCounts], scheduled: Iterable[ScheduleState]) -> list[Table]:
    parked = Table(title="parked until the provider job ends", title_justify="left")
    for column in ("provider", "account", "parked", "next check"):
        parked.add_column(column)
    for w in waits:
        parked.add_row(w.provider, w.account, str(w.parked), _in(w.next_check_s))
    later = Table(title="scheduled for later", title_justify="left")
    for column in ("queue", "scheduled", "next due"):
        later.add_column(column)
    for s in scheduled:
        later.add_row(s.queue, str(s.scheduled), _in(s.next_due_s))
    return [parked, later]
