"""The ``avatar`` job request: a talking-avatar video rendered by DeepBrain AI Studios v3.

Two forms, exactly one per request: the simple form (``script``, ``model``, ``clothes`` and a few
options), which genq turns into a one-scene project, or ``project``, a whole v3 project passed through
as given (see ``schemas/avatar_project.py``). ``to_project()`` returns the project JSON either way.
Rules marked [INF] are inferred, not documented.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError, to_json

from schemas.avatar_project import Name, Orientation, Project, SpokenText, at, refuse
from schemas.base import HttpUrl, JobRequestBase
from schemas.caps import Caps, over

Resolution = Literal["4k", "1080", "720", "480"]

_HEX = re.compile(r"^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$", re.IGNORECASE)
_RGB = re.compile(r"^rgb\(\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*\)$")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")  # [INF] en, ko, zh-CN ...


def _rgb(colour: str) -> tuple[int, ...] | None:
    if match := _HEX.match(colour):
        return tuple(int(part, 16) for part in match.groups())
    if (match := _RGB.match(colour)) and all(int(part) <= 255 for part in match.groups()):
        return tuple(int(part) for part in match.groups())
    return None


def _colour(value: str) -> str:
    if _rgb(value) is None:
        raise PydanticCustomError("colour", "must be #rrggbb or rgb(r,g,b) with components 0-255")
    return value


def _language(value: str) -> str:
    if not _LANGUAGE.match(value):
        raise PydanticCustomError("language", "must be a short language tag such as en or zh-CN")
    return value


Colour = Annotated[str, Field(max_length=64), AfterValidator(_colour)]
LanguageTag = Annotated[str, Field(max_length=35), AfterValidator(_language)]
AvatarId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]  # [INF] e.g. M000045058, BG00002320

SIMPLE_FORM = (
    "script",
    "model",
    "clothes",
    "language",
    "background_image",
    "background_color",
    "orientation",
)
_SIMPLE_REQUIRED = ("script", "model", "clothes")
DEFAULT_NAME = "genq avatar"  # [INF] the provider's own default is "Default Template"
DEFAULT_LANGUAGE = "en"
DEFAULT_BACKGROUND_COLOR = "rgb(255,255,255)"  # [INF]

# The layout of the documented example aiModel clip (M000045058 on the 1920x1080 landscape canvas),
# without its avatar-specific editor objects. [INF] The provider fits any avatar into this box.
_AVATAR_BOX: dict[str, Any] = {
    "layer": 1,
    "top": 144.5979042385424,
    "left": 630.2493927359487,
    "width": 679,
    "height": 2229,
    "scaleX": 1,
    "scaleY": 1,
    "opacity": 100,
}
# [INF] Portrait swaps the canvas to 1080x1920; keep the box where it sits relative to the centre.
_PORTRAIT_SHIFT_PX = (1920 - 1080) / 2


class AvatarRequest(JobRequestBase):
    """An AI Studios v3 talking-avatar video: the simple form or a whole ``project``, not both."""

    kind: Literal["avatar"] = "avatar"
    # The simple form. language and orientation default to en and landscape; None here means "not
    # given", so a request read back from the job store still tells the forms apart.
    script: SpokenText | None = None
    model: AvatarId | None = None
    clothes: AvatarId | None = None
    language: LanguageTag | None = None
    background_image: HttpUrl | None = None
    background_color: Colour | None = None
    orientation: Orientation | None = None
    # The full form.
    project: Project | None = None
    # Both forms.
    resolution: Resolution = "1080"
    name: Name | None = None
    output_file_name: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,255}$")

    @model_validator(mode="after")
    def _one_form(self) -> AvatarRequest:
        given = [field for field in SIMPLE_FORM if getattr(self, field) is not None]
        if self.project is not None:
            errors = self._full_form_errors(given)
        elif given:
            errors = self._simple_form_errors()
        else:
            message = "give either script, model and clothes (the simple form) or project (the full form)"
            errors = [at((), message, None)]
        if errors:
            raise refuse(type(self).__name__, errors)
        return self

    def _full_form_errors(self, given: list[str]) -> list[InitErrorDetails]:
        if given:
            message = "project (the full form) cannot be combined with the simple-form fields {fields}"
            return [at((), message, None, fields=", ".join(given))]
        if self.name is not None and self.project is not None and self.project.name is not None:
            return [at(("name",), "give the project name once: here or as project.name", self.name)]
        return []

    def _simple_form_errors(self) -> list[InitErrorDetails]:
        message = "Field required (the simple form needs script, model and clothes)"
        errors = [at((field,), message, None) for field in _SIMPLE_REQUIRED if getattr(self, field) is None]
        if self.background_image is not None and self.background_color is not None:
            errors.append(at((), "give at most one of background_image or background_color", None))
        return errors

    def over_caps(self, caps: Caps) -> list[str]:
        if self.project is None:
            return []
        scenes = self.project.scenes
        problems = [over("project.scenes", len(scenes), "scenes", caps.max_scenes, "max_scenes")]
        problems += [
            over(f"project.scenes.{i}.clips", len(scene.clips), "clips", caps.max_clips, "max_clips")
            for i, scene in enumerate(scenes[: caps.max_scenes])  # past it, the scenes' line says enough
        ]
        if self.project.dictionary is not None:
            size = len(to_json(self.project.dictionary))
            problems.append(over("project.dictionary", size, "bytes of JSON", caps.max_dictionary_bytes,
                                 "max_dictionary_bytes"))  # fmt: skip
        return [p for p in problems if p]

    def to_project(self) -> dict[str, Any]:
        """The v3 project JSON to create and export: the given ``project`` (with ``name`` when set
        here), or the one-scene project built from the simple form. ``resolution`` is not part of it."""
        if self.project is not None:
            project = self.project.model_dump(mode="json", by_alias=True, exclude_unset=True)
            return {"name": self.name, **project} if self.name is not None else project
        return self._simple_project()

    def _simple_project(self) -> dict[str, Any]:
        script, model, clothes = self.script, self.model, self.clothes
        if script is None or model is None or clothes is None:  # validation rules this out
            raise ValueError("not a simple-form avatar request")
        orientation = self.orientation or "landscape"
        scene = {
            "sceneIdx": 0,
            "background": self._background(),
            "watermark": False,
            "thumbnailUrl": None,
            "scripts": [{"org": script, "isTTS": False, "tts": None, "modelId": model, "clothId": clothes}],
            "clips": [_avatar_clip(model, clothes, self.language or DEFAULT_LANGUAGE, orientation)],
        }
        return {"name": self.name or DEFAULT_NAME, "orientation": orientation, "scenes": [scene]}

    def _background(self) -> dict[str, Any]:
        background: dict[str, Any] = {"id": "background", "type": "background"}
        if self.background_image is not None:
            return {**background, "source_type": "image", "source_url": self.background_image}
        rgb = _rgb(self.background_color) if self.background_color is not None else None
        # The documented form is rgb(r,g,b); #rrggbb is turned into it. [INF]
        colour = "rgb({},{},{})".format(*rgb) if rgb is not None else DEFAULT_BACKGROUND_COLOR
        return {**background, "source_type": "color", "source_color": colour}


def _avatar_clip(model: str, clothes: str, language: str, orientation: str) -> dict[str, Any]:
    box = dict(_AVATAR_BOX)
    if orientation == "portrait":
        box["left"] -= _PORTRAIT_SHIFT_PX
        box["top"] += _PORTRAIT_SHIFT_PX
    return {
        "id": "aiModel-0",
        "type": "aiModel",
        "name": "aiModel-0",
        **box,
        "model": {"ai_name": model, "emotion": clothes, "language": language},
        "headOnly": None,
        "voiceOnly": False,
        "isDelete": False,
    }
