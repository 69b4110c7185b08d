"""Worker settings: environment variables with the ``GENQ_`` prefix and ``__`` for nesting.

``GENQ_REDIS_URL``, ``GENQ_SYNCSO__API_KEY``, ``GENQ_SYNCSO__BASE_URL`` ... Every provider base URL is a
setting, so the same workers talk to the real API or to a simulator. Secrets are ``SecretStr``: they
print as ``**********`` in reprs and logs.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class HttpSettings(BaseModel):
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(30.0, gt=0)


class RateBudgetSettings(BaseModel):
    """At most ``limit`` calls in any ``period_s`` window. ``guard_s`` widens the window genq plans for,
    so that network jitter between genq and the provider never puts limit + 1 calls into one of the
    provider's windows (0.25 s of 60 s costs 0.4% of the rate)."""

    limit: int = Field(gt=0)
    period_s: float = Field(60.0, gt=0)
    guard_s: float = Field(0.25, ge=0)


# sync.so plan concurrency (generations in PENDING or PROCESSING), from sync.so's rate-limit guide.
SYNCSO_PLAN_CONCURRENCY = {"free": 1, "hobbyist": 1, "creator": 3, "growth": 6, "scale": 15}


class SyncSoSettings(BaseModel):
    api_key: SecretStr = SecretStr("")
    base_url: str = "https://api.sync.so"
    http: HttpSettings = HttpSettings()
    # Budgets of the account (sync.so rate-limit guide): POST /v2/generate 60/min, every other endpoint
    # 600/min; concurrency by plan unless `concurrency` says otherwise (enterprise: set it).
    plan: Literal["free", "hobbyist", "creator", "growth", "scale", "enterprise"] = "creator"
    concurrency: int | None = Field(None, gt=0)
    create_rate: RateBudgetSettings = RateBudgetSettings(limit=60)
    other_rate: RateBudgetSettings = RateBudgetSettings(limit=600)
    # A generation that is not terminal after this long fails the job (sync-3 on 2 min input: ~55 min).
    max_wait_s: float = Field(7200.0, gt=0)
    # A parked generation is checked this often by the account's status sweep (and first this long after
    # create); webhooks, when configured, end the wait sooner.
    check_interval_s: float = Field(10.0, gt=0)
    # The longest request target (path and query) a status sweep sends: it sets how many ids one
    # `GET /v2/generations?ids=...` carries (about 195 at 8000).
    max_url_bytes: int = Field(8000, ge=512)
    # The `whsec_...` secret that signs webhook deliveries (dashboard, webhook settings).
    webhook_secret: SecretStr = SecretStr("")
    # Direct multipart upload limit for local input files (older docs: 20 MB, 413 beyond).
    max_upload_bytes: int = Field(20 * 1024 * 1024, gt=0)
    max_output_bytes: int = Field(5 * 1024**3, gt=0)

    @property
    def effective_concurrency(self) -> int:
        if self.concurrency is not None:
            return self.concurrency
        if self.plan == "enterprise":
            raise ValueError(
                "sync.so plan 'enterprise' has a custom concurrency: set GENQ_SYNCSO__CONCURRENCY"
            )
        return SYNCSO_PLAN_CONCURRENCY[self.plan]


class AimiSettings(BaseModel):
    """Aimi Sync: budgets declared now; the provider's stages arrive in a later release."""

    api_key: SecretStr = SecretStr("")
    base_url: str = "https://api.aimi.fm"
    # Aimi FAQ: at most 10 executions at a time per user; status no more often than every 5 s per
    # execution, or a cooldown may be triggered.
    executions: int = Field(10, gt=0)
    status_interval_s: float = Field(5.0, gt=0)


class AIStudiosSettings(BaseModel):
    """DeepBrain AI Studios v3: no limits are documented, so none apply unless configured."""

    app_id: SecretStr = SecretStr("")
    user_key: SecretStr = SecretStr("")
    base_url: str = "https://app.aistudios.com"
    concurrency: int | None = Field(None, gt=0)
    rate: RateBudgetSettings | None = None


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


class Settings(BaseSettings):
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
    syncso: SyncSoSettings = SyncSoSettings()
    aimi: AimiSettings = AimiSettings()
    aistudios: AIStudiosSettings = AIStudiosSettings()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment (``get_settings.cache_clear()`` re-reads)."""
    return Settings()
