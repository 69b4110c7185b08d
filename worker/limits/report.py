"""Budget figures for people (``genq limits``) and for metrics (Prometheus text format)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from worker.limits.base import BudgetState, Limiter
from worker.limits.budgets import Budgets, Pool, RateBudget

if TYPE_CHECKING:
    from worker.schedule import ScheduleState
    from worker.waits import WaitCounts


def snapshot(limiter: Limiter, budgets: Budgets) -> list[BudgetState]:
    """Every declared budget's current state."""
    declared: list[RateBudget | Pool] = [*budgets.rates, *budgets.pools]
    return [limiter.state(budget) for budget in declared]


def prometheus_text(
    states: Iterable[BudgetState],
    waits: Iterable[WaitCounts] = (),
    scheduled: Iterable[ScheduleState] = (),
) -> str:
    """The figures as Prometheus gauges: one sample per budget, per parked account, per queue."""
    gauges = {
        "genq_budget_limit": ("Calls per period (rate) or slots (pool) the provider allows.", "limit"),
        "genq_budget_in_use": ("Slots held, or calls sent in the last period.", "in_use"),
        "genq_budget_waiting": ("Stages parked for a slot, or reserved rate turns not yet used.", "waiting"),
        "genq_budget_paused_until_seconds": (
            "Unix time a 429 paused the budget until; 0 if not paused.",
            None,
        ),
    }
    states = list(states)
    lines: list[str] = []
    for metric, (help_text, field) in gauges.items():
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
        for s in states:
            value = getattr(s, field) if field else (s.paused_until or 0.0)
            lines.append(f'{metric}{{budget="{s.name}",kind="{s.kind}"}} {float(value):g}')
    lines += ["# HELP genq_parked Stages parked until their provider job ends.", "# TYPE genq_parked gauge"]
    lines += [f'genq_parked{{provider="{w.provider}",account="{w.account}"}} {w.parked}' for w in waits]
    lines += ["# HELP genq_scheduled Stage runs waiting in the schedule.", "# TYPE genq_scheduled gauge"]
    lines += [f'genq_scheduled{{queue="{q.queue}"}} {q.scheduled}' for q in scheduled]
    return "\n".join(lines) + "\n"
