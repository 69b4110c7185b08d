"""Settings of the DeepBrain AI Studios v3 section (``GENQ_AISTUDIOS__...``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from worker.sections import ProviderSettings, RateBudgetSettings, account_label

# The service's domains (reference 2.1): the global and the China service are different accounts.
DOMAINS = {"global": "https://app.aistudios.com", "china": "https://app.aistudios.cn"}


class AIStudiosSettings(ProviderSettings):
    """AI Studios documents no request-rate or concurrency limits (reference 2.8): the budgets below are
    genq's own, so that a burst of jobs does not queue hundreds of renders at once."""

    app_id: SecretStr = SecretStr("")
    user_key: SecretStr = SecretStr("")
    domain: Literal["global", "china"] = "global"
    # Overrides the domain's URL (a simulator, or the sample code's https://app.deepbrain.io).
    base_url: str | None = None
    workspace_id: str | None = None
    # Renders in flight at once for the account.
    concurrency: int | None = Field(4, gt=0)
    # Every API call but the token request spends this budget (progress checks included).
    rate: RateBudgetSettings = RateBudgetSettings(limit=120)
    # Renders take 1-10 minutes (reference 2.6); official samples poll every 3 s to 60 s.
    check_interval_s: float = Field(5.0, gt=0)
    max_wait_s: float = Field(3600.0, gt=0)
    # A render whose progress has not moved for this long fails the job.
    stall_s: float = Field(900.0, gt=0)
    # Tokens last 24 h from issue; genq fetches a new one this long before the old one expires.
    token_ttl_s: float = Field(86400.0, gt=0)
    token_refresh_before_s: float = Field(3600.0, ge=0)
    # Signs the per-job token in the webhook URL genq gives each render (AI Studios signs nothing).
    # Unset: no webhook URL is sent and the sweep alone sees renders end.
    webhook_secret: SecretStr = SecretStr("")

    @property
    def url(self) -> str:
        return (self.base_url or DOMAINS[self.domain]).rstrip("/")

    @property
    def configured(self) -> bool:
        return bool(self.app_id.get_secret_value() and self.user_key.get_secret_value())

    @property
    def account(self) -> str:
        return account_label(f"{self.url} {self.app_id.get_secret_value()}")
