"""The AI Studios v3 project JSON (1.6.x form) that an ``avatar`` request may carry whole.

Known fields are checked against the documented values; unknown keys of every provider object (the
editor's ``editor``, ``origin``, ``deployImage`` ... layout objects) are kept and passed through, and
each object serialises to exactly the keys it was given, so ``Project`` round-trips through the job
store unchanged. Names follow the provider's JSON (aliases where the Python name differs).
Rules marked [INF] are inferred, not documented (see shared/reference/providers.md 2.5).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PlainValidator,
    SerializeAsAny,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

Loc = tuple[str | int, ...]


def at(loc: Loc, message: str, value: object, **context: object) -> InitErrorDetails:
    """One error located at ``loc`` (relative to the model raising it); ``{name}`` in ``message`` is
    filled from ``context``."""
    return InitErrorDetails(type=PydanticCustomError("avatar", message, context), loc=loc, input=value)


def refuse(title: str, errors: list[InitErrorDetails]) -> ValidationError:
    """A ValidationError for errors located below the validating model. Raised from a validator,
    pydantic keeps each error's own location (prefixed with the model's)."""
    return ValidationError.from_exception_data(title, errors)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "must not be blank")
    return value


# Plain text is recommended; <p>/<span> are allowed. [INF] 5000 characters, as other providers' TTS.
SpokenText = Annotated[str, Field(min_length=1, max_length=5000), AfterValidator(_not_blank)]
Id = Annotated[str, Field(min_length=1, max_length=128)]
Name = Annotated[str, Field(min_length=1, max_length=255)]  # [INF] bound
Orientation = Literal["landscape", "portrait"]
# int | float keeps 2229 an int and 144.59 a float, so a project round-trips exactly.
Number = int | float
Percent = Annotated[int | float, Field(ge=1, le=100)]


class ProviderObject(BaseModel):
    """An object of the provider's project JSON: unknown keys are kept, and it serialises to exactly
    the keys it was given (never a default the caller left out)."""

    model_config = ConfigDict(extra="allow", frozen=True, serialize_by_alias=True)

    @model_serializer(mode="wrap")
    def _only_given(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        fields = type(self).model_fields
        unset = {key for name in fields.keys() - self.model_fields_set for key in (name, fields[name].alias)}
        extra = self.__pydantic_extra__ or {}
        return {key: value for key, value in data.items() if key in extra or key not in unset}


class Background(ProviderObject):
    id: str | None = None
    type: Literal["background"] | None = None
    source_type: Literal["image", "color"]  # [INF] the two the docs show
    source_url: str | None = None  # a provider path such as /images/background/... or a URL
    source_color: str | None = None  # e.g. rgb(54,188,37)

    @model_validator(mode="after")
    def _source_for_type(self) -> Background:
        # [INF] an image background needs its image, a colour background its colour.
        field = "source_url" if self.source_type == "image" else "source_color"
        if getattr(self, field) is None:
            message = "a {source_type} background needs {field}"
            raise refuse(
                "Background", [at((field,), message, None, source_type=self.source_type, field=field)]
            )
        return self


class Script(ProviderObject):
    """The scene's speech (1.6.x). 1.4.x kept it on the aiModel clip as ``script: {"org": ...}``."""

    org: SpokenText
    is_tts: bool = Field(alias="isTTS")  # false: the avatar's own voice
    tts: JsonValue = None  # null for the avatar's voice; the TTS format is not public
    model_id: Id = Field(alias="modelId")  # must equal the aiModel clip's model.ai_name
    cloth_id: Id = Field(alias="clothId")  # must equal the aiModel clip's model.emotion


class Shadow(ProviderObject):
    color: str | None = None
    blur: Annotated[Number, Field(ge=0, le=10)] | None = None
    offset_x: Number | None = Field(None, alias="offsetX")
    offset_y: Number | None = Field(None, alias="offsetY")
    enabled: bool | None = None


AnimationType = Literal[
    "fade-in", "fade-out", "in-right", "in-down", "in-left", "in-up",
    "out-right", "out-down", "out-left", "out-up", "zoom-in", "zoom-out",
]  # fmt: skip


