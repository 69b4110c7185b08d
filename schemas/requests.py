"""Job requests: what a backend submits, one model per job kind, and the queue each kind runs on.

``KINDS`` is the schemas layer's part of the provider registry: a new provider's request model is
named here once, and the producer, the job store and the workers find it through this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Union, cast

from pydantic import Field, TypeAdapter

from schemas.avatar import AvatarRequest
from schemas.base import JobRequestBase
from schemas.lipsync import LipsyncRequest
from schemas.lipsync_batch import LipsyncBatchRequest
from schemas.music import MusicRequest
from schemas.pipeline import MEMBER_KINDS, PipelineRequest


@dataclass(frozen=True)
class Kind:
    """A job kind: its request model and the provider (queue) whose stages run it (``default`` for a
    pipeline, whose own runs call no provider). A kind that is not ``submittable`` is made by genq itself
    (a batch of other jobs) and refused from producers."""

    name: str
    model: type[JobRequestBase]
    provider: str
    submittable: bool = True


KINDS: Mapping[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("lipsync", LipsyncRequest, "syncso"),
        Kind("avatar", AvatarRequest, "aistudios"),
        Kind("music", MusicRequest, "aimi"),
        Kind("lipsync_batch", LipsyncBatchRequest, "syncso", submittable=False),
        Kind("pipeline", PipelineRequest, "default"),
    )
}
SUBMITTABLE: Mapping[str, Kind] = {name: kind for name, kind in KINDS.items() if kind.submittable}

# The settings that give the workers each provider's account, by provider: a worker sweeps an account and
# registers it in Redis (``layout.ACCOUNTS_KEY``) only when all of them are set. Named here so that a
# producer can say what configures a provider no worker serves yet, and an error which setting holds the
# key a provider refused; each provider's settings section agrees (tests/unit/test_settings.py).
CREDENTIALS: Mapping[str, tuple[str, ...]] = {
    "syncso": ("GENQ_SYNCSO__API_KEY",),
    "aistudios": ("GENQ_AISTUDIOS__APP_ID", "GENQ_AISTUDIOS__USER_KEY"),
    "aimi": ("GENQ_AIMI__API_KEY",),
}

# Every request is one of the models above, told apart by ``kind``.
JobRequest = JobRequestBase


def _adapter(kinds: Mapping[str, Kind]) -> TypeAdapter[JobRequest]:
    union: Any = Annotated[Union[tuple(k.model for k in kinds.values())], Field(discriminator="kind")]  # noqa: UP007
    return cast(TypeAdapter[JobRequest], TypeAdapter(union))


JOB_REQUEST = _adapter(SUBMITTABLE)  # what producers accept
STORED_REQUEST = _adapter(KINDS)  # what a job record may hold
MEMBER_REQUEST = _adapter({name: KINDS[name] for name in MEMBER_KINDS})  # a pipeline's step
