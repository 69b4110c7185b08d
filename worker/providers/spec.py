"""What genq needs to know of a provider, in one place: ``ProviderSpec``.

Each provider package defines its ``SPEC`` (``worker/providers/<name>/spec.py``) and
``worker/providers/registry.py`` lists them. The core (app, context, budgets, sweeps, webhooks, CLI)
iterates the registry and names no provider. The parts that import the Celery app (stages), the graphs or the
worker context (watcher, webhook handler) are named by import path and loaded when first used, so the
registry can be imported by the settings and the app without an import cycle.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import redis
from pydantic import BaseModel

from worker.limits.budgets import Pool, RateBudget
from worker.sections import ProviderSettings

S = TypeVar("S", bound=ProviderSettings)
C = TypeVar("C")


def load(path: str) -> Any:
    """The object at ``"package.module:attribute"``."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True, kw_only=True)
class ProviderSpec(Generic[S, C]):
    # The queue its stages run on, its settings section (GENQ_<NAME>__...), its task names
    # (genq.<name>.<stage>) and its webhook path (/<name>).
    name: str
    title: str  # for people: "sync.so"
    settings: type[S]
    # The account's budgets from its settings section and the lease time to live.
    budgets: Callable[[S, float], tuple[RateBudget | Pool, ...]]
    # Its API client, built once per worker process (the Redis client is for shared state, e.g. tokens).
    client: Callable[[S, redis.Redis], C]
    stages: str  # the module of its Celery tasks
    graphs: str  # "module:attribute": the step graph of each job kind it runs (worker/graph.py)
    # "module:function"s: (Context) -> a status sweep's Watcher, one per kind of provider job waited for
    # (sync.so: generations and batches), each with its own wait namespace (``Watcher.provider``).
    watchers: tuple[str, ...] = ()
    webhook: str | None = None  # "module:function": (Receiver, Request) -> Response, at POST /<name>
    # "module:function": (JobRecord, Context, Gate) -> what the job will cost (USD), or None if unknown: what
    # it reserves against its tenant's spend budget (worker/spend.py).
    cost: str | None = None
    # "module:attribute": a sequence of click commands ``genq`` offers for the account (sync.so: estimate,
    # models, assets).
    commands: str | None = None

    def section(self, settings: BaseModel) -> S:
        """This provider's section of the worker settings."""
        section = getattr(settings, self.name)
        if not isinstance(section, self.settings):
            raise TypeError(f"settings.{self.name} is not {self.settings.__name__}")
        return section

    def pools(self, settings: BaseModel, lease_ttl_s: float) -> list[Pool]:
        return [b for b in self.budgets(self.section(settings), lease_ttl_s) if isinstance(b, Pool)]


AnySpec = ProviderSpec[Any, Any]
