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
    # Direct multipart upload limit for local input files (older docs: 20 MB, 413 beyond).
    max_upload_bytes: int = Field(20 * 1024 * 1024, gt=0)

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
