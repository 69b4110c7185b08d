"""genq's hand-built task messages are the messages Celery itself publishes to Redis."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from celery import Celery
from kombu import Connection

from schemas.wire import _ORIGIN, SENT_AT_HEADER, envelope, new_uuids, task_message, task_messages

# genq_sent_at: a send time, which Celery's messages carry only where genq's publish hook is connected.
VARYING = {"id", "root_id", "origin", "correlation_id", "delivery_tag", "reply_to", "ignore_result",
           "genq_sent_at"}  # fmt: skip


def _celery_message(task: str, args: list[Any], queue: str, **options: Any) -> dict[str, Any]:
    app = Celery("t", broker="memory://")
    app.conf.update(task_serializer="json", accept_content=["json"])
    with Connection("memory://") as conn:
        app.send_task(task, args=args, queue=queue, connection=conn, **options)
        channel = conn.default_channel
        raw = channel._get(queue)  # the in-memory transport keeps the message as published
    return json.loads(json.dumps(raw))


def _strip(message: dict[str, Any]) -> dict[str, Any]:
    headers = {k: v for k, v in message["headers"].items() if k not in VARYING}
    props = {k: v for k, v in message["properties"].items() if k not in VARYING}
    return {**message, "headers": headers, "properties": props}


def test_message_matches_celerys_own() -> None:
    ours = json.loads(task_message("genq.start", ["0123abc"], "syncso"))
    theirs = _celery_message("genq.start", ["0123abc"], "syncso")

    assert base64.b64decode(ours["body"]) == base64.b64decode(theirs["body"])
    assert _strip(ours) == _strip(theirs)
    assert ours["headers"]["id"] == ours["headers"]["root_id"] == ours["properties"]["correlation_id"]


def test_a_stage_runs_message_matches_celerys_own_with_its_root_parent_and_retries() -> None:
    """A run of a job's branch, the message every stage end, re-run and retry is built as."""
    run: dict[str, Any] = {"root_id": "root-1", "parent_id": "t-1", "retries": 3}
    ours = json.loads(task_message("genq.aimi.execute", ["0123abc", 2], "aimi", **run))
    theirs = _celery_message("genq.aimi.execute", ["0123abc", 2], "aimi", **run)
    assert base64.b64decode(ours["body"]) == base64.b64decode(theirs["body"])
    assert _strip(ours) == _strip(theirs)
    headers = ours["headers"]
    assert (headers["root_id"], headers["parent_id"], headers["retries"]) == ("root-1", "t-1", 3)
    assert headers["argsrepr"] == "['0123abc', 2]"
    assert headers["id"] == ours["properties"]["correlation_id"] not in ("root-1", "t-1")


def test_a_kept_message_carries_no_send_time() -> None:
    """A run kept in Redis until its time (parked, scheduled) is pushed later, at a time not known now."""
    kept = json.loads(task_message("genq.syncso.wait", ["j1"], "syncso", kept=True))
    sent = json.loads(task_message("genq.syncso.wait", ["j1"], "syncso"))
    assert kept["headers"][SENT_AT_HEADER] is None
    assert isinstance(sent["headers"][SENT_AT_HEADER], float)


def _as_before(text: str, task: str, args: list[str], queue: str) -> str:
    """The message ``task_message`` built, before it used a template, with ``text``'s ids and send time:
    a dict through json.dumps."""
    message = json.loads(text)
    task_id, delivery_tag = message["headers"]["id"], message["properties"]["delivery_tag"]
    headers = {"lang": "py", "task": task, "id": task_id, "shadow": None, "eta": None, "expires": None,
               "group": None, "group_index": None, "retries": 0, "timelimit": [None, None],
               "root_id": task_id, "parent_id": None, "argsrepr": repr(args), "kwargsrepr": "{}",
               "origin": _ORIGIN, "ignore_result": True, "replaced_task_nesting": 0,
               "stamped_headers": None, "stamps": {},
               SENT_AT_HEADER: message["headers"][SENT_AT_HEADER]}  # fmt: skip
    body = json.dumps([args, {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])
    before = json.loads(
        envelope(body.encode(), headers, queue, properties={"correlation_id": task_id, "reply_to": None})
    )
    before["properties"]["delivery_tag"] = delivery_tag
    return json.dumps(before)


@pytest.mark.parametrize(
    "args",
    [["01a22f80d4266f1507cd7f8cf8ee"], [], ["job-1", "syncso.create", "2"], ['it\'s "quoted"', "é\n\\"]],
)
def test_the_template_gives_the_text_json_dumps_gave(args: list[str]) -> None:
    ours = task_message("genq.start", args, "syncso")
    assert ours == _as_before(ours, "genq.start", args, "syncso")
    given = task_message("genq.start", args, "syncso", task_id="tid-1")
    assert json.loads(given)["headers"]["id"] == "tid-1"
    assert given == _as_before(given, "genq.start", args, "syncso")


def test_messages_made_at_once_are_each_celerys_message() -> None:
    calls = [(["a1"], "syncso"), (["b2"], "aistudios"), (["c3"], "syncso")]
    messages = task_messages("genq.start", calls)
    for text, (args, queue) in zip(messages, calls, strict=True):
        assert text == _as_before(text, "genq.start", args, queue)
        assert json.loads(base64.b64decode(json.loads(text)["body"]))[0] == args
    assert _strip(json.loads(messages[0])) == _strip(_celery_message("genq.start", ["a1"], "syncso"))
    ids = [(m["headers"]["id"], m["properties"]["delivery_tag"]) for m in map(json.loads, messages)]
    assert len({i for pair in ids for i in pair}) == 2 * len(messages)


def test_uuids_are_random_version_4_uuids() -> None:
    made = new_uuids(1000)
    assert len(set(made)) == 1000
    for text in made:
        parsed = uuid.UUID(text)
        assert (str(parsed), parsed.version, parsed.variant) == (text, 4, uuid.RFC_4122)
