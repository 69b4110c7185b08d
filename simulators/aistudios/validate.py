"""Validation of AI Studios v3 request bodies: the project JSON (reference 2.5), export and delete.

Every problem found is named with its place (e.g. `scenes[0].scripts must have exactly one entry`)
and all of them are joined into the error's `msg`. [INF] The real API's checks and messages are not
documented; these enforce what the reference states as required or bounded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from simulators.aistudios.catalogue import BY_ID, has_clothes

INVALID_PROJECT = "INVALID_PROJECT"
INVALID_REQUEST = "INVALID_REQUEST"
CLIP_TYPES = ("aiModel", "shape", "image", "textImage", "videoImage", "audio")
ORIENTATIONS = ("landscape", "portrait")
RESOLUTIONS = ("4k", "1080", "720", "480")
DEFAULT_RESOLUTION = "1080"
DEFAULT_NAME = "Default Template"
# Keys of the create body that steer the request rather than describe the project.
REQUEST_KEYS = frozenset({"isExport", "workspaceId", "resolution", "webhookUrl"})
# Documented bounds of clip fields, checked where the field is given (clips.md).
CLIP_RANGES: dict[str, tuple[tuple[str, float, float], ...]] = {
    "shape": (("opacity", 1, 100),),
    "image": (("opacity", 1, 100),),
    "videoImage": (("opacity", 1, 100), ("volume", 1, 100)),
    "audio": (("volume", 1, 100),),
}
ANIMATION_RANGES = (("duration", 1, 30), ("delay", 0, 30))
SHADOW_BLUR = ("blur", 0, 10)
_TAG = re.compile(r"<[^>]*>")
_URL = re.compile(r"https?://[^\s/]+\S*")


class RequestInvalid(Exception):
    """The body breaks a rule; answered HTTP 200 `{"success": false, "error": {code, msg}}`."""

    def __init__(self, code: str, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.code = code
        self.msg = "; ".join(problems)


@dataclass(frozen=True)
class RenderOptions:
    workspace_id: str | None
    resolution: str
    webhook_url: str | None


@dataclass(frozen=True)
class ProjectRequest:
    document: dict[str, Any]  # the project JSON as sent, without REQUEST_KEYS
    is_export: bool
    options: RenderOptions


@dataclass(frozen=True)
class _AvatarClip:
    where: str  # e.g. "scenes[0].clips[1]"
    clip: dict[str, Any]


def validate_create(body: Any) -> ProjectRequest:
    """Check a `POST /api/odin/v3/editor/project` body; raise RequestInvalid(INVALID_PROJECT)."""
    if not isinstance(body, dict):
        raise RequestInvalid(INVALID_PROJECT, ["body must be a JSON object"])
    problems: list[str] = []
    options = _render_options(body, problems)
    is_export = body.get("isExport", True)
    if not isinstance(is_export, bool):
        problems.append("isExport must be a boolean")
    if not isinstance(body.get("name", DEFAULT_NAME), str):
        problems.append("name must be a string")
    if body.get("orientation", "landscape") not in ORIENTATIONS:
        problems.append(f"orientation must be one of {', '.join(ORIENTATIONS)}")
    scenes = body.get("scenes")
    if not isinstance(scenes, list) or not scenes:
        problems.append("scenes must be a non-empty array")
    else:
        for index, scene in enumerate(scenes):
            _check_scene(f"scenes[{index}]", scene, problems)
    if problems:
        raise RequestInvalid(INVALID_PROJECT, problems)
    document = {key: value for key, value in body.items() if key not in REQUEST_KEYS}
    return ProjectRequest(document, is_export is True, options)


def validate_export(body: Any) -> tuple[str, RenderOptions]:
    """Check a `POST .../editor/project/export` body; return (projectId, options)."""
    if not isinstance(body, dict):
        raise RequestInvalid(INVALID_REQUEST, ["body must be a JSON object"])
    problems: list[str] = []
    project_id = body.get("projectId")
    if not isinstance(project_id, str) or not project_id:
        problems.append("projectId is required")
    options = _render_options(body, problems)
    if problems or not isinstance(project_id, str):
        raise RequestInvalid(INVALID_REQUEST, problems)
    return project_id, options


def validate_delete(body: Any) -> list[str]:
    """Check a `DELETE .../editor/project` body `{"ids": [...]}`; return the ids."""
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise RequestInvalid(INVALID_REQUEST, ["ids must be an array of project ids"])
    return ids


def _render_options(body: dict[str, Any], problems: list[str]) -> RenderOptions:
    workspace_id = body.get("workspaceId")
    if workspace_id is not None and not isinstance(workspace_id, str):
        problems.append("workspaceId must be a string")
    resolution = body.get("resolution", DEFAULT_RESOLUTION)
    if resolution not in RESOLUTIONS:
        problems.append(f"resolution must be one of {', '.join(RESOLUTIONS)}")
    webhook_url = body.get("webhookUrl")
    if webhook_url is not None and not (isinstance(webhook_url, str) and _URL.fullmatch(webhook_url)):
        problems.append("webhookUrl must be an http(s) URL")
    return RenderOptions(
        workspace_id if isinstance(workspace_id, str) else None,
        resolution if isinstance(resolution, str) else DEFAULT_RESOLUTION,
        webhook_url if isinstance(webhook_url, str) else None,
    )


def _check_scene(where: str, scene: Any, problems: list[str]) -> None:
    if not isinstance(scene, dict):
        problems.append(f"{where} must be an object")
        return
    if not _is_int(scene.get("sceneIdx")):
        problems.append(f"{where}.sceneIdx must be an integer")
    if not isinstance(scene.get("background"), dict):
        problems.append(f"{where}.background must be an object")
    clips = scene.get("clips")
    if not isinstance(clips, list):
        problems.append(f"{where}.clips must be an array")
        return
    for index, clip in enumerate(clips):
        _check_clip(f"{where}.clips[{index}]", clip, problems)
    avatars = [i for i, clip in enumerate(clips) if isinstance(clip, dict) and clip.get("type") == "aiModel"]
    if len(avatars) != 1:
        problems.append(f"{where}.clips must have exactly one aiModel clip (found {len(avatars)})")
        return
    avatar = _AvatarClip(f"{where}.clips[{avatars[0]}]", clips[avatars[0]])
    _check_script(where, scene, avatar, _check_model(avatar, problems), problems)


def _check_clip(where: str, clip: Any, problems: list[str]) -> None:
    if not isinstance(clip, dict):
        problems.append(f"{where} must be an object")
        return
    kind = clip.get("type")
    if kind not in CLIP_TYPES:
        problems.append(f"{where}.type must be one of {', '.join(CLIP_TYPES)}")
        return
    for bounds in CLIP_RANGES.get(kind, ()):
        _check_range(where, clip, bounds, problems)
    if kind == "textImage" and not (_is_number(clip.get("fontSize")) and clip["fontSize"] > 0):
        problems.append(f"{where}.fontSize is required for a textImage clip (a positive number)")
    animation = clip.get("animation")
    if isinstance(animation, dict):
        for bounds in ANIMATION_RANGES:
            _check_range(f"{where}.animation", animation, bounds, problems)
    elif animation is not None:
        problems.append(f"{where}.animation must be an object")
    shadow = clip.get("shadow")
    if isinstance(shadow, dict):
        _check_range(f"{where}.shadow", shadow, SHADOW_BLUR, problems)


def _check_model(avatar_clip: _AvatarClip, problems: list[str]) -> tuple[str, str] | None:
    """The aiModel clip's (ai_name, emotion) when both name catalogue entries, else None."""
    where = avatar_clip.where
    model = avatar_clip.clip.get("model")
    if not isinstance(model, dict):
        problems.append(f"{where}.model must be an object")
        return None
    ai_name, emotion = model.get("ai_name"), model.get("emotion")
    avatar = BY_ID.get(ai_name) if isinstance(ai_name, str) else None
    if avatar is None:
        problems.append(f"{where}.model.ai_name {ai_name!r} is not a known avatar")
        return None
    if not isinstance(emotion, str) or not has_clothes(avatar, emotion):
        problems.append(f"{where}.model.emotion {emotion!r} is not a clothes id of avatar {avatar.id}")
        return None
    return avatar.id, emotion


