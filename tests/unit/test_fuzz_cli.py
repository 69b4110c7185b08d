"""Property-based tests of ``genq submit``'s input edge, without Redis: whatever text arrives on stdin is
either accepted (exit 0, one id per request, and each stored request is the one given, as it reads
back) or refused with exit 2 and nothing but ``invalid: <where>: <problem>`` lines: never a traceback.

The Producer behind the command is the real one with only its Redis write replaced: it checks each
request as it always does (local files included: every local path here is absent) and keeps the JSON it
would store.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any
from unittest import mock

import pytest
import redis
from click.testing import CliRunner, Result
from hypothesis import given
from hypothesis import strategies as st

from genq.cli import main
from producers import InvalidRequest, Producer, validate
from producers.cli import parse_requests
from producers.producer import new_job_id
from tests.unit.test_fuzz_requests import FUZZ, JSON, REQUESTS

UNREACHABLE = "redis://127.0.0.1:1/0"  # never dialled: the stand-in answers instead
JOB_ID = re.compile(r"^[0-9a-f]{28}$")
LINE = re.compile(r"^invalid: (nothing to submit|\S.*?: .+)$")


class StandInProducer(Producer):
    """The real ``Producer`` (its validation included) with only Redis replaced: what it would store goes
    into ``stored``, and every provider has a worker (no warning)."""

    def __init__(self) -> None:
        super().__init__(client=redis.Redis.from_url(UNREACHABLE))  # never dialled
        self.stored: dict[str, str] = {}  # job id -> the request JSON its record would hold

    def _store(self, requests: Sequence[Any]) -> list[str]:  # each request valid, with its JSON
        ids = [new_job_id() for _ in requests]
        self.stored |= {job_id: valid.json for job_id, valid in zip(ids, requests, strict=True)}
        return ids

    def unserved(self, requests: Any) -> dict[str, tuple[str, ...]]:
        return {}


def submit(text: str) -> tuple[Result, StandInProducer]:
    producer = StandInProducer()
    with mock.patch("producers.cli.Producer", lambda url, **options: producer):
        result = CliRunner().invoke(main, ["submit", "-", "--redis-url", UNREACHABLE], input=text)
    return result, producer


def check_submission(text: str) -> None:
    result, producer = submit(text)
    assert result.exit_code in (0, 2), (result.exit_code, result.output, result.exc_info)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    if result.exit_code == 2:
        lines = result.stderr.splitlines()
        assert lines and all(LINE.match(line) for line in lines), result.stderr
        assert result.stdout == ""
        assert not producer.stored
        return
    items = parse_requests(text)
    ids = result.stdout.splitlines()
    assert len(ids) == len(items) == len(producer.stored)
    assert all(JOB_ID.match(job_id) for job_id in ids)
    for job_id, item in zip(ids, items, strict=True):
        stored = producer.stored[job_id]
        assert validate(json.loads(stored), check_files=False) == validate(item, check_files=False)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def json_lines(values: list[Any]) -> str:
    return "\n".join(_dumps(v) for v in values)


TEXTS = st.one_of(
    REQUESTS.map(_dumps),  # one object
    st.lists(REQUESTS, min_size=1, max_size=4).map(_dumps),  # an array of them
    st.lists(REQUESTS, min_size=1, max_size=4).map(json_lines),  # JSON lines
    JSON.map(_dumps),  # any JSON: scalars, arrays of anything, nested arrays
    st.lists(JSON, max_size=3).map(json_lines),
    st.text(max_size=60),  # mostly not JSON
    st.sampled_from(
        ["", " ", "\n\n", "[]", "[ ]", "{}", "NaN", "[1e999]", '"\\ud800"', "[[{}]]", "{" * 5000]
    ),
    REQUESTS.map(lambda r: _dumps(r)[:-1]),  # cut short
)


@FUZZ
@given(TEXTS)
@pytest.mark.slow
def test_submit_accepts_and_stores_each_request_or_refuses_with_located_lines(text: str) -> None:
    check_submission(text)


@FUZZ
@given(st.one_of(TEXTS, st.text(), st.binary().map(lambda b: b.decode("utf-8", "surrogateescape"))))
@pytest.mark.slow
def test_parsing_returns_objects_or_raises_invalid_request_only(text: str) -> None:
    try:
        items = parse_requests(text)
    except InvalidRequest as exc:
        assert exc.problems and all(problem and "\n" not in problem for problem in exc.problems)
        return
    assert items and all(isinstance(item, dict) for item in items)
