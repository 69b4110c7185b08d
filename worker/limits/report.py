"""Budget figures for people (``genq limits``) and for metrics (Prometheus text format)."""

from __future__ import annotations

from collections.abc import Iterable

from worker.limits.base import BudgetState, Limiter
from worker.limits.budgets import Budgets, Pool, RateBudget


def snapshot(limiter: Limiter, budgets: Budgets) -> list[BudgetState]:
    """Every declared budget's current state."""
    declared: list[RateBudget | Pool] = [*budgets.rates, *budgets.pools]
    return [limiter.state(budget) for budget in declared]


def prometheus_text(states: Iterable[BudgetState]) -> str:
    """The figures as Prometheus gauges, one sample per budget."""
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
    return "\n".join(lines) + "\n"
