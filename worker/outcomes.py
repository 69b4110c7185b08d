"""How a stage's plain function says what should happen next, other than "done" (returning) and
"failed" (raising a ``ProviderError``). Handled in ``worker.stage.Stage.running``."""

from __future__ import annotations

from typing import Any

from schemas import StageStatus


class Later(Exception):
    """Run this stage again after ``countdown_s`` with ``args`` (default: the same arguments). No worker
    slot is held meanwhile and no retry is spent."""

    def __init__(
        self,
        countdown_s: float,
        detail: str,
        *,
        args: tuple[Any, ...] | None = None,
        status: StageStatus = StageStatus.WAITING,
    ) -> None:
        super().__init__(detail)
        self.countdown_s = countdown_s
        self.detail = detail
        self.args_ = args
        self.status = status


class Stop(Exception):
    """Nothing more to do for this job (it was cancelled): end the chain here."""


class JobFailed(Exception):
    """The job failed for good; the record says why. Raised to end the chain and show FAILURE in Flower."""
