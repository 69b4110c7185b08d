"""The ``music`` request: what is accepted, one located line per refusal, the original-audio rule,
plan edits, and ``apply_patch`` against the examples of RFC 6902 appendix A."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from producers.producer import _problem
from schemas.music import MusicRequest, PatchError, PlanEdit, PlanOptions, apply_patch, check_plan

URL = "https://x.test/clip.mp4"
PLAN: dict[str, Any] = {
    "fxstyle": "chill",
    "id": "0b6f3c1e-8a8e-4a4e-9a53-2f7f1f3f2a10",
    "masterGain": 70,
    "parameterPresets": [{"id": 0, "trackname": "musictracks", "value": 0}],
    "sections": [{"start": 0, "key": "C"}, {"start": 12.5, "key": "G"}],
}
POINTER = "must be a JSON pointer: empty or starting with /, with ~ only in ~0 or ~1"
BAD_GENRE = (
    "plan_options.genre: must be an Aimi genre name: "
    "1-64 letters, digits, spaces, _ or -, starting alphanumeric"
)
NEEDS_KEEP = "requires keep_original_audio: true (only then is the video's audio analysed)"


def request(**changes: Any) -> dict[str, Any]:
    return {"video": URL, **changes}


def patch(*operations: Any) -> dict[str, Any]:
    return {"patch": list(operations)}


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        MusicRequest.model_validate(data)
    return [_problem(err, MusicRequest) for err in caught.value.errors()]


# --- accepted requests -----------------------------------------------------------------------------


def test_defaults() -> None:
    parsed = MusicRequest.model_validate(request())
    assert parsed.kind == "music"
    assert parsed.keep_original_audio is False
    assert parsed.plan_options == PlanOptions()
    assert parsed.plan_options.model_dump() == {
        "with_vocals": False,
        "with_voiceover": True,
        "with_instrument": False,
        "genre": "deep",
        "original_audio": False,
        "original_audio_voiceover": False,
        "no_ducking": False,
        "multitrack": False,
    }
    assert parsed.plan_edit is None
    assert parsed.executions == 1
    assert parsed.output_file_name is None
    assert parsed.tenant is None
    assert parsed.output_suffix == ".mp4"
    assert parsed.local_files() == {}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"video": "http://x.test/v.mov"}, {"video": "http://x.test/v.mov"}),
        ({"video": "/data/in/clip.mp4"}, {"video": "/data/in/clip.mp4"}),
        ({"executions": 10, "output_file_name": "Score_v-2", "tenant": "acme"}, {"executions": 10}),
        ({"plan_options": {"genre": None}}, {"plan_options": PlanOptions(genre=None)}),
        ({"plan_options": {"genre": "Deep House"}}, {"plan_options": PlanOptions(genre="Deep House")}),
        ({"plan_options": {"multitrack": True, "no_ducking": True}}, {"output_suffix": ".zip"}),
        ({"plan_options": {"with_vocals": True, "with_voiceover": False, "with_instrument": True}}, {}),
        ({"plan_edit": {"replace": PLAN}}, {"plan_edit": PlanEdit(replace=PLAN)}),
        ({"plan_edit": patch({"op": "test", "path": "", "value": None})}, {}),
        ({"output_file_name": "x" * 248}, {}),
    ],
)
def test_valid_requests(changes: dict[str, Any], expected: dict[str, Any]) -> None:
    parsed = MusicRequest.model_validate(request(**changes))
    for name, value in expected.items():
        assert getattr(parsed, name) == value


def test_generate_options_name_every_switch() -> None:
    parsed = MusicRequest.model_validate(request(keep_original_audio=True, plan_options={"genre": None}))
    assert parsed.generate_options() == {
        "with_vocals": False,
        "with_voiceover": True,
        "with_instrument": False,
        "genre": None,
        "original_audio": True,
        "original_audio_voiceover": False,
        "no_ducking": False,
        "multitrack": False,
    }


def test_local_video_is_a_local_file() -> None:
    assert MusicRequest(video="/data/in/clip.mp4").local_files() == {"video": "/data/in/clip.mp4"}


def test_the_job_store_round_trip_keeps_plan_edits_exactly() -> None:
    operations = [
        {"op": "add", "path": "/sections/-", "value": None},
        {"op": "move", "from": "/sections/0", "path": "/sections/1"},
        {"op": "test", "path": "/masterGain", "value": 70},
    ]
    for edit in ({"patch": operations}, {"replace": PLAN}):
        parsed = MusicRequest.model_validate(request(plan_edit=edit, keep_original_audio=True))
        assert MusicRequest.model_validate_json(parsed.model_dump_json()) == parsed
    stored = MusicRequest.model_validate(request(plan_edit={"patch": operations})).model_dump()
    assert stored["plan_edit"] == {"replace": None, "patch": operations}


# --- refusals, one line each as the producer reports them ------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"video": None}, ["video: Input should be a valid string"]),
        ({"video": "clip.mp4"}, ["video: Value error, must be an http(s) URL or an absolute file path"]),
        ({"kind": "lipsync"}, ["kind: Input should be 'music'"]),
        (
            {"keep_original_audio": "maybe"},
            ["keep_original_audio: Input should be a valid boolean, unable to interpret input"],
        ),
        ({"executions": 0}, ["executions: Input should be greater than or equal to 1"]),
        ({"executions": 11}, ["executions: Input should be less than or equal to 10"]),
        (
            {"output_file_name": "my score"},
            ["output_file_name: String should match pattern '^[A-Za-z0-9_-]{1,248}$'"],
        ),
        (
            {"output_file_name": "x" * 249},
            ["output_file_name: String should match pattern '^[A-Za-z0-9_-]{1,248}$'"],
        ),
        ({"tenant": "a b"}, ["tenant: String should match pattern '^[A-Za-z0-9._:-]+$'"]),
        ({"api_key": "k"}, ["api_key: unknown field"]),
        (
            {"plan_options": {"vocals": True}},
            ["plan_options.vocals: unknown field; did you mean with_vocals?"],
        ),
        (
            {"plan_options": {"multitrack": "zip"}},
            ["plan_options.multitrack: Input should be a valid boolean, unable to interpret input"],
        ),
        (
            {"plan_options": {"genre": "deep; drop"}},
            [BAD_GENRE],
        ),
        (
            {"plan_options": {"genre": ""}},
            [BAD_GENRE],
        ),
        (
            {"plan_options": {"genre": "g" * 65}},
            [BAD_GENRE],
        ),
        ({"plan_options": {"original_audio": True}}, [f"plan_options.original_audio: {NEEDS_KEEP}"]),
        (
            {"plan_options": {"original_audio": True, "original_audio_voiceover": True}},
            [
                f"plan_options.original_audio: {NEEDS_KEEP}",
                f"plan_options.original_audio_voiceover: {NEEDS_KEEP}",
            ],
        ),
        (
            {
                "keep_original_audio": True,
                "plan_options": {"original_audio": True, "original_audio_voiceover": True},
            },
            ["plan_options: give at most one of original_audio or original_audio_voiceover"],
        ),
    ],
)
def test_refusals_name_the_field(changes: dict[str, Any], expected: list[str]) -> None:
    assert problems(request(**changes)) == expected


def test_a_missing_video_is_named() -> None:
    assert problems({}) == ["video: Field required"]


ONE_FORM = "plan_edit: give exactly one of replace (a whole plan) or patch (JSON-patch operations)"


@pytest.mark.parametrize(
    ("plan_edit", "expected"),
    [
        ({}, [ONE_FORM]),
        ({"replace": None, "patch": None}, [ONE_FORM]),
        ({"replace": PLAN, "patch": [{"op": "remove", "path": "/id"}]}, [ONE_FORM]),
        ({"merge": {}}, ["plan_edit.merge: unknown field"]),
        ({"replace": []}, ["plan_edit.replace: Input should be a valid dictionary"]),
        ({"replace": {"id": "x"}}, ["plan_edit.replace.sections: must be a non-empty array"]),
        ({"replace": {"sections": []}}, ["plan_edit.replace.sections: must be a non-empty array"]),
        ({"replace": {"sections": {"0": {}}}}, ["plan_edit.replace.sections: must be a non-empty array"]),
        ({"patch": []}, ["plan_edit.patch: List should have at least 1 item after validation, not 0"]),
        (
            {"patch": [{"op": "test", "path": "", "value": 1}] * 101},
            ["plan_edit.patch: List should have at most 100 items after validation, not 101"],
        ),
        ({"patch": {"op": "remove", "path": "/id"}}, ["plan_edit.patch: Input should be a valid list"]),
        ({"patch": ["remove /id"]}, ["plan_edit.patch.0: Input should be a valid dictionary"]),
        ({"patch": [{"path": "/id"}]}, ["plan_edit.patch.0.op: Field required"]),
        (
            {"patch": [{"op": "delete", "path": "/id"}]},
            ["plan_edit.patch.0.op: must be one of add, remove, replace, move, copy, test"],
        ),
        (
            {"patch": [{"op": 1, "path": "/id"}]},
            ["plan_edit.patch.0.op: must be one of add, remove, replace, move, copy, test"],
        ),
        ({"patch": [{"op": "remove"}]}, ["plan_edit.patch.0.path: Field required"]),
        ({"patch": [{"op": "remove", "path": "id"}]}, [f"plan_edit.patch.0.path: {POINTER}"]),
        ({"patch": [{"op": "remove", "path": "/a~2b"}]}, [f"plan_edit.patch.0.path: {POINTER}"]),
        ({"patch": [{"op": "remove", "path": "/a~"}]}, [f"plan_edit.patch.0.path: {POINTER}"]),
        ({"patch": [{"op": "remove", "path": 3}]}, [f"plan_edit.patch.0.path: {POINTER}"]),
        ({"patch": [{"op": "add", "path": "/id"}]}, ["plan_edit.patch.0.value: Field required by add"]),
        (
            {"patch": [{"op": "replace", "path": "/id"}]},
            ["plan_edit.patch.0.value: Field required by replace"],
        ),
        ({"patch": [{"op": "test", "path": "/id"}]}, ["plan_edit.patch.0.value: Field required by test"]),
        ({"patch": [{"op": "move", "path": "/id"}]}, ["plan_edit.patch.0.from: Field required by move"]),
        ({"patch": [{"op": "copy", "path": "/id", "from": "id"}]}, [f"plan_edit.patch.0.from: {POINTER}"]),
        (
            {"patch": [{"op": "remove", "path": "/id", "value": 1, "xyz": 123}]},
            [
                "plan_edit.patch.0.value: not taken by remove",
                "plan_edit.patch.0.xyz: unknown field",
            ],
        ),
        (
            {"patch": [{"op": "add", "path": "/id", "value": 1, "from": "/x"}]},
            ["plan_edit.patch.0.from: not taken by add"],
        ),
        (
            {"patch": [{"op": "move", "from": "/sections", "path": "/sections/0"}]},
            ["plan_edit.patch.0.path: is inside from; a location cannot be moved into one of its children"],
        ),
        (
            {"patch": [{"op": "test", "path": "/id", "value": "x"}, {"op": "nop"}]},
            [
                "plan_edit.patch.1.op: must be one of add, remove, replace, move, copy, test",
                "plan_edit.patch.1.path: Field required",
            ],
        ),
        (
            {"replace": {"sections": ["x" * 1_000_000]}},
            ["plan_edit.replace: makes the request's JSON 1000378 bytes; the limit is 1000000"],
        ),
        (
            {"patch": [{"op": "add", "path": "/sections/-", "value": "x" * 1_000_000}]},
            ["plan_edit.patch: makes the request's JSON 1000407 bytes; the limit is 1000000"],
        ),
    ],
)
def test_plan_edit_refusals(plan_edit: dict[str, Any], expected: list[str]) -> None:
    assert problems(request(plan_edit=plan_edit)) == expected


def test_rfc_6902_ignores_unknown_members_but_submit_refuses_them() -> None:
    operation = {"op": "add", "path": "/baz", "value": "qux", "xyz": 123}  # RFC 6902 A.11
    assert apply_patch({"foo": "bar"}, [operation]) == {"foo": "bar", "baz": "qux"}
    assert problems(request(plan_edit=patch(operation))) == ["plan_edit.patch.0.xyz: unknown field"]


# --- keep_original_audio and the original-audio switches -------------------------------------------


@pytest.mark.parametrize(
    ("keep", "options", "original_audio", "original_audio_voiceover"),
    [
        (False, {}, False, False),
        (True, {}, True, False),  # keeping the audio lays it under the music unless told otherwise
        (True, {"original_audio": False}, True, False),
        (True, {"original_audio": True}, True, False),
        (True, {"original_audio_voiceover": True}, False, True),
        (True, {"original_audio_voiceover": True, "no_ducking": True}, False, True),
    ],
)
def test_keep_original_audio_rule(
    keep: bool, options: dict[str, Any], original_audio: bool, original_audio_voiceover: bool
) -> None:
    parsed = MusicRequest.model_validate(request(keep_original_audio=keep, plan_options=options))
    assert parsed.plan_options.original_audio is original_audio
    assert parsed.plan_options.original_audio_voiceover is original_audio_voiceover
    assert MusicRequest.model_validate_json(parsed.model_dump_json()) == parsed


def test_the_rule_also_holds_for_keyword_construction() -> None:
    parsed = MusicRequest(video=URL, keep_original_audio=True, plan_options=PlanOptions(genre=None))
    assert parsed.plan_options == PlanOptions(genre=None, original_audio=True)
    with pytest.raises(ValidationError):
        MusicRequest(video=URL, plan_options=PlanOptions(original_audio_voiceover=True))


# --- the plan the worker executes ------------------------------------------------------------------


def test_plan_to_execute() -> None:
    assert MusicRequest(video=URL).plan_to_execute(PLAN) == PLAN
    replaced = {"sections": [{"start": 0}]}
    assert (
        MusicRequest.model_validate(request(plan_edit={"replace": replaced})).plan_to_execute(PLAN)
        == replaced
    )
    edit = patch(
        {"op": "replace", "path": "/masterGain", "value": 55},
        {"op": "remove", "path": "/sections/1"},
        {"op": "add", "path": "/sections/0/key", "value": "Am"},
    )
    plan = MusicRequest.model_validate(request(plan_edit=edit)).plan_to_execute(PLAN)
    assert plan == {**PLAN, "masterGain": 55, "sections": [{"start": 0, "key": "Am"}]}
    assert PLAN["masterGain"] == 70
    assert len(PLAN["sections"]) == 2


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            patch(
                {"op": "test", "path": "/id", "value": PLAN["id"]},
                {"op": "remove", "path": "/fxstyle"},
                {"op": "replace", "path": "/sections/9", "value": {}},
            ),
            "plan_edit.patch.2: path /sections/9 does not exist",
        ),
        (
            patch({"op": "test", "path": "/masterGain", "value": 80}),
            "plan_edit.patch.0: test failed: path /masterGain does not hold the given value",
        ),
        (
            patch({"op": "replace", "path": "/sections", "value": []}),
            "plan.sections must be a non-empty array",
        ),
        (patch({"op": "remove", "path": "/sections"}), "plan.sections must be a non-empty array"),
    ],
)
def test_a_plan_edit_that_does_not_fit_fails_the_job(edit: dict[str, Any], message: str) -> None:
    parsed = MusicRequest.model_validate(request(plan_edit=edit))
    with pytest.raises(ValueError) as caught:
        parsed.plan_to_execute(PLAN)
    assert str(caught.value) == message


def test_a_generated_plan_is_checked_too() -> None:
    with pytest.raises(ValueError, match=r"^plan\.sections must be a non-empty array$"):
        MusicRequest(video=URL).plan_to_execute({"sections": []})


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (PLAN, None),
        ({"sections": [{}]}, None),
        ([{"sections": [{}]}], "plan must be an object"),
        (None, "plan must be an object"),
        ({}, "plan.sections must be a non-empty array"),
        ({"sections": []}, "plan.sections must be a non-empty array"),
        ({"sections": "intro"}, "plan.sections must be a non-empty array"),
    ],
)
def test_check_plan(plan: object, message: str | None) -> None:
    if message is None:
        check_plan(plan)
        return
    with pytest.raises(ValueError) as caught:
        check_plan(plan)
    assert str(caught.value) == message


# --- apply_patch: RFC 6902 appendix A, then copy, the root and the errors -------------------------


@pytest.mark.parametrize(
    ("document", "operations", "expected"),
    [
        pytest.param(
            {"foo": "bar"},
            [{"op": "add", "path": "/baz", "value": "qux"}],
            {"baz": "qux", "foo": "bar"},
            id="A.1 add an object member",
        ),
        pytest.param(
            {"foo": ["bar", "baz"]},
            [{"op": "add", "path": "/foo/1", "value": "qux"}],
            {"foo": ["bar", "qux", "baz"]},
            id="A.2 add an array element",
        ),
        pytest.param(
            {"baz": "qux", "foo": "bar"},
            [{"op": "remove", "path": "/baz"}],
            {"foo": "bar"},
            id="A.3 remove an object member",
        ),
        pytest.param(
            {"foo": ["bar", "qux", "baz"]},
            [{"op": "remove", "path": "/foo/1"}],
            {"foo": ["bar", "baz"]},
            id="A.4 remove an array element",
        ),
        pytest.param(
            {"baz": "qux", "foo": "bar"},
            [{"op": "replace", "path": "/baz", "value": "boo"}],
            {"baz": "boo", "foo": "bar"},
            id="A.5 replace a value",
        ),
        pytest.param(
            {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
            [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
            {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}},
            id="A.6 move a value",
        ),
        pytest.param(
            {"foo": ["all", "grass", "cows", "eat"]},
            [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
            {"foo": ["all", "cows", "eat", "grass"]},
            id="A.7 move an array element",
        ),
        pytest.param(
            {"baz": "qux", "foo": ["a", 2, "c"]},
            [{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}],
            {"baz": "qux", "foo": ["a", 2, "c"]},
            id="A.8 test a value: success",
        ),
        pytest.param(
            {"foo": "bar"},
            [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
            {"foo": "bar", "child": {"grandchild": {}}},
            id="A.10 add a nested member object",
        ),
        pytest.param(
            {"/": 9, "~1": 10},
            [{"op": "test", "path": "/~01", "value": 10}],
            {"/": 9, "~1": 10},
            id="A.14 ~ escape ordering",
        ),
        pytest.param(
            {"foo": ["bar"]},
            [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
            {"foo": ["bar", ["abc", "def"]]},
            id="A.16 add an array value",
        ),
        pytest.param(
            {"a/b": 1, "m~n": 2},
            [{"op": "replace", "path": "/a~1b", "value": 3}, {"op": "remove", "path": "/m~0n"}],
            {"a/b": 3},
            id="~1 and ~0 name / and ~",
        ),
        pytest.param(
            {"foo": {"bar": [1]}},
            [{"op": "copy", "from": "/foo/bar", "path": "/baz"}, {"op": "add", "path": "/baz/-", "value": 2}],
            {"foo": {"bar": [1]}, "baz": [1, 2]},
            id="copy is a deep copy",
        ),
        pytest.param(
            {"foo": [1, 2]},
            [{"op": "copy", "from": "/foo/0", "path": "/foo/-"}],
            {"foo": [1, 2, 1]},
            id="copy to the end of an array",
        ),
        pytest.param(
            {"foo": [1]},
            [{"op": "add", "path": "/foo/1", "value": 2}],
            {"foo": [1, 2]},
            id="add at index == length appends",
        ),
        pytest.param(
            {"foo": 1},
            [{"op": "add", "path": "/foo", "value": 2}],
            {"foo": 2},
            id="add to an existing member replaces it",
        ),
        pytest.param(
            {"foo": 1},
            [{"op": "add", "path": "", "value": {"bar": 2}}],
            {"bar": 2},
            id="add at the root replaces the document",
        ),
        pytest.param({"foo": 1}, [{"op": "replace", "path": "", "value": {}}], {}, id="replace the root"),
        pytest.param(
            {"foo": 1}, [{"op": "move", "from": "/foo", "path": "/foo"}], {"foo": 1}, id="move to itself"
        ),
        pytest.param({"": 1}, [{"op": "move", "from": "/", "path": "/x"}], {"x": 1}, id="the empty key"),
        pytest.param(
            {"n": 1.0, "b": False, "o": {"x": [None]}},
            [
                {"op": "test", "path": "/n", "value": 1},
                {"op": "test", "path": "/b", "value": False},
                {"op": "test", "path": "", "value": {"o": {"x": [None]}, "b": False, "n": 1}},
            ],
            {"n": 1.0, "b": False, "o": {"x": [None]}},
            id="test compares JSON values",
        ),
        pytest.param({"foo": 1}, [], {"foo": 1}, id="no operations"),
    ],
)
def test_apply_patch(document: dict[str, Any], operations: list[dict[str, Any]], expected: Any) -> None:
    assert apply_patch(document, operations) == expected


@pytest.mark.parametrize(
    ("document", "operations", "message"),
    [
        (
            {"baz": "qux"},
            [{"op": "test", "path": "/baz", "value": "bar"}],
            "patch.0: test failed: path /baz does not hold the given value",
        ),  # A.9
        (
            {"foo": "bar"},
            [{"op": "add", "path": "/baz/bat", "value": "qux"}],
            "patch.0: path /baz/bat does not exist",
        ),  # A.12
        (
            {"/": 9, "~1": 10},
            [{"op": "test", "path": "/~01", "value": "10"}],
            "patch.0: test failed: path /~01 does not hold the given value",
        ),  # A.15
        (
            {"b": True},
            [{"op": "test", "path": "/b", "value": 1}],
            "patch.0: test failed: path /b does not hold the given value",
        ),
        (
            {"n": 0},
            [{"op": "test", "path": "/n", "value": None}],
            "patch.0: test failed: path /n does not hold the given value",
        ),
        (
            {"o": {"a": 1}},
            [{"op": "test", "path": "/o", "value": {"a": 1, "b": 2}}],
            "patch.0: test failed: path /o does not hold the given value",
        ),
        (
            {"l": [1, 2]},
            [{"op": "test", "path": "/l", "value": [2, 1]}],
            "patch.0: test failed: path /l does not hold the given value",
        ),
        ({"foo": 1}, [{"op": "test", "path": "/bar", "value": 1}], "patch.0: path /bar does not exist"),
        ({"foo": 1}, [{"op": "remove", "path": "/bar"}], "patch.0: path /bar does not exist"),
        ({"foo": 1}, [{"op": "replace", "path": "/bar", "value": 2}], "patch.0: path /bar does not exist"),
        ({"foo": [1]}, [{"op": "remove", "path": "/foo/1"}], "patch.0: path /foo/1 does not exist"),
        ({"foo": [1]}, [{"op": "remove", "path": "/foo/-"}], "patch.0: path /foo/- does not exist"),
        ({"foo": [1, 2]}, [{"op": "remove", "path": "/foo/01"}], "patch.0: path /foo/01 does not exist"),
        ({"foo": [1]}, [{"op": "add", "path": "/foo/2", "value": 3}], "patch.0: path /foo/2 does not exist"),
        (
            {"foo": [1]},
            [{"op": "add", "path": "/foo/-1", "value": 3}],
            "patch.0: path /foo/-1 does not exist",
        ),
        (
            {"foo": 1},
            [{"op": "add", "path": "/foo/bar", "value": 3}],
            "patch.0: path /foo/bar does not exist",
        ),
        ({"foo": 1}, [{"op": "move", "from": "/bar", "path": "/baz"}], "patch.0: from /bar does not exist"),
        ({"foo": 1}, [{"op": "copy", "from": "/bar", "path": "/baz"}], "patch.0: from /bar does not exist"),
        ({"foo": 1}, [{"op": "copy", "from": "/foo", "path": "/a/b"}], "patch.0: path /a/b does not exist"),
        (
            {"foo": {}},
            [{"op": "move", "from": "/foo", "path": "/foo/bar"}],
            "patch.0: path: is inside from; a location cannot be moved into one of its children",
        ),
        (
            {"foo": 1},
            [{"op": "remove", "path": ""}],
            "patch.0: path '' is the whole document, which cannot be removed",
        ),
        (
            {"foo": 1},
            [{"op": "replace", "path": "", "value": [1]}],
            "patch.0: the document must stay a JSON object",
        ),
        (
            {"foo": 1},
            [{"op": "remove", "path": "/foo"}, {"op": "remove", "path": "/foo"}],
            "patch.1: path /foo does not exist",
        ),
        ({"foo": 1}, [{"op": "remove", "path": "foo"}], f"patch.0: path: {POINTER}"),
        ({"foo": 1}, [{"op": "add", "path": "/x"}], "patch.0: value: Field required by add"),
        (
            {"foo": 1},
            [{"op": "bogus", "path": "/x"}],
            "patch.0: op: must be one of add, remove, replace, move, copy, test",
        ),
        ({"foo": 1}, ["remove /foo"], "patch.0: an operation must be an object"),
    ],
)
def test_apply_patch_errors(document: dict[str, Any], operations: list[Any], message: str) -> None:
    with pytest.raises(PatchError) as caught:
        apply_patch(document, operations)
    assert str(caught.value) == message


def test_patch_errors_carry_the_operation() -> None:
    with pytest.raises(PatchError) as caught:
        apply_patch(
            {"a": 1}, [{"op": "test", "path": "/a", "value": 1}, {"op": "remove", "path": "/b"}], where="w"
        )
    assert (str(caught.value), caught.value.index, caught.value.problem) == (
        "w.1: path /b does not exist",
        1,
        "path /b does not exist",
    )
    assert isinstance(caught.value, ValueError)


def test_apply_patch_never_changes_its_inputs() -> None:
    document = {"foo": {"bar": [1, 2]}, "baz": "qux"}
    value = {"deep": [1]}
    operations: list[dict[str, Any]] = [
        {"op": "add", "path": "/foo/bar/-", "value": value},
        {"op": "replace", "path": "/baz", "value": value},
        {"op": "move", "from": "/foo/bar/0", "path": "/first"},
        {"op": "copy", "from": "/foo", "path": "/foo2"},
        {"op": "remove", "path": "/foo/bar/0"},
    ]
    before = copy.deepcopy((document, operations))
    result = apply_patch(document, operations)
    assert (document, operations) == before
    assert result == {
        "foo": {"bar": [{"deep": [1]}]},
        "baz": {"deep": [1]},
        "first": 1,
        "foo2": {"bar": [2, {"deep": [1]}]},
    }
    result["baz"]["deep"].append(2)
    result["foo2"]["bar"].append(3)
    assert value == {"deep": [1]}
    assert result["foo"]["bar"] == [{"deep": [1]}]


def test_a_failing_patch_leaves_the_document_as_it_was() -> None:
    document = {"foo": [1, 2]}
    with pytest.raises(PatchError):
        apply_patch(
            document, [{"op": "remove", "path": "/foo/0"}, {"op": "test", "path": "/foo/0", "value": 1}]
        )
    assert document == {"foo": [1, 2]}
