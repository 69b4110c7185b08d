"""What a worker process talks to: settings, the job store, the limiter, provider clients. Built lazily,
once per process (after Celery forks its pool), so no connection is shared across processes.

Also what the registry's providers amount to for given settings (their budgets, their status sweeps):
here rather than in the registry, which the settings import."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any, TypeVar

import redis

from schemas import layout as L
from schemas.inputs import parse_roots
from storage import OutputStore, output_store
from worker.handoff import Roots
from worker.limits import Budgets, Limiter, RedisLimiter, Unlimited
from worker.providers.egress import Egress
from worker.providers.registry import PROVIDERS, specs
from worker.providers.spec import ProviderSpec, load
from worker.schedule import Schedule
from worker.sections import ProviderSettings
from worker.settings import Settings, get_settings, redis_client
from worker.spend import Spend
from worker.store import JobStore
from worker.sweep import Watcher
from worker.waits import Waits

S = TypeVar("S", bound=ProviderSettings)
C = TypeVar("C")


@dataclass
class Context:
    settings: Settings
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @cached_property
    def redis(self) -> redis.Redis:
        return redis_client(self.settings)

    @cached_property
    def store(self) -> JobStore:
        return JobStore(self.redis)

    @cached_property
    def schedule(self) -> Schedule:
        return Schedule(self.redis)

    @cached_property
    def waits(self) -> Waits:
        return Waits(self.redis)

    @cached_property
    def limiter(self) -> Limiter:
        return RedisLimiter(self.redis) if self.settings.limits.enabled else Unlimited()

    @cached_property
    def budgets(self) -> Budgets:
        """Every provider's budgets (a stage spends its own provider's)."""
        return budgets_from(self.settings)

    @cached_property
    def budgets_in_use(self) -> Budgets:
        """The budgets of the providers whose credentials are set here: the ones this process sweeps."""
        return budgets_from(self.settings, configured_only=True)

    @cached_property
    def spend(self) -> Spend:
        """Tenants' spend budgets (worker/spend.py)."""
        return Spend(self.redis)

    @cached_property
    def egress(self) -> Egress:
        """What fetches the URLs jobs name (source videos): the egress policy's one connection pool."""
        return Egress(self.settings.egress)

    @cached_property
    def outputs(self) -> OutputStore:
        """Where this process stores outputs (GENQ_OUTPUTS__URL, else GENQ_ARTIFACT_DIR)."""
        return output_store(self.settings.outputs, self.settings.artifact_dir)

    @property
    def roots(self) -> Roots:
        """Where a stage may read a job's local inputs (``worker.handoff.Roots``)."""
        directory = getattr(self.outputs, "directory", None)
        outputs = (Path(directory).resolve(),) if isinstance(directory, Path) else ()
        return Roots(parse_roots(self.settings.input_roots), outputs)

    def section(self, spec: ProviderSpec[S, Any]) -> S:
        return spec.section(self.settings)

    def client(self, spec: ProviderSpec[Any, C]) -> C:
        """The provider's API client, built on first use (one per process; clients are thread-safe)."""
        with self._lock:
            if spec.name not in self._clients:
                self._clients[spec.name] = spec.client(spec.section(self.settings), self.redis)
            client: C = self._clients[spec.name]
            return client


def budgets_from(
    settings: Settings, *, configured_only: bool = False, names: Collection[str] | None = None
) -> Budgets:
    """Every provider's declared budgets (with ``configured_only``: of the providers whose credentials
    are set; with ``names``: of those providers)."""
    ttl = settings.limits.lease_ttl_s
    return Budgets(
        {
            spec.name: spec.budgets(spec.section(settings), ttl)
            for spec in specs(settings, configured_only=configured_only)
            if names is None or spec.name in names
        }
    )


def watchers(ctx: Context, *, configured_only: bool = True) -> list[Watcher]:
    """The status sweeps of the providers in use here (one per account and kind of provider job); with
    ``configured_only=False``, of every provider (for their wait namespaces: nothing is sent)."""
    found = []
    for spec in specs(ctx.settings, configured_only=configured_only):
        for path in spec.watchers:
            build: Callable[[Context], Watcher] = load(path)
            found.append(build(ctx))
    return found


def plans(ctx: Context) -> dict[str, str]:
    """Provider -> the plan its settings here name, of the providers in use here that have plans."""
    found = {
        spec.name: spec.section(ctx.settings).plan_name for spec in specs(ctx.settings, configured_only=True)
    }
    return {name: plan for name, plan in found.items() if plan is not None}


def accounts_in_use(ctx: Context) -> dict[str, str]:
    """Wait namespace -> account, of every provider account in use: those whose credentials these
    settings hold, and those a worker's status sweep registered in Redis (``ACCOUNTS_KEY``), so that
    `genq metrics` and `genq limits` report the fleet's accounts without holding their credentials."""
    registered = {L.text(k): L.text(v) for k, v in ctx.redis.hgetall(L.ACCOUNTS_KEY).items()}
    found = registered | {w.provider: w.account for w in watchers(ctx)}
    return {namespace: found[namespace] for namespace in sorted(found, key=_registry_order)}


def _provider_of(namespace: str) -> str:
    """The provider of a wait namespace: ``<provider>`` or ``<provider>.<kind>``."""
    return namespace.split(".", 1)[0]


def _registry_order(namespace: str) -> tuple[int, str]:
    names = list(PROVIDERS)
    provider = _provider_of(namespace)
    return (names.index(provider) if provider in names else len(names), namespace)


def providers_in_use(ctx: Context, accounts: Mapping[str, str]) -> list[str]:
    """The providers (registry order) whose credentials are set here, or with an account in
    ``accounts`` (a wait namespace is ``<provider>`` or ``<provider>.<kind>``)."""
    named = {_provider_of(namespace) for namespace in accounts}
    return [s.name for s in specs(ctx.settings) if s.name in named or s.section(ctx.settings).configured]


@cache
def get_context() -> Context:
    return Context(get_settings())
