"""Configuration of the AI Studios v3 simulator (the `aistudios` section of SimConfig) and its flags."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from simulators.spec import Option, parse_bool


class AIStudiosSimConfig(BaseModel):
    """Behaviour of the simulated DeepBrain AI Studios v3 API. Durations are seconds, shares 0..1.

    [INF] The real renders take 1-10 minutes (reference 2.6); the simulator defaults to a few seconds.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    app_id: str = Field("sim-aistudios-app", min_length=1)
    user_key: str = Field("sim-aistudios-key", min_length=1)
    token_ttl_s: float = Field(86400.0, gt=0)  # reference 2.2: a token lasts 24 h from issue
    render_s: float = Field(3.0, ge=0)
    render_jitter: float = Field(0.2, ge=0, lt=1)
    fail_share: float = Field(0.0, ge=0, le=1)  # renders that stop below 100 and report RENDER_FAILED
    stall_share: float = Field(0.0, ge=0, le=1)  # renders whose progress stops forever
    output_bytes: int = Field(262144, ge=0)
    seed: int | None = None
    # [INF] No concurrency limit is documented; None leaves renders unlimited.
    max_renders: int | None = Field(None, ge=1)
    # Webhooks (reference 2.7): one unsigned POST at 100 to the render's `webhookUrl`, never retried.
    webhook_progress: bool = False  # [INF] also POST each intermediate progress step
    webhook_delay_s: float = Field(0.0, ge=0)
    webhook_loss_share: float = Field(0.0, ge=0, le=1)  # deliveries never sent
    webhook_timeout_s: float = Field(5.0, gt=0)
    # Export answers this late (the render has started at once): a caller can die in between.
    export_response_delay_s: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _shares_fit(self) -> Self:
        if self.fail_share + self.stall_share > 1:
            raise ValueError("fail_share + stall_share must not exceed 1")
        return self


# `genq sim --aistudios-<flag>`; a flag left out keeps the field's default.
OPTIONS: tuple[Option, ...] = (
    Option("app-id", "app_id", str, "appId the token route accepts"),
    Option("user-key", "user_key", str, "userKey the token route accepts"),
    Option("token-ttl-s", "token_ttl_s", float, "token lifetime in seconds"),
    Option("render-s", "render_s", float, "seconds a render takes from 0 to 100 %"),
    Option("render-jitter", "render_jitter", float, "relative jitter of the render time (0..1)"),
    Option("fail-share", "fail_share", float, "share of renders that fail (RENDER_FAILED)"),
    Option("stall-share", "stall_share", float, "share of renders whose progress stops forever"),
    Option("output-bytes", "output_bytes", int, "size of each output file"),
    Option("seed", "seed", int, "random seed (ids, durations, outcomes)"),
    Option("max-renders", "max_renders", int, "renders in flight before 429 (None = unlimited)"),
    Option("webhook-progress", "webhook_progress", parse_bool, "also POST intermediate progress"),
    Option("webhook-delay-s", "webhook_delay_s", float, "webhook delay after the render reaches 100"),
    Option("webhook-loss-share", "webhook_loss_share", float, "share of webhooks never sent"),
)
