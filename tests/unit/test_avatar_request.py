"""The ``avatar`` request: both forms, the project JSON each becomes, and one located line per refusal."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Annotated, Any

import pytest
from pydantic import Field, TypeAdapter, ValidationError

from producers.producer import _problem
from schemas.avatar import AvatarRequest
from schemas.avatar_project import Project
from schemas.lipsync import LipsyncRequest

SIMPLE: dict[str, Any] = {"script": "Hello from genq.", "model": "M000045058", "clothes": "BG00002320"}

# The documented example project (shared/seeds/001), moved to the 1.6.x form: the clip's
# ``script: {"org": ...}`` became the scene's ``scripts`` entry. Everything else is as published.
SEED_PROJECT: dict[str, Any] = {
    "name": "Test Project Using Api",
    "orientation": "landscape",
    "scenes": [
        {
            "background": {
                "id": "background",
                "type": "background",
                "source_type": "image",
                "source_url": "/images/background/bg_blue_gradient.png",
                "source_color": "rgb(54,188,37)",
            },
            "watermark": False,
            "scripts": [
                {
                    "org": "<p>Hello, this is test video using Api.</p>",
                    "isTTS": False,
                    "tts": None,
                    "modelId": "M000045058",
                    "clothId": "BG00002320",
                }
            ],
            "clips": [
                {
                    "id": "aiModel-1h4ij5h8e87",
                    "type": "aiModel",
                    "layer": 1,
                    "top": 144.5979042385424,
                    "left": 630.2493927359487,
                    "effects": [{"type": "head-only"}],
                    "height": 2229,
                    "width": 679,
                    "model": {
                        "ai_name": "M000045058",
                        "emotion": "BG00002320",
                        "language": "en",
                        "source_url": "https://cdn.aistudios.com/ai/ai_mov_thm/tight_ai_mov_thm_M000045058_BG00002320.png",
                        "editor": {
                            "headCenterX": 613.3333333333334,
                            "headCenterY": 290,
                            "headWidth": 182,
                            "headHeight": 185,
                            "modelTightX": 367.33333333333337,
                            "modelTightY": 168.16666666666669,
                            "modelTightS": 1,
                            "modelTightW": 679,
                            "modelTightH": 2229,
                            "modelOriginW": 1374,
                            "modelOriginH": 2444,
                            "scale": 0.3,
                            "adjustX": -0.016860747210092203,
                            "adjustY": -0.024822695035461,
                            "spaceB": 46.833333333333314,
                            "spaceT": 168.16666666666669,
                            "spaceL": 367.33333333333337,
                            "spaceR": 327.66666666666663,
                            "top": 168.16666666666669,
                            "left": 367.33333333333337,
                            "height": 2229,
                            "width": 679,
                        },
                        "origin": {"height": 2444, "width": 1374},
                        "deployImage": {
                            "themb_src": "https://cdn.aistudios.com/ai/model-introduce/thumbnails/M000045058_BG00002320.png",
                            "themb_width": 384,
                            "themb_height": 240,
                            "org_src": "https://cdn.aistudios.com/ai/ai_mov_thm/tight_ai_mov_thm_M000045058_BG00002320_org.png",
                            "org_width": 1374,
                            "org_height": 2444,
                            "edit_src": "https://cdn.aistudios.com/ai/ai_mov_thm/tight_ai_mov_thm_M000045058_BG00002320.png",
                            "edit_width": 692,
                            "edit_height": 2277,
                        },
                        "deploySize": {
                            "org_width": 1374,
                            "org_height": 2444,
                            "edit_width": 679,
                            "edit_height": 2229,
                        },
                        "editorValue": {
                            "headCenterX": 613.3333333333334,
                            "scale": 0.3,
                            "spaceR": 327.66666666666663,
                        },
                        "maskFile": "M000045058_BG00002320H_alpha_INV.mp4",
                    },
                    "name": "aiModel-1h4ij5h8e87",
                    "lockScalingFlip": True,
                    "fill": "rgb(0,0,0)",
                    "scaleX": 1,
                    "scaleY": 1,
                    "opacity": 100,
                    "lockMovementX": False,
                    "lockMovementY": False,
                    "lockRotation": False,
                    "lockScalingX": False,
                    "lockScalingY": False,
                    "lockSkewingX": False,
                    "lockSkewingY": False,
                    "lockUniScaling": False,
                }
            ],
            "thumbnailUrl": None,
            "sceneIdx": 0,
        }
    ],
}

OTHER_CLIPS: list[dict[str, Any]] = [
    {
        "id": "shape-1",
        "type": "shape",
        "shapeName": "Rectangle_corner0",
        "layer": 0,
        "top": 0,
        "left": 0,
        "width": 1920,
        "height": 120,
        "angle": 0,
        "opacity": 1,
        "fill": "rgb(255,255,255)",
        "stroke": "rgb(0,0,0)",
        "strokeWidth": 2,
        "shadow": {"color": "rgb(0,0,0)", "blur": 10, "offsetX": 2, "offsetY": 2, "enabled": True},
        "animation": {"type": "fade-in", "duration": 30, "delay": 0},
    },
    {"id": "image-1", "type": "image", "source_url": "https://x.test/logo.png", "opacity": 50, "tag": "logo"},
    {
        "id": "text-1",
        "type": "textImage",
        "text": "Quarterly update",
        "fontSize": 48,
        "fontFamily": "Noto Sans CJK",
        "fontWeight": "bold",
        "fontStyle": "italic",
        "underline": True,
        "animation": {"type": "zoom-out", "duration": 1, "delay": 30},
    },
    {"id": "video-1", "type": "videoImage", "video_url": "https://x.test/b-roll.mp4", "volume": 100},
    {"id": "audio-1", "type": "audio", "source_url": "https://x.test/music.mp3", "volume": 1, "label": "bgm"},
]


def seed_project(edit: Callable[[dict[str, Any]], object] | None = None) -> dict[str, Any]:
    project = copy.deepcopy(SEED_PROJECT)
    if edit is not None:
        edit(project)
    return project


def second_scene(project: dict[str, Any], **changes: Any) -> None:
    scene = {**copy.deepcopy(project["scenes"][0]), "sceneIdx": 1, **changes}
    project["scenes"].append(scene)


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        AvatarRequest.model_validate(data)
    return [_problem(err, AvatarRequest) for err in caught.value.errors()]


def canonical(value: Any) -> str:
    """Compares key sets, values and int-vs-float exactly (1 == 1.0 would hide a conversion)."""
    return json.dumps(value, sort_keys=True)


# --- the simple form -------------------------------------------------------------------------------


def test_simple_form_becomes_a_one_scene_project() -> None:
    request = AvatarRequest.model_validate(SIMPLE)
    project = request.to_project()
    assert project["name"] == "genq avatar"
    assert project["orientation"] == "landscape"
    [scene] = project["scenes"]
    assert scene["sceneIdx"] == 0
    assert scene["watermark"] is False
    assert scene["thumbnailUrl"] is None
    assert scene["scripts"] == [
        {
            "org": "Hello from genq.",
            "isTTS": False,
            "tts": None,
            "modelId": "M000045058",
            "clothId": "BG00002320",
        }
    ]
    [clip] = scene["clips"]
    assert clip["type"] == "aiModel"
    assert clip["model"] == {"ai_name": "M000045058", "emotion": "BG00002320", "language": "en"}
    seed_clip = SEED_PROJECT["scenes"][0]["clips"][0]
    layout = ("layer", "top", "left", "width", "height", "scaleX", "scaleY", "opacity")
    assert {key: clip[key] for key in layout} == {key: seed_clip[key] for key in layout}
    assert request.resolution == "1080"
    assert request.local_files() == {}
    Project.model_validate(project)  # what genq builds passes its own full-form checks


@pytest.mark.parametrize(
    ("changes", "background"),
    [
        ({}, {"source_type": "color", "source_color": "rgb(255,255,255)"}),
        (
            {"background_image": "https://x.test/studio.png"},
            {"source_type": "image", "source_url": "https://x.test/studio.png"},
        ),
        ({"background_color": "#FF0080"}, {"source_type": "color", "source_color": "rgb(255,0,128)"}),
        ({"background_color": "rgb( 0, 12 ,255)"}, {"source_type": "color", "source_color": "rgb(0,12,255)"}),
    ],
)
def test_simple_form_background(changes: dict[str, Any], background: dict[str, Any]) -> None:
    project = AvatarRequest.model_validate({**SIMPLE, **changes}).to_project()
    assert project["scenes"][0]["background"] == {"id": "background", "type": "background", **background}


def test_simple_form_options() -> None:
    changes = {"language": "ko", "orientation": "portrait", "name": "Q3 update", "resolution": "4k"}
    request = AvatarRequest.model_validate({**SIMPLE, **changes})
    project = request.to_project()
    assert (project["name"], project["orientation"]) == ("Q3 update", "portrait")
    clip = project["scenes"][0]["clips"][0]
    assert clip["model"]["language"] == "ko"
    # The landscape box, kept centred on the 1080x1920 canvas.
    assert clip["left"] == pytest.approx(630.2493927359487 - 420)
    assert clip["top"] == pytest.approx(144.5979042385424 + 420)
    assert request.resolution == "4k"


# --- the full form ---------------------------------------------------------------------------------


def test_seed_project_round_trips_exactly() -> None:
    request = AvatarRequest.model_validate({"project": seed_project(), "resolution": "720"})
    assert canonical(request.to_project()) == canonical(SEED_PROJECT)
    # As the job store keeps it: dumped to JSON by the producer, read back by the worker.
    stored = AvatarRequest.model_validate_json(request.model_dump_json())
    assert stored == request
    assert canonical(stored.to_project()) == canonical(SEED_PROJECT)


def test_every_clip_type_passes_through() -> None:
    project = seed_project(lambda p: p["scenes"][0]["clips"].extend(copy.deepcopy(OTHER_CLIPS)))
    request = AvatarRequest.model_validate({"project": project})
    assert canonical(request.to_project()) == canonical(project)


def test_defaults_never_appear_in_the_project() -> None:
    minimal = {
        "scenes": [
            {
                "sceneIdx": 0,
                "background": {"source_type": "color", "source_color": "rgb(0,0,0)"},
                "scripts": [{"org": "Hi", "isTTS": False, "modelId": "M1", "clothId": "C1"}],
                "clips": [{"type": "aiModel", "model": {"ai_name": "M1", "emotion": "C1"}}],
            }
        ]
    }
    request = AvatarRequest.model_validate({"project": minimal})
    assert request.to_project() == minimal
    assert AvatarRequest.model_validate_json(request.model_dump_json()).to_project() == minimal


def test_name_on_the_request_names_the_project() -> None:
    project = seed_project(lambda p: p.pop("name"))
    assert (
        AvatarRequest.model_validate({"project": project, "name": "Renamed"}).to_project()["name"]
        == "Renamed"
    )


def test_travels_in_the_job_union_as_json() -> None:
    union: TypeAdapter[Any] = TypeAdapter(
        Annotated[LipsyncRequest | AvatarRequest, Field(discriminator="kind")]
    )
    for data in ({"kind": "avatar", **SIMPLE}, {"kind": "avatar", "project": seed_project()}):
        request = union.validate_python(data)
        assert isinstance(request, AvatarRequest)
        assert union.validate_json(request.model_dump_json()).to_project() == request.to_project()


@pytest.mark.parametrize("resolution", ["4k", "1080", "720", "480"])
def test_resolutions(resolution: str) -> None:
    for form in (SIMPLE, {"project": seed_project()}):
        assert AvatarRequest.model_validate({**form, "resolution": resolution}).resolution == resolution


# --- refusals: one line each, located at the offending field ----------------------------------------

KNOWN = "expected one of aiModel, shape, image, textImage, videoImage, audio"
CLIP0 = "project.scenes.0.clips.0"
SHAPES = (
    "'Line_v2', 'Arrow_1_v2', 'Arrow_2_v2', 'Circle', 'Triangle', 'Square', 'Parallelogram', 'Drop_1', "
    "'Polygon', 'Pentagon', 'Oval_1', 'Oval_2', 'Hexagon_1', 'Hexagon_2', 'Diamond', 'Star' or "
    "'Rectangle_corner0'"
)


def scene0(project: dict[str, Any]) -> dict[str, Any]:
    scene: dict[str, Any] = project["scenes"][0]
    return scene


def add_clip(**clip: Any) -> Callable[[dict[str, Any]], None]:
    return lambda p: scene0(p)["clips"].append(clip)


def clip0(**changes: Any) -> Callable[[dict[str, Any]], None]:
    return lambda p: scene0(p)["clips"][0].update(changes)


SHAPE = {"type": "shape", "shapeName": "Star"}

PROJECT_REFUSALS: list[tuple[str, Callable[[dict[str, Any]], object], list[str]]] = [
    ("no scenes", lambda p: p["scenes"].clear(), ["project.scenes: must have at least one scene"]),
    ("scenes missing", lambda p: p.pop("scenes"), ["project.scenes: Field required"]),
    (
        "no script",
        lambda p: second_scene(p, scripts=[]),
        ["project.scenes.1.scripts: must have exactly one script"],
    ),
    (
        "two scripts",
        lambda p: scene0(p)["scripts"].append(scene0(p)["scripts"][0]),
        ["project.scenes.0.scripts: must have exactly one script"],
    ),
    ("1.4.x form", lambda p: scene0(p).pop("scripts"), ["project.scenes.0.scripts: Field required"]),
    (
        "no avatar clip",
        lambda p: scene0(p).update(clips=[SHAPE]),
        ["project.scenes.0.clips: must have exactly one aiModel clip"],
    ),
    (
        "two avatar clips",
        lambda p: scene0(p)["clips"].append(scene0(p)["clips"][0]),
        ["project.scenes.0.clips: must have exactly one aiModel clip"],
    ),
    (
        "modelId differs",
        lambda p: scene0(p)["scripts"][0].update(modelId="M1"),
        [
            "project.scenes.0.scripts.0.modelId: 'M1' does not match the avatar clip's model.ai_name "
            "'M000045058'"
        ],
    ),
    (
        "clothId differs",
        lambda p: scene0(p)["scripts"][0].update(clothId="BG1"),
        [
            "project.scenes.0.scripts.0.clothId: 'BG1' does not match the avatar clip's model.emotion "
            "'BG00002320'"
        ],
    ),
    (
        "blank script",
        lambda p: scene0(p)["scripts"][0].update(org=" "),
        ["project.scenes.0.scripts.0.org: must not be blank"],
    ),
    (
        "unknown clip type",
        add_clip(type="video"),
        [f"project.scenes.0.clips.1.type: unknown clip type 'video'; {KNOWN}"],
    ),
    ("clip without type", add_clip(id="x"), [f"project.scenes.0.clips.1.type: missing; {KNOWN}"]),
    (
        "clip not an object",
        lambda p: scene0(p)["clips"].append("aiModel"),
        ["project.scenes.0.clips.1: must be an object with a type"],
    ),
    ("opacity 0", clip0(opacity=0), [f"{CLIP0}.opacity: Input should be greater than or equal to 1"]),
    ("opacity 101", clip0(opacity=101), [f"{CLIP0}.opacity: Input should be less than or equal to 100"]),
    (
        "volume 0",
        add_clip(type="videoImage", video_url="https://x.test/v.mp4", volume=0),
        ["project.scenes.0.clips.1.volume: Input should be greater than or equal to 1"],
    ),
    (
        "volume 101",
        add_clip(type="audio", source_url="https://x.test/a.mp3", volume=101),
        ["project.scenes.0.clips.1.volume: Input should be less than or equal to 100"],
    ),
    (
        "animation duration 0",
        add_clip(**SHAPE, animation={"type": "fade-in", "duration": 0}),
        ["project.scenes.0.clips.1.animation.duration: Input should be greater than or equal to 1"],
    ),
    (
        "animation duration 31",
        add_clip(**SHAPE, animation={"type": "fade-in", "duration": 31}),
        ["project.scenes.0.clips.1.animation.duration: Input should be less than or equal to 30"],
    ),
    (
        "animation delay -1",
        add_clip(type="image", source_url="/i.png", animation={"type": "in-up", "delay": -1}),
        ["project.scenes.0.clips.1.animation.delay: Input should be greater than or equal to 0"],
    ),
    (
        "animation delay 31",
        add_clip(type="textImage", fontSize=20, animation={"type": "out-left", "delay": 31}),
        ["project.scenes.0.clips.1.animation.delay: Input should be less than or equal to 30"],
    ),
    (
        "animation type",
        add_clip(**SHAPE, animation={"type": "spin"}),
        [
            "project.scenes.0.clips.1.animation.type: Input should be 'fade-in', 'fade-out', 'in-right', "
            "'in-down', 'in-left', 'in-up', 'out-right', 'out-down', 'out-left', 'out-up', 'zoom-in' or "
            "'zoom-out'"
        ],
    ),
    (
        "shadow blur 11",
        add_clip(**SHAPE, shadow={"blur": 11}),
        ["project.scenes.0.clips.1.shadow.blur: Input should be less than or equal to 10"],
    ),
    (
        "shadow blur -1",
        add_clip(type="textImage", fontSize=20, shadow={"blur": -1}),
        ["project.scenes.0.clips.1.shadow.blur: Input should be greater than or equal to 0"],
    ),
    (
        "shape name",
        add_clip(type="shape", shapeName="Blob"),
        [f"project.scenes.0.clips.1.shapeName: Input should be {SHAPES}"],
    ),
    (
        "text without fontSize",
        add_clip(type="textImage", text="Hi"),
        ["project.scenes.0.clips.1.fontSize: Field required"],
    ),
    (
        "avatar without ai_name",
        lambda p: scene0(p)["clips"][0]["model"].pop("ai_name"),
        [f"{CLIP0}.model.ai_name: Field required"],
    ),
    (
        "duplicate sceneIdx",
        lambda p: second_scene(p, sceneIdx=0),
        ["project.scenes.1.sceneIdx: duplicate sceneIdx 0 (scenes.0 has it too)"],
    ),
    (
        "negative sceneIdx",
        lambda p: scene0(p).update(sceneIdx=-1),
        ["project.scenes.0.sceneIdx: Input should be greater than or equal to 0"],
    ),
    (
        "colour background without colour",
        lambda p: scene0(p)["background"].update(source_type="color", source_color=None),
        ["project.scenes.0.background.source_color: a color background needs source_color"],
    ),
    (
        "orientation",
        lambda p: p.update(orientation="square"),
        ["project.orientation: Input should be 'landscape' or 'portrait'"],
    ),
    (
        "resolution inside the project",
        lambda p: p.update(resolution="4k"),
        ["project.resolution: give resolution on the request, not inside the project"],
    ),
    (
        "webhook inside the project",
        lambda p: p.update(webhookUrl="https://x.test/hook"),
        ["project.webhookUrl: set by genq's worker, not by the request"],
    ),
    (
        "unknown project key",
        lambda p: p.update(scene=[]),
        ["project.scene: unknown field; did you mean scenes?"],
    ),
]


@pytest.mark.parametrize(
    ("edit", "expected"), [case[1:] for case in PROJECT_REFUSALS], ids=[case[0] for case in PROJECT_REFUSALS]
)
def test_project_refusals(edit: Callable[[dict[str, Any]], object], expected: list[str]) -> None:
    assert problems({"project": seed_project(edit)}) == expected


FIELDS_REQUIRED = "Field required (the simple form needs script, model and clothes)"
COLOUR = "background_color: must be #rrggbb or rgb(r,g,b) with components 0-255"

REQUEST_REFUSALS: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "neither form",
        {},
        ["request: give either script, model and clothes (the simple form) or project (the full form)"],
    ),
    (
        "both forms",
        {**SIMPLE, "language": "en", "project": SEED_PROJECT},
        [
            "request: project (the full form) cannot be combined with the simple-form fields "
            "script, model, clothes, language"
        ],
    ),
    (
        "a simple-form option with project",
        {"orientation": "portrait", "project": SEED_PROJECT},
        ["request: project (the full form) cannot be combined with the simple-form fields orientation"],
    ),
    ("script alone", {"script": "Hi"}, [f"model: {FIELDS_REQUIRED}", f"clothes: {FIELDS_REQUIRED}"]),
    (
        "options alone",
        {"language": "en"},
        [f"script: {FIELDS_REQUIRED}", f"model: {FIELDS_REQUIRED}", f"clothes: {FIELDS_REQUIRED}"],
    ),
    (
        "two backgrounds",
        {**SIMPLE, "background_image": "https://x.test/b.png", "background_color": "#000000"},
        ["request: give at most one of background_image or background_color"],
    ),
    ("colour name", {**SIMPLE, "background_color": "red"}, [COLOUR]),
    ("short hex", {**SIMPLE, "background_color": "#fff"}, [COLOUR]),
    ("rgb over 255", {**SIMPLE, "background_color": "rgb(0,256,0)"}, [COLOUR]),
    (
        "image not http",
        {**SIMPLE, "background_image": "ftp://x.test/b.png"},
        ["background_image: Value error, must be an http(s) URL"],
    ),
    ("blank script", {**SIMPLE, "script": "  "}, ["script: must not be blank"]),
    (
        "long script",
        {**SIMPLE, "script": "x" * 5001},
        ["script: String should have at most 5000 characters"],
    ),
    (
        "model id",
        {**SIMPLE, "model": "M 1"},
        ["model: String should match pattern '^[A-Za-z0-9_-]{1,64}$'"],
    ),
    (
        "language",
        {**SIMPLE, "language": "English!"},
        ["language: must be a short language tag such as en or zh-CN"],
    ),
    (
        "orientation",
        {**SIMPLE, "orientation": "square"},
        ["orientation: Input should be 'landscape' or 'portrait'"],
    ),
    (
        "resolution 2k",
        {**SIMPLE, "resolution": "2k"},
        ["resolution: Input should be '4k', '1080', '720' or '480'"],
    ),
    (
        "resolution int",
        {**SIMPLE, "resolution": 1080},
        ["resolution: Input should be '4k', '1080', '720' or '480'"],
    ),
    (
        "name twice",
        {"project": SEED_PROJECT, "name": "Other"},
        ["name: give the project name once: here or as project.name"],
    ),
    ("long name", {**SIMPLE, "name": "x" * 256}, ["name: String should have at most 255 characters"]),
    (
        "output file name",
        {**SIMPLE, "output_file_name": "a b.mp4"},
        ["output_file_name: String should match pattern '^[A-Za-z0-9_-]{1,255}$'"],
    ),
    ("unknown field", {**SIMPLE, "api_key": "secret"}, ["api_key: unknown field"]),
    ("kind", {**SIMPLE, "kind": "lipsync"}, ["kind: Input should be 'avatar'"]),
]


@pytest.mark.parametrize(
    ("data", "expected"), [case[1:] for case in REQUEST_REFUSALS], ids=[case[0] for case in REQUEST_REFUSALS]
)
def test_request_refusals(data: dict[str, Any], expected: list[str]) -> None:
    assert problems(data) == expected


def test_every_bad_field_gets_its_own_line() -> None:
    def edit(project: dict[str, Any]) -> None:
        scene0(project)["scripts"][0].update(modelId="M1")
        second_scene(project, scripts=[])
        project["scenes"][1]["clips"][0]["opacity"] = 0

    assert problems({"project": seed_project(edit)}) == [
        "project.scenes.0.scripts.0.modelId: 'M1' does not match the avatar clip's model.ai_name "
        "'M000045058'",
        "project.scenes.1.scripts: must have exactly one script",
        "project.scenes.1.clips.0.opacity: Input should be greater than or equal to 1",
    ]
