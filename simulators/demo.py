"""What ``genq demo`` needs of each provider's stand-in: the job kind it runs, the stand-in's settings at
the provider's real limits, the ``GENQ_`` settings that point workers at it, sample job requests, and a
line of its counters. Each provider package has a ``demo.py`` with its ``DEMO``; the registry names it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel


@dataclass(frozen=True)
class Demo:
    kind: str
    config: Callable[[], BaseModel]  # the stand-in's SimConfig section for the demo
    # (simulator base URL) -> the GENQ_<PROVIDER>__... variables of the workers (URL, credentials,
    # webhook secret, budgets matching the stand-in's limits)
    env: Callable[[str], dict[str, str]]
    requests: Callable[[int, Path], list[dict[str, Any]]]  # (count, media dir) -> job requests
    summary: Callable[[dict[str, Any]], str]  # its /_sim/stats section -> one line
