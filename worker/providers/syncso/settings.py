"""Settings of the sync.so section (``GENQ_SYNCSO__...``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from worker.sections import ProviderSettings, RateBudgetSettings, account_label

# sync.so plan concurrency (generations in PENDING or PROCESSING), from sync.so's rate-limit guide.
SYNCSO_PLAN_CONCURRENCY = {"free": 1, "hobbyist": 1, "creator": 3, "growth": 6, "scale": 15}


class SyncSoSettings(ProviderSettings):
    api_key: SecretStr = SecretStr("")
    base_url: str = "https://api.sync.so"
    # Budgets of the account (sync.so rate-limit guide): POST /v2/generate 60/min, every other endpoint
    # 600/min; concurrency by plan unless `concurrency` says otherwise (enterprise: set it).
    plan: Literal["free", "hobbyist", "creator", "growth", "scale", "enterprise"] = "creator"
    create_rate: RateBudgetSettings = RateBudgetSettings(limit=60)
    other_rate: RateBudgetSettings = RateBudgetSettings(limit=600)
    # The longest request target (path and query) a status sweep sends: it sets how many ids one
    # `GET /v2/generations?ids=...` carries (about 195 at 8000).
    max_url_bytes: int = Field(8000, ge=512)
    # The `whsec_...` secret that signs webhook deliveries (dashboard, webhook settings).
    webhook_secret: SecretStr = SecretStr("")
    # Local input files up to this size go with the create call as multipart parts (older docs: 20 MB,
    # 413 beyond); larger ones are uploaded to the media library first and referenced by asset id.
    max_upload_bytes: int = Field(20 * 1024 * 1024, gt=0)
    # POST /v2/assets/upload: 120/min (sync.so rate-limit guide).
    upload_rate: RateBudgetSettings = RateBudgetSettings(limit=120)
    # Batches running at once. sync.so caps concurrent batches per plan without publishing the numbers
    # [INF]; a batch over the cap is refused with a 429 and genq tries again later.
    batch_concurrency: int = Field(1, ge=1)
    # How often a running batch is checked, and how long genq waits for one (sync.so targets 24 h).
    batch_check_interval_s: float = Field(30.0, gt=0)
    batch_max_wait_s: float = Field(48 * 3600.0, gt=0)

    @property
    def effective_concurrency(self) -> int:
        if self.concurrency is not None:
            return self.concurrency
        if self.plan == "enterprise":
            raise ValueError(
                "sync.so plan 'enterprise' has a custom concurrency: set GENQ_SYNCSO__CONCURRENCY"
            )
        return SYNCSO_PLAN_CONCURRENCY[self.plan]

    @property
    def configured(self) -> bool:
        return bool(self.api_key.get_secret_value())

    @property
    def account(self) -> str:
        return account_label(self.api_key.get_secret_value())

    @property
    def plan_name(self) -> str:
        return self.plan
