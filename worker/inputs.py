"""Local input files as stages read them: opened once by ``schemas.inputs.open_input`` under the workers'
input roots (``GENQ_INPUT_ROOTS``), a refusal failing the job at once (``genq_input_refused``)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from schemas.inputs import InputRefused, open_input
from worker.providers.errors import BadRequest


def refused(message: str) -> BadRequest:
    """The job's error for a local input it may not read (one line naming the field)."""
    return BadRequest(message, provider="genq", code="genq_input_refused")


def open_local(path: str | Path, roots: Sequence[Path], *, field: str) -> io.BufferedReader:
    """The local input ``path`` opened for reading (``open_input``); read it, never ``path`` again."""
    try:
        return open_input(path, roots, field=field)
    except InputRefused as exc:
        raise refused(str(exc)) from None
