"""Settings of the Aimi Sync section (``GENQ_AIMI__...``)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from worker.sections import ProviderSettings, RateBudgetSettings, account_label


class AimiSettings(ProviderSettings):
    """Aimi documents a concurrency limit and a polling floor but no request rate (reference 1.9): ``rate``
    is genq's own budget, so that a burst of jobs cannot trigger the cooldown on other calls either."""

    # A dashboard token (dashboard.aimi.fm, "Sync API" tab), sent as a Bearer token. It expires after
    # 30 days: an expired one shows up as AuthFailed.
    api_key: SecretStr = SecretStr("")
    # Surface A of the reference (1.1): flat sync_* paths on this host.
    base_url: str = "https://api.sync.aimi.fm"
    # Aimi FAQ: at most 10 executions at a time per user.
    concurrency: int | None = Field(10, gt=0)
    # Aimi FAQ: poll one execution no more often than every 5 s, or a cooldown may start.
    status_interval_s: float = Field(5.0, gt=0)
    check_interval_s: float = Field(5.0, gt=0)
    # The pipeline takes about the video's length plus a minute (reference 1.9).
    max_wait_s: float = Field(3600.0, gt=0)
    # Aimi: chunks of at most 30 MB. Decimal megabytes, the smaller reading, so that no chunk is refused
    # whichever Aimi means.
    max_chunk_bytes: int = Field(30_000_000, gt=0)
    # The largest source video uploaded (a URL's declared size, a local file's size), refused before any
    # chunk is cut. Aimi documents no limit for a whole video: genq's own, at most 179 chunks of 30 MB.
    max_source_bytes: int = Field(5 * 1024**3, gt=0)
    # Every API call spends this budget, status polls included.
    rate: RateBudgetSettings = RateBudgetSettings(limit=600)

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/")

    @property
    def configured(self) -> bool:
        return bool(self.api_key.get_secret_value())

    @property
    def account(self) -> str:
        return account_label(f"{self.url} {self.api_key.get_secret_value()}")
