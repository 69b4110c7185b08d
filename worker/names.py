"""Names genq did not choose, made safe as file (and object) names.

A provider's ids and names (a generation id, a project id) are the provider's text: one of ``../../x``
would write an output outside the artifact directory. ``safe_name`` is the one way such text becomes a
path component, and ``output_path`` the one way an output's path is made from it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Final

MAX_NAME_CHARS: Final = 200  # well inside every file system's 255 bytes, with room for a suffix
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]")
_LEADING_DOTS: Final = re.compile(r"^\.+")


def safe_name(text: str) -> str:
    """``text`` as one file name component.

    Unchanged when it is 1 to 200 of ``A-Z a-z 0-9 . _ -`` not starting with a dot (every id the
    providers document). Otherwise every other character and each leading dot becomes ``_``, it is cut
    to fit, and 12 hex characters of its SHA-256 are added, so that two different texts never share a
    file. The result is never empty, ``.`` or ``..``, and holds no separator."""
    if 0 < len(text) <= MAX_NAME_CHARS and not _UNSAFE.search(text) and not text.startswith("."):
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    cleaned = _LEADING_DOTS.sub(lambda dots: "_" * len(dots[0]), _UNSAFE.sub("_", text))
    return f"{cleaned[: MAX_NAME_CHARS - 13]}_{digest}" if cleaned else digest


def output_path(artifact_dir: Path, job_id: str, stem: str, suffix: str) -> Path:
    """Where an output is written: ``<artifact dir>/<job id>/<stem><suffix>``, the job id and the stem
    made safe (``suffix`` is genq's own: ``.mp4``, ``.mov``, ``.zip``). Its directory is created."""
    directory = artifact_dir / safe_name(job_id)
    directory.mkdir(parents=True, exist_ok=True)
    return directory / (safe_name(stem) + suffix)
