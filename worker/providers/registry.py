"""Every provider genq drives. A new provider is its package plus its spec and its settings section here
(and its request model in ``schemas/requests.py``, its stand-in in ``simulators/registry.py``).

This module imports no part of the core but the provider packages' specs and sections, so that
``worker.settings`` can build its ``Settings`` on ``ProviderSections`` without an import cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from schemas.requests import KINDS
from worker.providers.aimi.settings import AimiSettings
from worker.providers.aimi.spec import SPEC as AIMI
from worker.providers.aistudios.settings import AIStudiosSettings
from worker.providers.aistudios.spec import SPEC as AISTUDIOS
from worker.providers.spec import AnySpec, load
from worker.providers.syncso.settings import SyncSoSettings
from worker.providers.syncso.spec import SPEC as SYNCSO

if TYPE_CHECKING:
    from worker.graph import Graph

PROVIDERS: Mapping[str, AnySpec] = {spec.name: spec for spec in (SYNCSO, AISTUDIOS, AIMI)}


class ProviderSections(BaseModel):
    """Each provider's settings section, named after it (``GENQ_SYNCSO__API_KEY`` ...). Written out field
    by field so that mypy knows ``settings.syncso`` is a ``SyncSoSettings``; checked against ``PROVIDERS``
    when this module is imported, so the two cannot drift apart."""

    syncso: SyncSoSettings = Field(default_factory=SyncSoSettings)
    aistudios: AIStudiosSettings = Field(default_factory=AIStudiosSettings)
    aimi: AimiSettings = Field(default_factory=AimiSettings)


def _check_sections(providers: Mapping[str, AnySpec] = PROVIDERS) -> None:
    sections = {name: field.annotation for name, field in ProviderSections.model_fields.items()}
    declared = {spec.name: spec.settings for spec in providers.values()}
    if sections != declared:
        raise TypeError(f"ProviderSections has {sections}, the providers' specs declare {declared}")


_check_sections()


def specs(settings: ProviderSections, *, configured_only: bool = False) -> list[AnySpec]:
    """The providers; with ``configured_only``, those whose credentials are set (the ones jobs can use:
    only their accounts are swept and reported)."""
    return [s for s in PROVIDERS.values() if not configured_only or s.section(settings).configured]


def for_kind(kind: str) -> AnySpec:
    """The provider whose stages run jobs of ``kind``."""
    return PROVIDERS[KINDS[kind].provider]


# The graphs of kinds no provider runs: a pipeline's steps are jobs of the other kinds.
CORE_GRAPHS: Mapping[str, str] = {"pipeline": "worker.pipeline:GRAPH"}


@cache
def graph_for(kind: str) -> Graph:
    """The step graph of jobs of ``kind`` (declared in its provider's package, or in ``CORE_GRAPHS``)."""
    if kind in CORE_GRAPHS:
        graph: Graph = load(CORE_GRAPHS[kind])
        return graph
    graphs: tuple[Graph, ...] = load(for_kind(kind).graphs)
    return next(g for g in graphs if g.kind == kind)


def all_graphs() -> list[Graph]:
    """Every kind's graph, in registry order."""
    return [g for spec in PROVIDERS.values() for g in load(spec.graphs)]
