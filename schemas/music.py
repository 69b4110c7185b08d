"""The ``music`` job request: an Aimi Sync job scoring a video with music generated in sync with it.

The workers upload and analyse ``video`` (its audio too when ``keep_original_audio``), generate a plan
with ``plan_options``, change it as ``plan_edit`` says, then execute it ``executions`` times in
parallel; each execution is one output, ``<name>_<n>`` plus ``output_suffix``. A plan is opaque JSON
here but for its non-empty ``sections`` array (shared/reference/providers.md 1.6, 1.7).
Rules marked [INF] are inferred, not documented.
"""

from __future__ import annotations

import copy
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    JsonValue,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from schemas.base import JobRequestBase, MediaSource, Strict
from schemas.jsonpatch import PatchError, apply_patch, operation_problems

__all__ = ["MusicRequest", "PatchError", "PlanEdit", "PlanOptions", "apply_patch", "check_plan"]

MAX_EXECUTIONS = 10  # Aimi runs at most 10 executions per account at once
MAX_OPERATIONS = 100  # [INF]
MAX_REQUEST_JSON_BYTES = 1_000_000  # [INF] bounds what one job record holds
# [INF] Only "deep" is documented; names seen elsewhere are words such as "Deep House" or "chill".
_GENRE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _-]{0,63}")


def _at(loc: tuple[str | int, ...], message: str, value: object) -> InitErrorDetails:
    # The message goes in as context, so braces in a user's pointer are never read as a template.
    error = PydanticCustomError("music", "{problem}", {"problem": message})
    return InitErrorDetails(type=error, loc=loc, input=value)


def _refuse(title: str, errors: list[InitErrorDetails]) -> ValidationError:
    """Raised from a validator, pydantic keeps each error's location (below the validated value)."""
    return ValidationError.from_exception_data(title, errors)


def _genre(value: str) -> str:
    if not _GENRE.fullmatch(value):
        message = "must be an Aimi genre name: 1-64 letters, digits, spaces, _ or -, starting alphanumeric"
        raise PydanticCustomError("genre", message)
    return value


Genre = Annotated[str, AfterValidator(_genre)]


class PlanOptions(Strict):
    """The switches sent to plan generation. The ``with_`` ones are the endpoint page's names, the rest
    the Plan Guide's; the workers send every one, so Aimi's own defaults never apply."""

    with_vocals: bool = False
    with_voiceover: bool = True  # [CONFLICT] the seed says true, the endpoint page false
    with_instrument: bool = False  # detailed instrument choice, e.g. "harp"
    genre: Genre | None = "deep"  # None: Aimi chooses
    original_audio: bool = False  # lay the video's own audio over the music
    original_audio_voiceover: bool = False  # lay it over as speech, ducking the music
    no_ducking: bool = False  # voiceovers (generated or original) no longer duck the music
    multitrack: bool = False  # the download is a zip of the video and the audio stems


def _sections_ok(plan: dict[str, Any]) -> bool:
    sections = plan.get("sections")
    return isinstance(sections, list) and len(sections) > 0


def check_plan(plan: object) -> None:
    """Raise ``ValueError`` unless ``plan`` is an object with a non-empty ``sections`` array, the only
    part of a plan's shape that is documented. The worker checks every plan before executing it."""
    if not isinstance(plan, dict):
        raise ValueError("plan must be an object")
    if not _sections_ok(plan):
        raise ValueError("plan.sections must be a non-empty array")


def _plan(plan: dict[str, JsonValue]) -> dict[str, JsonValue]:
    if not _sections_ok(plan):
        raise _refuse("Plan", [_at(("sections",), "must be a non-empty array", plan.get("sections"))])
    return plan


def _operation(operation: dict[str, JsonValue]) -> dict[str, JsonValue]:
    # [INF] Stricter than RFC 6902, which ignores members an operation does not take: here they are
    # refused, since a stray "value" on a remove is more likely a mistake than an extension.
    problems = operation_problems(operation)
    if problems:
        errors = [_at((member,), problem, operation.get(member)) for member, problem in problems]
        raise _refuse("PatchOperation", errors)
    return operation


# Plain JSON objects rather than models: they are stored and replayed exactly as given (a null
# "value" stays, an absent one stays absent), and the worker hands them to ``apply_patch`` as they are.
Plan = Annotated[dict[str, JsonValue], AfterValidator(_plan)]
PatchOperation = Annotated[dict[str, JsonValue], AfterValidator(_operation)]