class Animation(ProviderObject):
    type: AnimationType
    duration: Annotated[Number, Field(ge=1, le=30)] | None = None
    delay: Annotated[Number, Field(ge=0, le=30)] | None = None


class Clip(ProviderObject):
    """The fields every clip type has. ``layer``: higher is drawn on top; ``tag`` finds it later."""

    type: str
    id: str | None = None
    name: str | None = None
    tag: str | None = None
    layer: int | None = None
    top: Number | None = None
    left: Number | None = None
    width: Number | None = None
    height: Number | None = None
    scale_x: Number | None = Field(None, alias="scaleX")
    scale_y: Number | None = Field(None, alias="scaleY")
    opacity: Percent | None = None
    fill: str | None = None


class AvatarModel(ProviderObject):
    """``model`` of an aiModel clip; its layout objects (``editor``, ``deployImage`` ...) pass through."""

    ai_name: Id  # the avatar id, e.g. M000045058
    emotion: Id  # the clothes id despite its name, e.g. BG00002320
    language: str | None = None
    source_url: str | None = None


class Effect(ProviderObject):
    type: str  # e.g. head-only


class AiModelClip(Clip):
    type: Literal["aiModel"]
    model: AvatarModel
    effects: list[Effect] | None = None


class _DecoratedClip(Clip):
    angle: Number | None = None
    shadow: Shadow | None = None
    animation: Animation | None = None


ShapeName = Literal[
    "Line_v2", "Arrow_1_v2", "Arrow_2_v2", "Circle", "Triangle", "Square", "Parallelogram", "Drop_1",
    "Polygon", "Pentagon", "Oval_1", "Oval_2", "Hexagon_1", "Hexagon_2", "Diamond", "Star",
    "Rectangle_corner0",
]  # fmt: skip


class ShapeClip(_DecoratedClip):
    type: Literal["shape"]
    shape_name: ShapeName = Field(alias="shapeName")
    stroke: str | None = None
    stroke_width: Number | None = Field(None, alias="strokeWidth")
    stroke_radius: Number | None = Field(None, alias="strokeRadius")


class ImageClip(_DecoratedClip):
    type: Literal["image"]
    source_url: Id  # [INF] required: an image clip without its image shows nothing


class TextImageClip(_DecoratedClip):
    type: Literal["textImage"]
    font_size: Annotated[Number, Field(gt=0)] = Field(alias="fontSize")
    text: str | None = None
    font_family: str | None = Field(None, alias="fontFamily")
    align: str | None = None
    background_color: str | None = Field(None, alias="backgroundColor")
    stroke: str | None = None
    stroke_width: Number | None = Field(None, alias="strokeWidth")
    font_weight: str | int | None = Field(None, alias="fontWeight")
    font_style: str | None = Field(None, alias="fontStyle")
    underline: bool | None = None


class VideoImageClip(Clip):
    type: Literal["videoImage"]
    video_url: Id  # [INF] required
    volume: Percent | None = None


class AudioClip(Clip):
    type: Literal["audio"]
    source_url: Id  # [INF] required
    volume: Percent | None = None
    label: str | None = None


CLIP_TYPES: Mapping[str, type[Clip]] = {
    "aiModel": AiModelClip,
    "shape": ShapeClip,
    "image": ImageClip,
    "textImage": TextImageClip,
    "videoImage": VideoImageClip,
    "audio": AudioClip,
}
_KNOWN_TYPES = ", ".join(CLIP_TYPES)


def _clip(value: object) -> Clip:
    # Dispatch on ``type`` by hand rather than with a tagged union, whose errors would carry the tag
    # in their path (clips.0.aiModel.opacity instead of clips.0.opacity).
    if isinstance(value, Clip):
        return value
    if not isinstance(value, dict):
        raise PydanticCustomError("clip", "must be an object with a type")
    model = CLIP_TYPES.get(value["type"]) if isinstance(value.get("type"), str) else None
    if model is None:
        if "type" not in value:
            error = at(("type",), "missing; expected one of {known}", None, known=_KNOWN_TYPES)
        else:
            message = "unknown clip type '{type}'; expected one of {known}"
            error = at(("type",), message, value["type"], type=str(value["type"]), known=_KNOWN_TYPES)
        raise refuse("Clip", [error])
    return model.model_validate(value)


