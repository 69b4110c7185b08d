"""Configuration of the sync.so simulator (the `syncso` section of SimConfig) and its `genq sim` flags."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from simulators.spec import Option, parse_bool

Plan = Literal["free", "hobbyist", "creator", "growth", "scale"]

# Concurrent generations (PENDING + PROCESSING) per plan, from the sync.so rate-limits guide.
PLAN_CONCURRENCY: dict[str, int] = {"free": 1, "hobbyist": 1, "creator": 3, "growth": 6, "scale": 15}
# [INF] USD per second of media by model, for the cost estimates (sync.so publishes per-minute prices).
PRICE_PER_S: dict[str, float] = {
    "lipsync-1.9.0-beta": 0.025,
    "lipsync-2": 0.05,
    "lipsync-2-pro": 0.083,
    "react-1": 0.1,
    "sync-3": 0.133,
}
GIB = 1024**3
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")]


def _texts(raw: str) -> tuple[str, ...]:
    """argparse converter: comma-separated values, blanks dropped."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


class SyncSoSimConfig(BaseModel):
    """Behaviour of the simulated sync.so v2 API. Durations are seconds, shares are fractions 0..1."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: str = Field("sim-syncso-key", min_length=1)
    pending_s: float = Field(1.0, ge=0)
    processing_s: float = Field(3.0, ge=0)
    duration_jitter: float = Field(0.2, ge=0, lt=1)
    fail_share: float = Field(0.0, ge=0, le=1)
    reject_share: float = Field(0.0, ge=0, le=1)
    # A generation with an input matching one of these ends FAILED (generation_pipeline_failed), until
    # they are set back to []: a substring of the input's URL, asset name or file name; its SHA-256.
    fail_input_contains: tuple[Annotated[str, Field(min_length=1)], ...] = ()
    fail_input_sha256: tuple[Sha256Hex, ...] = ()
    # [INF] Fetch each URL input (GET, at create) to record its SHA-256; one that cannot be fetched makes
    # its generation REJECTED with generation_input_{video,audio}_inaccessible. Off: only the URL is kept.
    fetch_input_urls: bool = False
    input_fetch_timeout_s: float = Field(30.0, gt=0)
    create_rate_limit: int = Field(60, ge=1)
    other_rate_limit: int = Field(600, ge=1)
    rate_window_s: float = Field(60.0, gt=0)
    plan: Plan = "creator"
    concurrency: int | None = Field(None, ge=1)
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1)
    output_bytes: int = Field(262144, ge=0)
    output_duration_s: float = Field(10.0, ge=0)
    output_url_ttl_s: float = Field(3600.0, gt=0)
    idempotency_retention_s: float = Field(86400.0, ge=0)
    seed: int | None = None
    send_retry_after_on_rate_limit: bool = True
    # [INF] Real servers cap the request line around 8 KB; longer request targets get 414.
    max_url_bytes: int = Field(8192, ge=256)
    # Webhooks (reference 3.11): one signed POST per generation with a `webhookUrl`, never retried.
    webhook_secret: str = Field("whsec_sim_0123456789abcdef0123456789", min_length=1)
    webhook_delay_s: float = Field(0.0, ge=0)  # after the generation becomes terminal
    webhook_loss_share: float = Field(0.0, ge=0, le=1)  # deliveries never sent
    webhook_duplicate_share: float = Field(0.0, ge=0, le=1)  # deliveries sent twice, byte for byte
    webhook_timeout_s: float = Field(5.0, gt=0)
    # Cost estimates and assets (reference 3.2, 3.9). [INF] Every medium lasts media_duration_s.
    media_duration_s: float = Field(10.0, gt=0)
    price_per_s: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=lambda: dict(PRICE_PER_S))
    upload_rate_limit: int = Field(120, ge=1)  # POST /v2/assets/upload per rate window
    asset_max_bytes: int = Field(5 * GIB, ge=1)  # the plan's file-size limit
    # Batches (reference 3.8); only the scale plan may create them.
    batch_concurrency: int = Field(1, ge=1)  # [INF] batches PENDING..PROCESSING at once
    batch_pending_s: float = Field(1.0, ge=0)  # before the batch's generations are created
    batch_max_records: int = Field(500, ge=1)
    batch_max_file_bytes: int = Field(5 * 1024 * 1024, ge=1)
    batch_response_delay_s: float = Field(0.0, ge=0)  # a test's hook: the batch exists, the answer waits

    @model_validator(mode="after")
    def _shares_fit(self) -> Self:
        if self.fail_share + self.reject_share > 1:
            raise ValueError("fail_share + reject_share must not exceed 1")
        return self

    @property
    def effective_concurrency(self) -> int:
        """The explicit `concurrency`, else the plan's limit."""
        return self.concurrency if self.concurrency is not None else PLAN_CONCURRENCY[self.plan]


# `genq sim --syncso-<flag>`; a flag left out keeps the field's default.
OPTIONS: tuple[Option, ...] = (
    Option("api-key", "api_key", str, "x-api-key the simulator accepts"),
    Option("pending-s", "pending_s", float, "seconds a generation stays PENDING"),
    Option("processing-s", "processing_s", float, "seconds a generation stays PROCESSING"),
    Option("duration-jitter", "duration_jitter", float, "relative jitter of both durations (0..1)"),
    Option("fail-share", "fail_share", float, "share of generations that end FAILED"),
    Option("reject-share", "reject_share", float, "share of generations that end REJECTED"),
    Option(
        "fail-input-contains",
        "fail_input_contains",
        _texts,
        "comma-separated substrings: generations with an input URL, asset or file name holding one fail",
    ),
    Option(
        "fail-input-sha256",
        "fail_input_sha256",
        _texts,
        "comma-separated SHA-256 hex digests: generations with an input of those bytes fail",
    ),
    Option("fetch-input-urls", "fetch_input_urls", parse_bool, "fetch URL inputs to record their SHA-256"),
    Option("create-rate-limit", "create_rate_limit", int, "POST /v2/generate per rate window"),
    Option("other-rate-limit", "other_rate_limit", int, "other requests per rate window"),
    Option("rate-window-s", "rate_window_s", float, "rate-limit window in seconds"),
    Option("plan", "plan", str, "plan: free, hobbyist, creator, growth or scale"),
    Option("concurrency", "concurrency", int, "generations in flight (None = the plan's)"),
    Option("max-upload-bytes", "max_upload_bytes", int, "largest multipart upload"),
    Option("output-bytes", "output_bytes", int, "size of each output file"),
    Option("seed", "seed", int, "random seed (ids, durations, outcomes)"),
    Option("max-url-bytes", "max_url_bytes", int, "longest request target before 414"),
    Option("webhook-secret", "webhook_secret", str, "HMAC secret of webhook signatures"),
    Option("webhook-delay-s", "webhook_delay_s", float, "webhook delay after the terminal status"),
    Option("webhook-loss-share", "webhook_loss_share", float, "share of webhooks never sent"),
    Option("webhook-duplicate-share", "webhook_duplicate_share", float, "share of webhooks sent twice"),
    Option(
        "media-duration-s", "media_duration_s", float, "duration of every input medium (estimates, assets)"
    ),
    Option("batch-concurrency", "batch_concurrency", int, "batches in progress at once"),
    Option("batch-pending-s", "batch_pending_s", float, "seconds a batch stays PENDING"),
    Option("batch-response-delay-s", "batch_response_delay_s", float, "delay of the batch create answer"),
    Option("upload-rate-limit", "upload_rate_limit", int, "POST /v2/assets/upload per rate window"),
)
