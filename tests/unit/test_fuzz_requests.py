"""Property-based tests of the job request contract (``producers.validate``, ``schemas.JOB_REQUEST``):
whatever a producer sends is either accepted and survives its own JSON (what the job store keeps) or
refused with one ``<where>: <problem>`` line per problem, and nothing else is ever raised.

Inputs: arbitrary JSON, and requests built from the README's field tables with a few fields mutated,
so that a good share of them is valid and the rest fail on one field at a time. The strategies are
shared with ``test_fuzz_cli.py``.
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from producers import InvalidRequest, validate
from schemas import JOB_REQUEST

# Examples per fuzz test: 2,000 in `make test` (what CI runs); `make check`, the loop while editing, sets
# FUZZ_EXAMPLES lower to stay under a minute.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "2000"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- JSON ------------------------------------------------------------------------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)  # JSON has neither
    | st.text(max_size=20)
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
JSON_OBJECTS = st.dictionaries(st.text(max_size=12), JSON, max_size=6)

# --- near-valid requests, from the README's tables -------------------------------------------------


def mostly(good: st.SearchStrategy[Any], *bad: Any) -> st.SearchStrategy[Any]:
    """``good`` about nine times in ten, else one of the ``bad`` values: every field can be wrong, yet a
    request of a dozen fields is still valid often enough to exercise acceptance. (``one_of`` would not
    do: Hypothesis favours its first and last branches.)"""
    return st.integers(0, 99).flatmap(lambda n: st.sampled_from(bad) if 45 <= n < 55 else good)


RARELY = st.integers(0, 99).map(lambda n: 45 <= n < 55)  # True about one time in ten

# Local paths that exist nowhere: the producer's file check refuses them with a line of their own.
ABSENT = "/nonexistent/genq-fuzz"
URLS = st.sampled_from(["https://x.test/v.mp4", "http://cdn.example.com/in/a.wav", "https://x.test/a?b=1"])
BAD_SOURCES = [f"{ABSENT}/in.mp4", "relative/v.mp4", "ftp://x/v.mp4", "", "asset:", "asset:a b", "https://"]
SOURCES = mostly(st.one_of(URLS, st.from_regex(r"asset:[A-Za-z0-9_-]{1,16}", fullmatch=True)), *BAD_SOURCES)
MUSIC_SOURCES = mostly(URLS, *BAD_SOURCES, "asset:abc")  # Aimi reads URLs and local files only
NAMES = mostly(st.from_regex(r"[A-Za-z0-9_-]{1,24}", fullmatch=True), "no spaces", "x" * 256, "")
TENANTS = mostly(st.from_regex(r"[A-Za-z0-9._:-]{1,20}", fullmatch=True), "", "a b", "t" * 65)
UNIT = mostly(st.floats(min_value=0, max_value=1), -0.5, 1.5, "0.5", "half")
SECONDS = st.integers(min_value=0, max_value=60) | st.floats(min_value=0, max_value=60)

TTS = st.fixed_dictionaries(
    {"voice_id": mostly(st.just("EXAVITQu4vr4xnSDxMaL"), ""), "script": st.text(min_size=1, max_size=30)},
    optional={"stability": UNIT, "similarity_boost": UNIT},
)
SPEAKER = mostly(
    st.one_of(
        st.fixed_dictionaries(
            {"frame_number": st.integers(0, 100), "coordinates": st.tuples(SECONDS, SECONDS)}
        ),
        st.fixed_dictionaries(
            {"bounding_boxes": st.lists(st.none() | st.tuples(*[SECONDS] * 4), max_size=3)}
        ),
        st.fixed_dictionaries({"auto_detect": st.booleans()}),
    ),
    {"frame_number": 3},
    {"frame_number": -1, "coordinates": [1, 2]},
    {"frame_number": 1, "coordinates": [1, 2], "bounding_boxes_url": "https://x.test/b.json"},
)
OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "sync_mode": mostly(st.sampled_from(["bounce", "loop", "cut_off", "silence", "remap"]), "stretch"),
        "temperature": UNIT,
        "occlusion_detection_enabled": st.booleans(),
        "active_speaker_detection": SPEAKER,
        "pads": st.lists(mostly(st.integers(0, 20), -2), min_size=4, max_size=4),
        "speedup": mostly(st.integers(1, 4), 0, 5),
        "output_format": mostly(st.sampled_from(["mp4", "mov"]), "avi"),
        "fps": mostly(st.floats(min_value=1, max_value=120), 0, 121),
        "output_resolution": st.tuples(mostly(st.integers(1, 8192), 0), mostly(st.integers(1, 8192), 9000)),
        "active_speaker": st.booleans(),
    },
)
REACT_OPTIONS = st.fixed_dictionaries(  # react-1 only: a share go to other models and are refused
    {},
    optional={
        "model_mode": st.sampled_from(["lips", "face", "head"]),
        "prompt": st.sampled_from(["happy", "sad"]),
    },
)
LIPSYNC_MODELS = st.sampled_from(["lipsync-2", "lipsync-2-pro", "lipsync-1.9.0-beta", "react-1", "sync-3"])


@st.composite
def tracks_and_segments(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, 3))
    voice = st.one_of(st.fixed_dictionaries({"audio": SOURCES}), st.fixed_dictionaries({"tts": TTS}))
    tracks = [{"ref_id": f"t{i}", **draw(voice)} for i in range(count)]
    cuts = sorted(draw(st.lists(st.integers(0, 120), min_size=2, max_size=5, unique=True)))
    refs = mostly(st.integers(0, count - 1), count)  # t<count>: no such track
    segments = [
        {"start_time": start / 2, "end_time": end / 2, "audio_input": {"ref_id": f"t{draw(refs)}"}}
        for start, end in itertools.pairwise(cuts)
    ]
    if draw(RARELY) and len(segments) > 1:  # now and then, two segments overlap
        segments[1] = {**segments[1], "start_time": segments[0]["start_time"]}
    return {"tracks": tracks, "segments": segments}


@st.composite
def lipsync(draw: st.DrawFn) -> dict[str, Any]:
    model = draw(LIPSYNC_MODELS)
    request = {"kind": "lipsync", "model": model}
    request |= draw(mostly(st.fixed_dictionaries({"video": SOURCES}), {"image": "https://x.test/i.png"}))
    request |= draw(
        st.one_of(
            st.fixed_dictionaries({"audio": SOURCES}),
            st.fixed_dictionaries({"tts": TTS}),
            tracks_and_segments(),
        )
    )
    options = draw(OPTIONS)
    if model == "react-1" or draw(RARELY):
        options |= draw(REACT_OPTIONS)
    optional = {
        "output_file_name": NAMES,
        "max_cost_usd": mostly(st.floats(0.01, 10), 0, -1),
        "tenant": TENANTS,
    }
    return (
        request
        | ({"options": options} if options else {})
        | draw(st.fixed_dictionaries({}, optional=optional))
    )


PROJECT = {
    "name": "Quarterly update",
    "orientation": "portrait",
    "scenes": [
        {
            "sceneIdx": 0,
            "background": {"id": "background", "type": "background", "source_type": "image",
                           "source_url": "/images/background/bg_blue_gradient.png"},
            "scripts": [{"org": "Welcome.", "isTTS": False, "tts": None, "modelId": "M000045058",
                         "clothId": "BG00002320"}],
            "clips": [
                {"id": "aiModel-1", "type": "aiModel", "layer": 1, "top": 144.6, "left": 630.2,
                 "width": 679, "height": 2229,
                 "model": {"ai_name": "M000045058", "emotion": "BG00002320", "language": "en"}},
                {"id": "title", "type": "textImage", "layer": 2, "text": "Q3", "fontSize": 48},
            ],
        }
    ],
}  # fmt: skip


@st.composite
def project(draw: st.DrawFn) -> dict[str, Any]:
    """The README's full-form project with its scalars redrawn (and now and then a rule broken)."""
    scene = PROJECT["scenes"][0]
    avatar, title = scene["clips"]
    model = draw(mostly(st.just("M000045058"), "M1"))  # M1: the script's modelId no longer matches
    clips = [
        {
            **avatar,
            "layer": draw(st.integers(1, 5)),
            "top": draw(SECONDS),
            "opacity": draw(mostly(st.integers(1, 100), 0)),
        },
        {**title, "type": draw(mostly(st.just("textImage"), "video")), "text": draw(st.text(max_size=10))},
    ]
    scripts = [
        {**scene["scripts"][0], "modelId": model, "org": draw(mostly(st.text(min_size=1, max_size=20), " "))}
    ]
    scenes = [{**scene, "sceneIdx": draw(mostly(st.integers(0, 9), -1)), "scripts": scripts, "clips": clips}]
    return {**PROJECT, "orientation": draw(st.sampled_from(["portrait", "landscape"])), "scenes": scenes}


