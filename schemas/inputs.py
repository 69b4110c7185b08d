"""Input roots: the only directories a job may name local files in (``GENQ_INPUT_ROOTS``).

A backend that passes user JSON through must not hand any readable file on its workers to a provider,
so a local input is accepted only when its real path (symlinks resolved) lies under one of the roots.
With no roots, every local input is refused. The producer checks at submit and every worker stage again
before it runs (a symlink may have changed in between).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

ENV = "GENQ_INPUT_ROOTS"


def parse_roots(text: str) -> tuple[Path, ...]:
    """``/data/a:/data/b`` (separated like ``PATH``; commas work too) as absolute paths."""
    parts = (p.strip() for chunk in text.split(",") for p in chunk.split(os.pathsep))
    return tuple(Path(p) for p in parts if p)


def roots_from_env() -> tuple[Path, ...]:
    return parse_roots(os.environ.get(ENV, ""))


def outside_roots(files: Mapping[str, str], roots: Sequence[Path]) -> list[str]:
    """One ``<field>: <problem>`` line per local file not under a root (after resolving symlinks)."""
    if not files:
        return []
    if not roots:
        return [f"{field}: local files are refused: no input roots are configured ({ENV})" for field in files]
    real_roots = [os.path.realpath(root) for root in roots]
    problems = []
    for field, path in files.items():
        real = os.path.realpath(path)
        if not any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in real_roots):
            named = ", ".join(str(root) for root in roots)
            problems.append(f"{field}: {path} is outside the input roots ({named})")
    return problems