# SerializeAsAny: each clip serialises as its own type, unknown keys included.
AnyClip = Annotated[SerializeAsAny[Clip], PlainValidator(_clip)]


class Scene(ProviderObject):
    scene_idx: int = Field(alias="sceneIdx", ge=0)
    background: Background
    watermark: bool | None = None
    thumbnail_url: str | None = Field(None, alias="thumbnailUrl")
    scripts: list[Script]
    clips: list[AnyClip]

    @field_validator("scripts")
    @classmethod
    def _one_script(cls, scripts: list[Script]) -> list[Script]:
        if len(scripts) != 1:  # an array, yet exactly one entry (1.6.x)
            raise PydanticCustomError("scripts", "must have exactly one script")
        return scripts

    @field_validator("clips")
    @classmethod
    def _one_avatar(cls, clips: list[Clip]) -> list[Clip]:
        if sum(isinstance(clip, AiModelClip) for clip in clips) != 1:  # [INF] one speaker per scene
            raise PydanticCustomError("clips", "must have exactly one aiModel clip")
        return clips

    @property
    def avatar(self) -> AiModelClip:
        """The scene's aiModel clip (validation guarantees exactly one)."""
        return next(clip for clip in self.clips if isinstance(clip, AiModelClip))

    @model_validator(mode="after")
    def _script_matches_avatar(self) -> Scene:
        script, model = self.scripts[0], self.avatar.model
        checks = [("modelId", script.model_id, "ai_name", model.ai_name)]
        checks.append(("clothId", script.cloth_id, "emotion", model.emotion))
        message = "'{got}' does not match the avatar clip's model.{field} '{want}'"
        errors = [
            at(("scripts", 0, key), message, got, got=got, field=field, want=want)
            for key, got, field, want in checks
            if got != want
        ]
        if errors:
            raise refuse("Scene", errors)
        return self


# Create-call parameters that sit beside the project in the provider's body, not inside genq's project.
_NOT_IN_PROJECT = {
    "resolution": "give resolution on the request, not inside the project",
    "isExport": "set by genq's worker, not by the request",
    "workspaceId": "set by genq's worker, not by the request",
    "webhookUrl": "set by genq's worker, not by the request",
}


class Project(ProviderObject):
    """A whole v3 project (1.6.x form: the speech in ``scenes[].scripts``). Strict at the top level."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    orientation: Orientation | None = None  # swaps the 1920x1080 canvas
    scenes: list[Scene]
    dictionary: JsonValue = None  # 1.4.x: extra pronunciation data

    @model_validator(mode="before")
    @classmethod
    def _no_call_parameters(cls, data: Any) -> Any:
        if isinstance(data, dict):
            errors = [at((key,), why, data[key]) for key, why in _NOT_IN_PROJECT.items() if key in data]
            if errors:
                raise refuse("Project", errors)
        return data

    @field_validator("scenes")
    @classmethod
    def _some_scenes(cls, scenes: list[Scene]) -> list[Scene]:
        if not scenes:
            raise PydanticCustomError("scenes", "must have at least one scene")
        return scenes

    @model_validator(mode="after")
    def _unique_scene_idx(self) -> Project:
        first: dict[int, int] = {}
        errors = []
        for position, scene in enumerate(self.scenes):
            seen = first.setdefault(scene.scene_idx, position)
            if seen != position:
                message = "duplicate sceneIdx {idx} (scenes.{first} has it too)"
                errors.append(
                    at(
                        ("scenes", position, "sceneIdx"),
                        message,
                        scene.scene_idx,
                        idx=scene.scene_idx,
                        first=seen,
                    )
                )
        if errors:
            raise refuse("Project", errors)
        return self