def _check_script(
    where: str,
    scene: dict[str, Any],
    avatar: _AvatarClip,
    model: tuple[str, str] | None,
    problems: list[str],
) -> None:
    clip_where, clip = avatar.where, avatar.clip
    scripts = scene.get("scripts")
    if scripts is None:
        # 1.4.x form: the speech sits on the aiModel clip itself.
        script = clip.get("script")
        if not (isinstance(script, dict) and _has_text(script.get("org"))):
            problems.append(
                f"{where}.scripts must have exactly one entry (or, in the 1.4.x form, "
                f"{clip_where}.script.org must be a non-empty string)"
            )
        return
    if not isinstance(scripts, list) or len(scripts) != 1:
        problems.append(f"{where}.scripts must have exactly one entry")
        return
    entry, entry_where = scripts[0], f"{where}.scripts[0]"
    if not isinstance(entry, dict):
        problems.append(f"{entry_where} must be an object")
        return
    if not _has_text(entry.get("org")):
        problems.append(f"{entry_where}.org must be a non-empty string")
    if model is None:
        return
    for key, model_key, expected in (("modelId", "ai_name", model[0]), ("clothId", "emotion", model[1])):
        if entry.get(key) != expected:
            problems.append(f"{entry_where}.{key} must equal {clip_where}.model.{model_key} ({expected})")


def _check_range(
    where: str, obj: dict[str, Any], bounds: tuple[str, float, float], problems: list[str]
) -> None:
    name, low, high = bounds
    if name in obj and not (_is_number(obj[name]) and low <= obj[name] <= high):
        problems.append(f"{where}.{name} must be a number from {low:g} to {high:g}")


def _has_text(org: Any) -> bool:
    """A non-empty script once `<p>`/`<span>` tags are removed."""
    return isinstance(org, str) and bool(_TAG.sub("", org).strip())


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
