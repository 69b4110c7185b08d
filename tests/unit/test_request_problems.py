"""How a refused request is said (``schemas/problems.py``): a missing or unknown ``kind`` lists the kinds,
and an unknown field, at any depth and in a pipeline's steps, names the closest known one as an unknown
``GENQ_`` setting does."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from genq.cli import main
from producers import InvalidRequest, validate
from schemas import LipsyncRequest, MusicRequest
from schemas.pipeline import PipelineRequest
from schemas.problems import closest, fields_at
from tests.conftest import AVATAR, LIPSYNC

MUSIC = {"kind": "music", "video": "https://x.test/v.mp4"}
KINDS = "one of lipsync, avatar, music, pipeline"
NO_REDIS = "redis://127.0.0.1:1/0"  # nothing listens: a refusal is decided before Redis is asked


def problems(request: Any) -> list[str]:
    with pytest.raises(InvalidRequest) as caught:
        validate(request, check_files=False)
    return caught.value.problems


def dub(**step: Any) -> dict[str, Any]:
    """A pipeline of one lipsync step, with ``step`` laid over it."""
    return {"kind": "pipeline", "steps": {"dub": {"request": dict(LIPSYNC), **step}}}


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        ({}, f"kind: missing; {KINDS}"),
        ({"model": "lipsync-2", "video": "https://x.test/v.mp4"}, f"kind: missing; {KINDS}"),
        ({"kind": None}, f"kind: missing; {KINDS}"),
        ({"kind": "karaoke"}, f"kind: 'karaoke' is unknown; {KINDS}"),
        ({"kind": 3}, f"kind: 3 is unknown; {KINDS}"),
        ({"kind": "lipsync_batch"}, "kind: 'lipsync_batch' is made by genq and cannot be submitted"),
    ],
)
def test_a_missing_or_unknown_kind_is_one_line_listing_the_kinds(request_: Any, expected: str) -> None:
    assert problems(request_) == [expected]


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        ({**LIPSYNC, "optons": {}}, "optons: unknown field; did you mean options?"),
        (
            {**LIPSYNC, "options": {"temprature": 0.5}},
            "options.temprature: unknown field; did you mean temperature?",
        ),
        (
            {**LIPSYNC, "options": {"active_speaker_detection": {"auto_detct": True}}},
            "options.active_speaker_detection.auto_detct: unknown field; did you mean auto_detect?",
        ),
        (
            {**LIPSYNC, "audio": None, "tracks": [{"ref_id": "a", "audoi": "https://x.test/a.wav"}]},
            "tracks.0.audoi: unknown field; did you mean audio?",
        ),
        ({**MUSIC, "executons": 2}, "executons: unknown field; did you mean executions?"),
        (
            {**MUSIC, "plan_options": {"multitrak": True}},
            "plan_options.multitrak: unknown field; did you mean multitrack?",
        ),
        (
            {**MUSIC, "plan_edit": {"patch": [{"op": "add", "pth": "/x", "value": 1}]}},
            "plan_edit.patch.0.pth: unknown field; did you mean path?",
        ),
        ({**AVATAR, "scrpt": "Hello."}, "scrpt: unknown field; did you mean script?"),
        ({**LIPSYNC, "api_key": "secret"}, "api_key: unknown field"),  # nothing is close: no guess
    ],
)
def test_an_unknown_field_names_the_closest_known_one_at_any_depth(
    request_: dict[str, Any], expected: str
) -> None:
    assert expected in problems(request_)


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        ({**dub(), "stepz": {}}, "stepz: unknown field; did you mean steps?"),
        ({**dub(), "on_falure": "continue"}, "on_falure: unknown field; did you mean on_failure?"),
        (dub(aftr=[]), "steps.dub.aftr: unknown field; did you mean after?"),
        (
            {"kind": "pipeline", "steps": {"dub": {"request": {**LIPSYNC, "vidoe": "https://x.test/v.mp4"}}}},
            "steps.dub.request.vidoe: unknown field; did you mean video?",
        ),
        (
            {"kind": "pipeline", "steps": {"dub": {"request": {**LIPSYNC, "options": {"temprature": 1}}}}},
            "steps.dub.request.options.temprature: unknown field; did you mean temperature?",
        ),
        (
            dub(for_each=[{"audoi": "https://x.test/fr.wav"}]),
            "steps.dub.for_each.0.audoi: unknown field; did you mean audio?",
        ),
        (
            {"kind": "pipeline", "steps": {"dub": {"request": {"model": "lipsync-2"}}}},
            "steps.dub.request.kind: missing; a step is one of lipsync, avatar, music",
        ),
        (
            {"kind": "pipeline", "steps": {"dub": {"request": {"kind": "pipeline"}}}},
            "steps.dub.request.kind: 'pipeline' cannot be a step; a step is one of lipsync, avatar, music",
        ),
    ],
)
def test_a_pipelines_fields_and_its_steps_requests_get_the_same_lines(
    request_: dict[str, Any], expected: str
) -> None:
    assert problems(request_) == [expected]


def test_the_known_names_at_a_place_follow_models_lists_dicts_and_aliases() -> None:
    assert "temperature" in fields_at(LipsyncRequest, ["options"])
    assert "audio" in fields_at(LipsyncRequest, ["tracks", 0])
    assert set(fields_at(PipelineRequest, ["steps", "dub"])) == {"request", "for_each", "after", "join"}
    assert "multitrack" in fields_at(MusicRequest, ["plan_options"])
    assert fields_at(LipsyncRequest, ["model"]) == []  # not an object: nothing to guess from
    assert closest("optons", ["options", "output_file_name"]) == "options"
    assert closest("zzz", ["options"]) is None


def test_genq_submit_prints_each_problem_on_its_own_line() -> None:
    request = '[{"model": "lipsync-2"}, {"kind": "music", "video": "https://x.test/v.mp4", "executons": 2}]'
    result = CliRunner().invoke(main, ["submit", "-", "--redis-url", NO_REDIS], input=request)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        f"invalid: [0] kind: missing; {KINDS}\n"
        "invalid: [1] executons: unknown field; did you mean executions?\n"
    )
