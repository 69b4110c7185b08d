"""Caps: how much one submit may ask of genq (``GENQ_CAPS__…``), read by producers and workers alike.

A backend that passes user JSON through must not let one caller fill Redis or a worker's disk, so the
producer refuses, before anything is stored, a request whose JSON or whose lists are larger than these
(one ``<field>: <problem>`` line each, naming the setting), and a call with too many jobs or bytes in
all. The workers read the same section: a job's outputs together may not exceed ``max_job_output_bytes``.

The producer reads ``GENQ_CAPS__<NAME>`` (or the section whole as JSON in ``GENQ_CAPS``) from the
environment itself, as it reads ``GENQ_INPUT_ROOTS``: a backend imports no worker settings.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

ENV = "GENQ_CAPS"


class Caps(BaseModel):
    """Each cap is checked at submit unless it says otherwise."""

    # Bytes of one request's JSON as stored (the job record's request).
    max_request_bytes: int = Field(1_000_000, gt=0)
    # Jobs in one submit_many call (or one `genq submit` file); a submit is one job.
    max_jobs_per_submit: int = Field(10_000, gt=0)
    # Bytes of every request's JSON of one submit_many call together (and of a `genq submit` file).
    max_submit_bytes: int = Field(100_000_000, gt=0)
    # Jobs of one sync.so batch (submit_batch); sync.so takes 20 to 500 whatever this says.
    max_batch_jobs: int = Field(500, gt=0)
    # avatar: scenes of a project, clips of one scene, bytes of the project's dictionary as JSON.
    max_scenes: int = Field(100, gt=0)
    max_clips: int = Field(50, gt=0)
    max_dictionary_bytes: int = Field(100_000, gt=0)
    # lipsync: bounding boxes (one per frame: 30,000 is about 17 minutes at 30 fps; longer videos give
    # bounding_boxes_url), and segments (at most 256 whatever this says).
    max_bounding_boxes: int = Field(30_000, gt=0)
    max_segments: int = Field(256, gt=0)
    # pipeline: its steps, and the runs of them in all (a step with for_each runs once per item, and so
    # does each step after it in its fan): each run is a job of its own.
    max_pipeline_steps: int = Field(20, gt=0)
    max_pipeline_jobs: int = Field(200, gt=0)
    # Checked by the workers: the bytes of every output of one job together (all of a music job's
    # executions); a download that would pass it fails the job. Each download is also capped by its
    # provider's GENQ_<PROVIDER>__MAX_OUTPUT_BYTES.
    max_job_output_bytes: int = Field(10 * 1024**3, gt=0)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Caps:
        """The caps the environment sets (``GENQ_CAPS`` as JSON, then ``GENQ_CAPS__<NAME>`` over it, names
        in any case, as the workers' settings read them); the defaults for the rest."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        prefix = ENV + "__"
        for name, value in environ.items():
            upper = name.upper()
            if upper == ENV:
                whole = json.loads(value)
                if not isinstance(whole, dict):
                    raise ValueError(f"{ENV} must be a JSON object of caps")
                values = {**whole, **values}
            elif upper.startswith(prefix):
                values[upper.removeprefix(prefix).lower()] = value
        return cls.model_validate(values)


def setting(name: str) -> str:
    """The environment variable of the cap ``name``."""
    return f"{ENV}__{name.upper()}"


def over(where: str, count: int, what: str, cap: int, name: str) -> str | None:
    """``<where>: <count> <what>; at most <cap> (GENQ_CAPS__<NAME>)`` when ``count`` is over ``cap``."""
    if count <= cap:
        return None
    return f"{where}: {count} {what}; at most {cap} ({setting(name)})"


def json_bytes(text: str) -> int:
    """Bytes of ``text`` in UTF-8, without encoding it when every character would fit anyway."""
    return len(text) if text.isascii() else len(text.encode())
