"""One render (export) of a project: its progress and state as a function of time, fixed at its start.

Nothing runs in the background. At export time the render draws its checkpoints (progress rising in
5-15 % steps, reached at times proportional to the progress, 100 at `started_at + duration`) and its
outcome; every later answer is read off that plan, so transition times are known exactly.
[INF] The vendor documents no failure state (reference 2.6, 2.9): a failed render stops below 100
and from its failure time answers RENDER_FAILED; a stalled one stops below 100 and never ends.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from enum import StrEnum

from simulators.aistudios.validate import RenderOptions

STEP_PERCENT = (5.0, 15.0)
OUTPUT_CHUNK_BYTES = 64 * 1024
# A minimal ISO BMFF `ftyp` box (24 bytes: size, "ftyp", major brand, minor version, two compatible brands).
FTYP_BOX = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isommp42"
# [INF] Reasons put after "Rendering failed: " when a render fails.
FAILURE_REASONS = (
    "avatar synthesis timed out",
    "speech synthesis failed",
    "video encoding failed",
    "render worker was lost",
)


class Outcome(StrEnum):
    EXPORTED = "exported"
    FAILED = "failed"
    STALLED = "stalled"


class RenderState(StrEnum):
    """The project `state` a render gives: `draft` belongs to a project never exported."""

    EXPORTING = "exporting"
    EXPORTED = "exported"
    FAILED = "failed"


@dataclass(frozen=True)
class Step:
    at: float  # unix time the progress reaches `progress`
    progress: float


@dataclass(frozen=True)
class Render:
    task_id: str  # the webhook's and project's `backendTaskId`
    project_id: str
    started_at: float
    options: RenderOptions
    steps: tuple[Step, ...]  # the checkpoints this render reaches, ascending
    outcome: Outcome
    ended_at: float  # when it reached 100 or failed; inf when stalled
    reason: str | None  # failure reason, for FAILED only
    credit: int
    base_url: str  # the export request's base URL (ends in "/"), roots the webhook's download_url

    def progress_at(self, now: float) -> float:
        reached = bisect.bisect_right([step.at for step in self.steps], now)
        return self.steps[reached - 1].progress if reached else 0.0

    def state_at(self, now: float) -> RenderState:
        if now < self.ended_at:
            return RenderState.EXPORTING
        return RenderState.EXPORTED if self.outcome is Outcome.EXPORTED else RenderState.FAILED


def plan_render(
    rng: random.Random, outcome: Outcome, started_at: float, duration_s: float
) -> tuple[tuple[Step, ...], float, str | None]:
    """(reached steps, ended_at, failure reason) of a render; draws the same numbers for every outcome."""
    full: list[Step] = []
    progress = 0.0
    while progress < 100:
        progress = min(100.0, round(progress + rng.uniform(*STEP_PERCENT), 2))
        full.append(Step(started_at + duration_s * progress / 100, progress))
    stop = rng.randrange(1, len(full))  # index of the first step a failed or stalled render never reaches
    reason = rng.choice(FAILURE_REASONS)
    if outcome is Outcome.EXPORTED:
        return tuple(full), full[-1].at, None
    ended_at = full[stop].at if outcome is Outcome.FAILED else math.inf
    return tuple(full[:stop]), ended_at, reason if outcome is Outcome.FAILED else None


def output_url(base_url: str, project_id: str) -> str:
    """The unauthenticated download URL of a project's output; `base_url` ends in "/"."""
    return f"{base_url}_sim/aistudios/outputs/{project_id}.mp4"


def output_blocks(project_id: str, size: int) -> Iterator[bytes]:
    """`size` bytes, a function of the project id (so every project's differ): an `ftyp` box, then
    64 KiB blocks of shake_256(f"{id}:{i}") (the first one under the box)."""
    for index, start in enumerate(range(0, size, OUTPUT_CHUNK_BYTES)):
        length = min(OUTPUT_CHUNK_BYTES, size - start)
        block = hashlib.shake_256(f"{project_id}:{index}".encode()).digest(length)
        if index == 0:
            block = (FTYP_BOX + block[len(FTYP_BOX) :])[:length]
        yield block


async def output_stream(project_id: str, size: int) -> AsyncIterator[bytes]:
    """`output_blocks`, for a streaming response."""
    for block in output_blocks(project_id, size):
        yield block