class PlanEdit(Strict):
    """How the generated plan changes before it is executed: exactly one of ``replace`` (the plan to
    execute instead) or ``patch`` (RFC 6902 operations applied to the generated plan)."""

    replace: Plan | None = None
    patch: Annotated[list[PatchOperation], Field(min_length=1, max_length=MAX_OPERATIONS)] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> PlanEdit:
        if (self.replace is None) == (self.patch is None):
            message = "give exactly one of replace (a whole plan) or patch (JSON-patch operations)"
            raise _refuse("PlanEdit", [_at((), message, None)])
        return self

    def apply(self, generated: dict[str, Any]) -> dict[str, Any]:
        """The plan to execute, checked: a copy of ``replace``, or ``patch`` applied to ``generated``.
        Raises ``PatchError`` (e.g. ``plan_edit.patch.2: path /sections/9 does not exist``) or
        ``ValueError`` from ``check_plan``."""
        if self.replace is not None:
            plan = copy.deepcopy(self.replace)
        else:
            plan = apply_patch(generated, self.patch or [], where="plan_edit.patch")
        check_plan(plan)
        return plan


_ORIGINAL_AUDIO = ("original_audio", "original_audio_voiceover")


class MusicRequest(JobRequestBase):
    """An Aimi Sync job: music generated in sync with ``video``, rendered ``executions`` times.

    ``keep_original_audio`` keeps the video's own audio (it is then analysed too) and lays it either
    under the music (``plan_options.original_audio``, turned on when neither switch is set) or as
    ducking speech (``plan_options.original_audio_voiceover``). Those switches need it."""

    kind: Literal["music"] = "music"
    video: MediaSource  # a URL the workers read by HTTP Range, or a local path they read
    keep_original_audio: bool = False
    # Declared after keep_original_audio, so its validator sees that field.
    plan_options: PlanOptions = Field(default_factory=PlanOptions, validate_default=True)
    plan_edit: PlanEdit | None = None
    # Each execution of the same plan gives different music.
    executions: int = Field(1, ge=1, le=MAX_EXECUTIONS)
    # [INF] lipsync's characters, at most 248 so "<name>_10.mp4" fits a 255-byte file name.
    output_file_name: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,248}$")

    @field_validator("plan_options")
    @classmethod
    def _original_audio_rule(cls, options: PlanOptions, info: ValidationInfo) -> PlanOptions:
        keep = info.data.get("keep_original_audio")
        given = [name for name in _ORIGINAL_AUDIO if getattr(options, name)]
        if keep is None:  # keep_original_audio was refused; its own error says why
            return options
        if not keep and given:
            message = "requires keep_original_audio: true (only then is the video's audio analysed)"
            raise _refuse("PlanOptions", [_at((name,), message, True) for name in given])
        if keep and len(given) == 2:  # [INF] both would lay the same audio twice
            message = "give at most one of original_audio or original_audio_voiceover"
            raise _refuse("PlanOptions", [_at((), message, None)])
        if keep and not given:
            return options.model_copy(update={"original_audio": True})
        return options

    @model_validator(mode="after")
    def _bounded(self) -> MusicRequest:
        if self.plan_edit is None:
            return self
        size = len(self.model_dump_json().encode())
        if size > MAX_REQUEST_JSON_BYTES:
            form = "replace" if self.plan_edit.replace is not None else "patch"
            message = f"makes the request's JSON {size} bytes; the limit is {MAX_REQUEST_JSON_BYTES}"
            raise _refuse(type(self).__name__, [_at(("plan_edit", form), message, None)])
        return self

    @property
    def output_suffix(self) -> str:
        """``.zip`` (the video and audio stems) with ``plan_options.multitrack``, else ``.mp4``."""
        return ".zip" if self.plan_options.multitrack else ".mp4"

    def generate_options(self) -> dict[str, bool | str | None]:
        """The options of plan generation, every one given (``genre`` None: leave it out, Aimi picks)."""
        return self.plan_options.model_dump()

    def plan_to_execute(self, generated: dict[str, Any]) -> dict[str, Any]:
        """The plan the workers execute, given the one Aimi generated: edited as ``plan_edit`` says,
        and checked either way (see ``PlanEdit.apply`` for the errors)."""
        if self.plan_edit is not None:
            return self.plan_edit.apply(generated)
        check_plan(generated)
        return generated

    def sources(self) -> dict[str, str]:
        return {"video": self.video}
