"""Worker settings: environment variables with the ``GENQ_`` prefix and ``__`` for nesting.

``GENQ_REDIS_URL``, ``GENQ_SYNCSO__API_KEY``, ``GENQ_SYNCSO__BASE_URL`` ... Every provider base URL is a
setting, so the same workers talk to the real API or to a simulator. Secrets are ``SecretStr``: they
print as ``**********`` in reprs and logs.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class HttpSettings(BaseModel):
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(30.0, gt=0)


class SyncSoSettings(BaseModel):
    api_key: SecretStr = SecretStr("")
    base_url: str = "https://api.sync.so"
    http: HttpSettings = HttpSettings()
    # A generation that is not terminal after this long fails the job (sync-3 on 2 min input: ~55 min).
    max_wait_s: float = Field(7200.0, gt=0)
    # Status checks start at poll_initial_s and grow by poll_factor up to poll_max_s.
    poll_initial_s: float = Field(5.0, gt=0)
    poll_max_s: float = Field(60.0, gt=0)
    poll_factor: float = Field(1.5, ge=1.0)
    # Direct multipart upload limit for local input files (older docs: 20 MB, 413 beyond).
    max_upload_bytes: int = Field(20 * 1024 * 1024, gt=0)
    max_output_bytes: int = Field(5 * 1024**3, gt=0)


class RetrySettings(BaseModel):
    max_retries: int = Field(8, ge=0)
    backoff_base_s: float = Field(2.0, gt=0)
    backoff_cap_s: float = Field(300.0, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENQ_", env_nested_delimiter="__", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    # Broker defaults to the same Redis as the job store.
    broker_url: str | None = None
    artifact_dir: Path = Path("artifacts")
    # How long an unacknowledged message waits before Redis hands it to another worker. Set once for
    # broker and result backend. Every countdown must stay far below it.
    visibility_timeout_s: int = Field(3600, gt=0)
    retry: RetrySettings = RetrySettings()
    syncso: SyncSoSettings = SyncSoSettings()

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or self.redis_url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment (``get_settings.cache_clear()`` re-reads)."""
    return Settings()
