"""How a stage's plain function says what should happen next, other than "done" (returning) and
"failed" (raising a ``ProviderError``). Handled in ``worker.stage.Stage.perform``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from schemas import Output, StageStatus


@dataclass(frozen=True)
class Done:
    """What a stage's plain function may return beyond "done": the job's ``outputs`` (read when the step
    ends the job), and ``also``, runs of *other* jobs that start with this step's end, as (task, job id):
    a batch's end starts the download of each of its jobs. A plain list returned is the outputs."""

    outputs: list[Output] | None = None
    also: tuple[tuple[str, str], ...] = ()
    detail: str | None = None  # what the stage's state says of its end ("skipped: …")
    # What the job cost by the provider's own figures, read at its end; None: its reservation (the
    # estimate) is what it is charged (worker/spend.py).
    cost_usd: float | None = None


class Later(Exception):
    """Run this stage again after ``countdown_s`` with ``args`` (default: the same arguments), through the
    Redis-side schedule. No worker slot or memory is held meanwhile and no retry is spent."""

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
        self.raised_at = time.monotonic()  # the countdown runs from here, not from when it is scheduled
        self.detail = detail
        self.args_ = args
        self.status = status


class Wait(Exception):
    """Park this stage until the provider job ``provider_id`` ends: the account's status sweep (first
    check in ``check_in_s``) or a webhook wakes it, or genq gives up ``deadline_in_s`` from now."""

    def __init__(
        self,
        provider: str,
        account: str,
        provider_id: str,
        *,
        what: str,
        check_in_s: float,
        deadline_in_s: float,
    ) -> None:
        super().__init__(f"waiting for {provider} {what}")
        self.provider = provider
        self.account = account
        self.provider_id = provider_id
        self.what = what
        self.check_in_s = check_in_s
        self.deadline_in_s = deadline_in_s


class Awaiting(Exception):
    """This stage waits for another job to end (a pipeline's step); that job's end pushes the stage's
    next run, which its plain function set up before raising this."""


class Stop(Exception):
    """Nothing more to do for this job (it was cancelled): nothing runs after this stage."""


class JobFailed(Exception):
    """The job failed for good; the record says why. Raised to show FAILURE in Flower."""
