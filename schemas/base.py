"""What every job request shares: strict frozen models, media sources, the tenant, and the local files
a request reads. Each job kind's request model lives in its own module (``schemas/<kind>.py``) and is
named in ``schemas/requests.py``."""

from __future__ import annotations

import re
from typing import Annotated, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from schemas.caps import Caps

_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)


# A step's output in an S3 output store, as a pipeline hands it to the next step's job: ``output:`` and
# its URL (``output:s3://bucket/key``); each stage run presigns it anew. (An output in a file store is
# handed on as its path.) Only genq writes these: a producer refuses them in what it is given
# (``JobRequestBase.output_refs``).
OUTPUT_PREFIX = "output:"
_OUTPUT = re.compile(r"^output:s3://[^/\s]+/\S+$")


def media_source(value: str) -> str:
    """``value`` if it is an http(s) URL, an absolute path or a step's output, else a ``ValueError``."""
    if _URL.match(value) or value.startswith("/") or _OUTPUT.match(value):
        return value
    raise ValueError("must be an http(s) URL or an absolute file path")


def is_output_ref(source: str) -> bool:
    return source.startswith(OUTPUT_PREFIX)


def _http_url(value: str) -> str:
    if _URL.match(value):
        return value
    raise ValueError("must be an http(s) URL")


# A media input: an ``http(s)://`` URL that the provider fetches itself, or an absolute path to a local
# file that the workers upload (producers and workers must then share that path).
MediaSource = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(media_source)]
HttpUrl = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_http_url)]
Tenant = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]


def is_local_path(source: str) -> bool:
    """True when a media source names a local file rather than a URL."""
    return source.startswith("/")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JobRequestBase(Strict):
    """The fields and methods of every job request. ``kind`` is the discriminator of the union."""

    # The largest local file a provider takes (checked at submit); None: no stated limit.
    max_local_file_bytes: ClassVar[int | None] = None

    kind: str
    # Jobs of different tenants share a provider budget round-robin.
    tenant: Tenant | None = None

    def sources(self) -> dict[str, str]:
        """Every media input by field path (``video``, ``tracks.1.audio``)."""
        return {}

    def local_files(self) -> dict[str, str]:
        """The local paths this request reads, by field name (the producer checks they exist)."""
        return {name: s for name, s in self.sources().items() if is_local_path(s)}

    def output_refs(self) -> dict[str, str]:
        """The inputs that are a pipeline step's output (``output:…``), by field name."""
        return {name: s for name, s in self.sources().items() if is_output_ref(s)}

    def over_caps(self, caps: Caps) -> list[str]:
        """One ``<field>: <problem>`` line per list of this request longer than its cap (the producer
        checks the request's bytes itself), or anything else a request's model alone cannot check (a
        pipeline's graph and its steps' requests)."""
        return []
