"""Configuration of the Aimi Sync simulator (the `aimi` section of SimConfig) and its `genq sim` flags."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from simulators.spec import Option

MB = 1024 * 1024


class AimiSimConfig(BaseModel):
    """Behaviour of the simulated Aimi Sync API. Durations are seconds, shares 0..1.

    Documented limits (reference 1.9): chunks of at most 30 MB, at most 10 executions at a time per
    user, status polls no more often than every 5 s per execution. [INF] The real pipeline takes about
    the video's length plus a minute; the simulator defaults to a couple of seconds.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: str = Field("sim-aimi-key", min_length=1)
    max_chunk_bytes: int = Field(30 * MB, ge=1)
    chunk_delay_s: float = Field(0.0, ge=0)  # each chunk's answer is held this long after its body is read
    chunk_delay_from: int = Field(0, ge=0)  # ... each chunk from this index on
    analysis_s: float = Field(0.2, ge=0)  # [INF] both analyses answer synchronously after this long
    bytes_per_second: int = Field(1_000_000, ge=1)  # [INF] video duration estimate = size / this
    max_executions: int = Field(10, ge=1)  # pending or processing at once, per api key
    execution_s: float = Field(2.0, ge=0)
    execution_per_video_s: float = Field(0.0, ge=0)  # extra execution seconds per second of video
    fail_share: float = Field(0.0, ge=0, le=1)  # executions that end in `error`
    seed: int | None = None
    status_cooldown_s: float = Field(5.0, ge=0)  # a faster poll of one execution gets 429 "cooldown"
    output_bytes: int = Field(262144, ge=64)  # size of each rendered mp4 (room for its ftyp box)


# `genq sim --aimi-<flag>`; a flag left out keeps the field's default.
OPTIONS: tuple[Option, ...] = (
    Option("api-key", "api_key", str, "Bearer token the API accepts"),
    Option("max-chunk-bytes", "max_chunk_bytes", int, "largest upload chunk (413 above)"),
    Option("chunk-delay-s", "chunk_delay_s", float, "seconds each chunk's answer is held"),
    Option("chunk-delay-from", "chunk_delay_from", int, "first chunk index whose answer is held"),
    Option("analysis-s", "analysis_s", float, "seconds a video or audio analysis takes"),
    Option("bytes-per-second", "bytes_per_second", int, "video bytes per second of duration"),
    Option("max-executions", "max_executions", int, "executions running at once before 429"),
    Option("execution-s", "execution_s", float, "base seconds an execution takes"),
    Option("execution-per-video-s", "execution_per_video_s", float, "extra seconds per video second"),
    Option("fail-share", "fail_share", float, "share of executions that end in error"),
    Option("seed", "seed", int, "random seed (ids, outcomes)"),
    Option("status-cooldown-s", "status_cooldown_s", float, "least seconds between polls of one execid"),
    Option("output-bytes", "output_bytes", int, "size of each rendered mp4"),
)
