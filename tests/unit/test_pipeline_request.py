"""A pipeline request is checked whole at submit, one line naming the field per problem, and nothing is
stored on refusal: its graph (unknown steps, cycles, fans, joins, references of the wrong kind, caps) and
each run's request as a request of its kind."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from producers import InvalidRequest, Producer
from schemas import JOB_REQUEST
from schemas.caps import Caps
from schemas.pipeline import Need, PipelineRequest
from tests.conftest import AVATAR

DUB = {"kind": "lipsync", "model": "lipsync-2", "video": {"from": "avatar"}}
ITEMS = [
    {"audio": f"https://x.test/{lang}.wav", "output_file_name": f"promo_{lang}"}
    for lang in ("fr", "de", "es")
]


def pipeline(steps: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"kind": "pipeline", "steps": steps, **fields}


DEMO = pipeline(
    {
        "avatar": {"request": AVATAR},
        "dub": {"request": DUB, "for_each": ITEMS},
        "score": {"request": {"kind": "music", "video": {"from": "dub"}}},
    },
    join={"at_least": 2},
    on_failure="continue",
)


def problems(request: dict[str, Any], caps: Caps | None = None) -> list[str]:
    parsed = JOB_REQUEST.validate_python(request)
    assert isinstance(parsed, PipelineRequest)
    return parsed.problems(caps or Caps())


def test_the_demo_pipeline_is_a_fan_of_three_branches_after_one_avatar() -> None:
    parsed = JOB_REQUEST.validate_python(DEMO)
    assert isinstance(parsed, PipelineRequest)
    shape = parsed.shape()
    assert problems(DEMO) == []
    assert shape.order == ["avatar", "dub", "score"]
    assert shape.all_nodes() == ["avatar", "dub[0]", "dub[1]", "dub[2]", "score[0]", "score[1]", "score[2]"]
    assert shape.leaves() == ["score"]
    assert shape.needs("dub", 2) == [Need("avatar", True)]
    assert shape.needs("score", 1) == [Need("dub[1]", True)]


def test_a_branch_gets_its_items_fields_and_the_pipelines_tenant() -> None:
    parsed = JOB_REQUEST.validate_python({**DEMO, "tenant": "acme"})
    assert isinstance(parsed, PipelineRequest)
    assert parsed.member("dub", 1) == {**DUB, **ITEMS[1], "tenant": "acme"}


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (
            {"a": {"request": {**DUB, "video": {"from": "b"}, "audio": "https://x.test/a.wav"}},
             "b": {"request": {"kind": "music", "video": {"from": "a"}}}},
            ["steps.a: a cycle: a → b → a"],
        ),
        (
            {"a": {"request": {**DUB, "video": {"from": "avtar"}, "audio": "https://x.test/a.wav"}}},
            ["steps.a.request: no step named 'avtar' (steps: a)"],
        ),
        (
            {"avatar": {"request": AVATAR}, "b": {"request": AVATAR, "after": ["nope"]}},
            ["steps.b.after: no step named 'nope' (steps: avatar, b)"],
        ),
        (
            {"avatar": {"request": AVATAR}, "b": {"request": {**DUB, "audio": {"from": "avatar"}}}},
            ["steps.b.request.audio: takes audio; step 'avatar' (avatar) gives a video"],
        ),
        (
            {"avatar": {"request": AVATAR}, "b": {"request": {**AVATAR, "script": {"from": "avatar"}}}},
            ["steps.b.request.script: takes no step's output (an avatar request takes one in none of its "
             "fields)"],
        ),
        (
            {"avatar": {"request": AVATAR},
             "m": {"request": {"kind": "music", "video": {"from": "avatar"},
                               "plan_options": {"multitrack": True}}},
             "d": {"request": {**DUB, "video": {"from": "m"}, "audio": "https://x.test/a.wav"}}},
            ["steps.d.request.video: takes video; step 'm' (music) gives a zip (plan_options.multitrack)"],
        ),
        (
            {"avatar": {"request": AVATAR},
             "d": {"request": {**DUB, "video": {"from": "avatar", "output": 1}, "audio": "https://x.test/a.wav"}}},
            ["steps.d.request.video: output 1 of step 'avatar', which gives 1 output"],
        ),
        (
            {"avatar": {"request": AVATAR}, "dub": {"request": DUB, "for_each": ITEMS},
             "again": {"request": {**DUB, "video": {"from": "dub"}}, "for_each": ITEMS}},
            ["steps.again.for_each: again already runs per branch of dub; fans do not nest"],
        ),
        (
            {"avatar": {"request": AVATAR}, "dub": {"request": DUB, "for_each": ITEMS},
             "all": {"request": {"kind": "music", "video": {"from": "dub"}}, "join": {"at_least": 2}}},
            ["steps.all.request.video: dub runs per branch; a step with a join runs once, not per branch"],
        ),
        (
            {"end": {"request": AVATAR}},
            ["steps.end: 'end' is the pipeline's own last step; name the step otherwise"],
        ),
    ],
)  # fmt: skip
def test_a_bad_graph_is_refused_with_a_line_naming_the_field(
    steps: dict[str, Any], expected: list[str]
) -> None:
    assert problems(pipeline(steps)) == expected


def test_each_runs_request_is_checked_as_a_request_of_its_kind() -> None:
    steps = {
        "avatar": {"request": AVATAR},
        "dub": {"request": {**DUB, "model": "lipsync-9"}, "for_each": [{"audio": "https://x.test/a.wav"},
                                                                       {"audio": "nope"}]},
        "solo": {"request": {**AVATAR, "tenant": "other"}},
    }  # fmt: skip
    assert problems(pipeline(steps)) == [  # in the graph's order: solo is ready at once, as avatar is
        "steps.solo.request.tenant: set tenant on the pipeline; each step's job takes the pipeline's",
        "steps.dub.request.model: Input should be 'lipsync-2', 'lipsync-2-pro', 'lipsync-1.9.0-beta', "
        "'react-1' or 'sync-3'",
        "steps.dub.for_each.1.audio: Value error, must be an http(s) URL or an absolute file path",
    ]


def test_joins_must_be_reachable() -> None:
    assert problems({**DEMO, "join": {"at_least": 4}}) == [
        "join.at_least: 4, but the pipeline ends in 3 run(s) (score[0], score[1], score[2])"
    ]


def test_more_steps_or_runs_than_the_caps_are_refused() -> None:
    caps = Caps(max_pipeline_steps=2, max_pipeline_jobs=5)
    assert problems(DEMO, caps) == [
        "steps: 3 steps; at most 2 (GENQ_CAPS__MAX_PIPELINE_STEPS)",
        "pipeline: 7 runs of steps; at most 5 (GENQ_CAPS__MAX_PIPELINE_JOBS)",
    ]


def test_a_refused_pipeline_stores_nothing(scratch_url: str, scratch: redis.Redis) -> None:
    before = scratch.dbsize()
    bad = pipeline({"a": {"request": {**DUB, "video": {"from": "a"}, "audio": "https://x.test/a.wav"}}})
    with pytest.raises(InvalidRequest) as refused:
        Producer(scratch_url).submit(bad)
    assert refused.value.problems == ["steps.a: a cycle: a → a"]
    assert scratch.dbsize() == before


def test_a_producer_refuses_a_step_output_reference_given_directly(scratch_url: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        Producer(scratch_url).submit(
            {**DUB, "video": "output:s3://bucket/k.mp4", "audio": "https://x.test/a.wav"}
        )
    assert refused.value.problems == [
        "video: output:s3://bucket/k.mp4 is a pipeline step's output; in a pipeline, a step takes one as "
        '{"from": "<step>"}'
    ]
