"""Every provider genq drives. A new provider is its package plus one line here (and its request model
in ``schemas/requests.py``, its stand-in in ``simulators/registry.py``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from pydantic import BaseModel

from schemas.requests import KINDS
from worker.limits.budgets import Budgets
from worker.providers.aimi.spec import SPEC as AIMI
from worker.providers.aistudios.spec import SPEC as AISTUDIOS
from worker.providers.spec import AnySpec, load
from worker.providers.syncso.spec import SPEC as SYNCSO

if TYPE_CHECKING:
    from worker.context import Context
    from worker.graph import Graph
    from worker.settings import Settings
    from worker.sweep import Watcher

PROVIDERS: Mapping[str, AnySpec] = {spec.name: spec for spec in (SYNCSO, AISTUDIOS, AIMI)}


def specs(settings: BaseModel, *, configured_only: bool = False) -> list[AnySpec]:
    """The providers; with ``configured_only``, those whose credentials are set (the ones jobs can use:
    only their accounts are swept and reported)."""
    return [s for s in PROVIDERS.values() if not configured_only or s.section(settings).configured]


def for_kind(kind: str) -> AnySpec:
    """The provider whose stages run jobs of ``kind``."""
    return PROVIDERS[KINDS[kind].provider]


def graph_for(kind: str) -> Graph:
    """The step graph of jobs of ``kind`` (declared in its provider's package)."""
    graphs: tuple[Graph, ...] = load(for_kind(kind).graphs)
    return next(g for g in graphs if g.kind == kind)


def all_graphs() -> list[Graph]:
    """Every kind's graph, in registry order."""
    return [g for spec in PROVIDERS.values() for g in load(spec.graphs)]


def budgets_from(settings: Settings, *, configured_only: bool = False) -> Budgets:
    """Every provider's declared budgets (with ``configured_only``: of the providers in use)."""
    ttl = settings.limits.lease_ttl_s
    return Budgets(
        {
            spec.name: spec.budgets(spec.section(settings), ttl)
            for spec in specs(settings, configured_only=configured_only)
        }
    )


def watchers(ctx: Context) -> list[Watcher]:
    """The status sweeps of the providers in use (one per account)."""
    found = []
    for spec in specs(ctx.settings, configured_only=True):
        for path in spec.watchers:
            build: Callable[[Context], Watcher] = load(path)
            found.append(build(ctx))
    return found
