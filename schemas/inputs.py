"""Input roots: the only directories a job may name local files in (``GENQ_INPUT_ROOTS``).

A backend that passes user JSON through must not hand any readable file on its workers to a provider,
so a local input is accepted only when its real path (symlinks resolved) lies under one of the roots.
With no roots, every local input is refused. The producer checks at submit and every worker stage again
before it runs (a symlink may have changed in between).

A check by name is not enough where a file is read: a symlink swapped between the check and the open
would make the open follow it anywhere. So every local input is read through ``open_input``, which opens
the file once and checks the descriptor it got (the real path the kernel opened, and that it is a
regular file); that descriptor is what is read.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

ENV = "GENQ_INPUT_ROOTS"
# No controlling terminal, not inherited by children, and no waiting on a FIFO's writer: the file type
# is checked only after the open returns.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
_PROC_FD = Path("/proc/self/fd")


class InputRefused(ValueError):
    """A local input that may not be read. Its message is one ``<field>: <problem>`` line."""


def parse_roots(text: str) -> tuple[Path, ...]:
    """``/data/a:/data/b`` (separated like ``PATH``; commas work too) as absolute paths."""
    parts = (p.strip() for chunk in text.split(",") for p in chunk.split(os.pathsep))
    return tuple(Path(p) for p in parts if p)


def roots_from_env() -> tuple[Path, ...]:
    return parse_roots(os.environ.get(ENV, ""))


def _no_roots(field: str) -> str:
    return f"{field}: local files are refused: no input roots are configured ({ENV})"


def _outside(field: str, path: str, roots: Sequence[Path]) -> str:
    return f"{field}: {path} is outside the input roots ({', '.join(str(root) for root in roots)})"


def _under(real: str, roots: Sequence[Path]) -> bool:
    real_roots = (os.path.realpath(root) for root in roots)
    return any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in real_roots)


def outside_roots(files: Mapping[str, str], roots: Sequence[Path]) -> list[str]:
    """One ``<field>: <problem>`` line per local file not under a root (after resolving symlinks)."""
    if not files:
        return []
    if not roots:
        return [_no_roots(field) for field in files]
    return [
        _outside(field, path, roots)
        for field, path in files.items()
        if not _under(os.path.realpath(path), roots)
    ]


def open_input(path: str | Path, roots: Sequence[Path], *, field: str = "input") -> io.BufferedReader:
    """The local input ``path``, opened for reading once, if its real path is under one of ``roots`` and
    what was opened is a regular file under one of them; else ``InputRefused`` naming ``field``. Read the
    returned file (its ``name`` is ``path``), never ``path`` again: whatever a symlink on the way pointed
    to when it was opened is what the checks saw, so swapping a link after them changes nothing."""
    name = str(path)
    if not roots:
        raise InputRefused(_no_roots(field))
    if not _under(os.path.realpath(name), roots):  # nothing outside the roots is even opened
        raise InputRefused(_outside(field, name, roots))
    try:
        fd = os.open(name, _OPEN_FLAGS)
    except FileNotFoundError:
        raise InputRefused(f"{field}: no such file: {name}") from None
    except OSError as exc:
        raise InputRefused(f"{field}: cannot read {name}: {exc.strerror}") from None
    try:
        problem = _descriptor_problem(fd, name, roots, field)
        if problem:
            raise InputRefused(problem)
        os.set_blocking(fd, True)
        raw = io.FileIO(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise
    raw.name = name  # as open() names a file: multipart parts and messages use it
    return io.BufferedReader(raw)


def _descriptor_problem(fd: int, name: str, roots: Sequence[Path], field: str) -> str | None:
    """What is wrong with the file open on ``fd`` (asked for as ``name``), if anything."""
    opened = os.fstat(fd)
    if not stat.S_ISREG(opened.st_mode):
        return f"{field}: {name} is not a regular file"
    real = _real_path(fd, name, opened)
    if real is None or not _under(real, roots):
        return _outside(field, name, roots)
    return None


def _real_path(fd: int, name: str, opened: os.stat_result) -> str | None:
    """The real path of the file open on ``fd``: as the kernel names it (``/proc/self/fd``), or else the
    real path of ``name`` now, if that is still the very file opened (same device and inode); None when
    it is not (a link was swapped after the open)."""
    try:
        return os.readlink(_PROC_FD / str(fd))
    except OSError:
        pass
    real = os.path.realpath(name)
    try:
        now = os.stat(real)
    except OSError:
        return None
    return real if (now.st_dev, now.st_ino) == (opened.st_dev, opened.st_ino) else None
