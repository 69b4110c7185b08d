"""Budget figures for people (``genq limits``) and for metrics (Prometheus gauges: the text of
``genq limits --prometheus``, and the same gauges served by ``genq metrics``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from worker.limits.base import BudgetState, Limiter
from worker.limits.budgets import Budgets, Pool, RateBudget

if TYPE_CHECKING:
    from worker.schedule import ScheduleState
    from worker.waits import WaitCounts


@dataclass(frozen=True)
class Gauge:
    """One Prometheus gauge: its name, help text and samples (labels, value)."""

    name: str
    help: str
    samples: list[tuple[dict[str, str], float | int]] = field(default_factory=list)


def snapshot(limiter: Limiter, budgets: Budgets) -> list[BudgetState]:
    """Every declared budget's current state."""
    declared: list[RateBudget | Pool] = [*budgets.rates, *budgets.pools]
    return [limiter.state(budget) for budget in declared]


def gauges(
    states: Iterable[BudgetState],
    waits: Iterable[WaitCounts] = (),
    scheduled: Iterable[ScheduleState] = (),
) -> list[Gauge]:
    """The figures as gauges: one sample per budget, per parked account, per queue."""
    fields = {
        "genq_budget_limit": ("Calls per period (rate) or slots (pool) the provider allows.", "limit"),
        "genq_budget_in_use": ("Slots held, or calls sent in the last period.", "in_use"),
        "genq_budget_waiting": ("Stages parked for a slot, or reserved rate turns not yet used.", "waiting"),
        "genq_budget_paused_until_seconds": (
            "Unix time a 429 paused the budget until; 0 if not paused.",
            None,
        ),
    }
    states = list(states)
    result = []
    for metric, (help_text, name) in fields.items():
        gauge = Gauge(metric, help_text)
        for s in states:
            value = getattr(s, name) if name else (s.paused_until or 0.0)
            gauge.samples.append(({"budget": s.name, "kind": s.kind}, float(value)))
        result.append(gauge)
    parked = Gauge("genq_parked", "Stages parked until their provider job ends.")
    parked.samples.extend(({"provider": w.provider, "account": w.account}, w.parked) for w in waits)
    later = Gauge("genq_scheduled", "Stage runs waiting in the schedule.")
    later.samples.extend(({"queue": q.queue}, q.scheduled) for q in scheduled)
    return [*result, parked, later]


def prometheus_text(
    states: Iterable[BudgetState],
    waits: Iterable[WaitCounts] = (),
    scheduled: Iterable[ScheduleState] = (),
) -> str:
    """The figures as Prometheus gauges, in the text format."""
    lines: list[str] = []
    for gauge in gauges(states, waits, scheduled):
        lines += [f"# HELP {gauge.name} {gauge.help}", f"# TYPE {gauge.name} gauge"]
        for labels, value in gauge.samples:
            text = ",".join(f'{key}="{label}"' for key, label in labels.items())
            number = f"{value:g}" if isinstance(value, float) else str(value)
            lines.append(f"{gauge.name}{{{text}}} {number}")
    return "\n".join(lines) + "\n"