AVATAR_SIMPLE = st.fixed_dictionaries(
    {
        "kind": st.just("avatar"),
        "script": mostly(st.text(min_size=1, max_size=40), " "),
        "model": mostly(st.sampled_from(["M000045058", "M1"]), "not an id"),
        "clothes": mostly(st.sampled_from(["BG00002320", "C1"]), "c/1"),
    },
    optional={
        "language": mostly(st.sampled_from(["en", "ko", "zh-CN"]), "english!"),
        "background_color": mostly(st.sampled_from(["#1e3a8a", "rgb(1, 2, 3)"]), "rgb(256,0,0)", "blue"),
        "orientation": mostly(st.sampled_from(["landscape", "portrait"]), "square"),
        "resolution": mostly(st.sampled_from(["4k", "1080", "720", "480"]), "2k"),
        "name": mostly(st.text(min_size=1, max_size=20), ""),
        "output_file_name": NAMES,
        "tenant": TENANTS,
    },
)
AVATAR_FULL = st.fixed_dictionaries(
    {"kind": st.just("avatar"), "project": project()},
    optional={"resolution": st.sampled_from(["4k", "720"]), "output_file_name": NAMES, "tenant": TENANTS},
)

PLAN = {"masterGain": 70, "sections": [{"start": 0, "key": "C"}, {"start": 12.5, "key": "G"}]}
POINTERS = mostly(st.sampled_from(["/masterGain", "/sections/0/key", "/sections/-", ""]), "x", "/a~2")
PATCH_OPERATIONS = st.one_of(
    st.fixed_dictionaries(
        {"op": st.sampled_from(["add", "replace", "test"]), "path": POINTERS, "value": JSON}
    ),
    st.fixed_dictionaries({"op": st.just("remove"), "path": POINTERS}),
    st.fixed_dictionaries({"op": st.sampled_from(["move", "copy"]), "from": POINTERS, "path": POINTERS}),
)
PLAN_EDIT = st.one_of(
    st.fixed_dictionaries({"replace": mostly(st.just(PLAN), {"sections": []}, {"tempo": 1})}),
    st.fixed_dictionaries({"replace": JSON_OBJECTS.map(lambda plan: {**plan, "sections": [plan]})}),
    st.fixed_dictionaries({"patch": st.lists(PATCH_OPERATIONS, min_size=1, max_size=4)}),
)


