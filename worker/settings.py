"""Worker settings: environment variables with the ``GENQ_`` prefix and ``__`` for nesting.

``GENQ_REDIS_URL``, ``GENQ_RETRY__MAX_RETRIES`` ... and one section per provider of the registry,
named after it: ``GENQ_SYNCSO__API_KEY``, ``GENQ_AISTUDIOS__BASE_URL`` (each provider's section is its
own module, ``worker/providers/<name>/settings.py``). Every provider base URL is a setting, so the same
workers talk to the real API or to a simulator. Secrets are ``SecretStr``: they print as ``**********``
in reprs and logs.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.sections import ProviderSettings


class LimitsSettings(BaseModel):
    """How genq spends provider budgets across every worker (see worker/limits)."""

    enabled: bool = True
    # A lease on a concurrency slot lapses this long after its last renewal (a dead worker's slot comes
    # back then). Renewed at every status check, so it must exceed the longest check interval.
    lease_ttl_s: float = Field(180.0, gt=0)
    # Farthest ahead a rate token is reserved; a stage further back re-queues and asks again then.
    horizon_s: float = Field(30.0, gt=0)
    # A 429 without Retry-After pauses its budget this long.
    pause_s: float = Field(5.0, gt=0)
    # How often each worker reclaims lapsed leases and wakes parked stages.
    sweep_interval_s: float = Field(1.0, gt=0)
    # Celery's own per-worker `rate_limit` per task name (e.g. {"genq.syncso.create": "1/s"}); only for
    # comparison with genq's global budgets (bench/ratelimit.py): it does not hold across workers.
    celery_rate_limits: dict[str, str] = Field(default_factory=dict)


class WaitSettings(BaseModel):
    """Parked waits and the Redis-side schedule (worker/waits.py, worker/sweep.py, worker/schedule.py)."""

    # Only the holder of an account's sweep lease sends its status requests; when the holder dies,
    # another worker takes over within this long.
    sweep_lease_s: float = Field(5.0, gt=0)
    # A mover sleeps at most this long when no announcement of a newly scheduled entry wakes it.
    mover_max_sleep_s: float = Field(0.1, gt=0)


class WebhookSettings(BaseModel):
    """Where providers deliver webhooks: the public URL of `genq webhooks`. Unset: genq polls only."""

    base_url: str | None = None
    # Deliveries signed longer ago than this are refused (replays).
    tolerance_s: float = Field(300.0, gt=0)

    def url_for(self, provider: str) -> str | None:
        return None if not self.base_url else f"{self.base_url.rstrip('/')}/{provider}"


class RetrySettings(BaseModel):
    max_retries: int = Field(8, ge=0)
    backoff_base_s: float = Field(2.0, gt=0)
    backoff_cap_s: float = Field(300.0, gt=0)


class CoreSettings(BaseSettings):
    """The settings of genq itself; ``Settings`` adds a section per provider."""

    model_config = SettingsConfigDict(env_prefix="GENQ_", env_nested_delimiter="__", extra="ignore")

    # One Redis is the broker, the result backend, the job store and the budgets: a submit writes a job's
    # record and its first message in one transaction, and the limiter pushes a woken stage's message in
    # the same script that grants its slot, so they cannot live on different servers.
    redis_url: str = "redis://127.0.0.1:6379/0"
    artifact_dir: Path = Path("artifacts")
    # How long an unacknowledged message waits before Redis hands it to another worker. Set once for
    # broker and result backend. Delays do not depend on it: they wait in the Redis-side schedule.
    visibility_timeout_s: int = Field(3600, gt=0)
    retry: RetrySettings = RetrySettings()
    limits: LimitsSettings = LimitsSettings()
    waits: WaitSettings = WaitSettings()
    webhooks: WebhookSettings = WebhookSettings()

    def provider(self, name: str) -> ProviderSettings:
        """The section of the provider ``name``."""
        section = getattr(self, name)
        assert isinstance(section, ProviderSettings)
        return section


def _with_provider_sections() -> type[CoreSettings]:
    from worker.providers.registry import PROVIDERS  # noqa: PLC0415 (the registry imports the sections)

    sections: dict[str, Any] = {
        spec.name: (spec.settings, Field(default_factory=spec.settings)) for spec in PROVIDERS.values()
    }
    return create_model("Settings", __base__=CoreSettings, __module__=__name__, **sections)


if TYPE_CHECKING:
    Settings = CoreSettings
else:
    Settings = _with_provider_sections()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment (``get_settings.cache_clear()`` re-reads)."""
    return Settings()