@st.composite
def music(draw: st.DrawFn) -> dict[str, Any]:
    keep = draw(st.booleans())
    original = st.sampled_from([{}, {"original_audio": True}, {"original_audio_voiceover": True}])
    switches = draw(original) if keep or draw(RARELY) else {}
    options = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "with_vocals": st.booleans(),
                "with_instrument": st.booleans(),
                "genre": mostly(st.sampled_from(["deep", "Deep House", "chill", None]), " bad", "x" * 65),
                "no_ducking": st.booleans(),
                "multitrack": st.booleans(),
            },
        )
    )
    executions = mostly(st.integers(1, 10), 0, 11)
    optional = {
        "plan_edit": PLAN_EDIT,
        "executions": executions,
        "output_file_name": NAMES,
        "tenant": TENANTS,
    }
    request = {
        "kind": "music",
        "video": draw(MUSIC_SOURCES),
        "keep_original_audio": keep,
        "plan_options": options | switches,
    }
    return request | draw(st.fixed_dictionaries({}, optional=optional))


VALID_SHAPED = st.one_of(lipsync(), lipsync(), AVATAR_SIMPLE, AVATAR_FULL, music(), music())


@st.composite
def mutated(draw: st.DrawFn, requests: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """A request as drawn (about half of the time), or with one change: a field dropped, replaced by
    any JSON value, or added, or another kind."""
    request = dict(draw(requests))
    change = draw(st.sampled_from(["none"] * 4 + ["drop", "replace", "add", "kind"]))
    keys = sorted(request)
    if change == "drop":
        request.pop(draw(st.sampled_from(keys)))
    elif change == "replace":
        request[draw(st.sampled_from(keys))] = draw(JSON)
    elif change == "add":
        request[draw(st.sampled_from(["api_key", "webhookUrl", "kind ", "request_id", "x"]))] = draw(JSON)
    elif change == "kind":
        kinds = ["lipsync", "avatar", "music", "lipsync_batch", "karaoke", None, 3]
        request["kind"] = draw(st.sampled_from(kinds))
    return request


REQUESTS = st.one_of(*[mutated(VALID_SHAPED)] * 5, JSON_OBJECTS)

# --- the properties -------------------------------------------------------------------------------


def check_request(value: dict[str, Any]) -> bool:
    """Accepted and round-tripping (True), or refused with located lines (False); nothing else."""
    try:
        parsed = validate(value, check_files=False)
    except InvalidRequest as exc:
        assert exc.problems, "a refusal names at least one problem"
        for problem in exc.problems:
            assert isinstance(problem, str)
            where, sep, what = problem.partition(": ")
            assert sep and where and what, problem
        return False
    stored = parsed.model_dump_json()
    again = validate(json.loads(stored), check_files=False)
    assert again == parsed
    assert again.model_dump_json() == stored
    return True


@FUZZ
@given(REQUESTS)
@pytest.mark.slow
def test_every_request_object_is_accepted_and_round_trips_or_is_refused_field_by_field(
    value: dict[str, Any],
) -> None:
    check_request(value)


@FUZZ
@given(JSON)
@pytest.mark.slow
def test_the_request_schema_refuses_any_other_json_with_a_validation_error(value: Any) -> None:
    """``schemas.JOB_REQUEST`` over any JSON value, objects or not: a request or a ValidationError."""
    try:
        parsed = JOB_REQUEST.validate_python(value)
    except ValidationError as exc:
        assert exc.errors()
        return
    assert JOB_REQUEST.validate_json(parsed.model_dump_json()) == parsed


@pytest.mark.slow
def test_near_valid_requests_are_often_valid() -> None:
    """The structured strategy is worth its keep only if a good share of what it makes is accepted."""
    accepted = []

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
    @given(mutated(VALID_SHAPED))
    def sample(value: dict[str, Any]) -> None:
        accepted.append(check_request(value))

    sample()
    assert sum(accepted) / len(accepted) > 0.3, f"{sum(accepted)} of {len(accepted)} accepted"


def test_validate_refuses_a_request_that_is_not_an_object() -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate("x", check_files=False)  # type: ignore[arg-type]
    assert caught.value.problems == ["request: must be a JSON object, not str"]
