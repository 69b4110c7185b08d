"""genq's hand-built task messages are the messages Celery itself publishes to Redis."""

from __future__ import annotations

import base64
import json
from typing import Any

from celery import Celery
from kombu import Connection

from schemas.wire import task_message

VARYING = {"id", "root_id", "origin", "correlation_id", "delivery_tag", "reply_to", "ignore_result"}


def _celery_message(task: str, args: list[str], queue: str) -> dict[str, Any]:
    app = Celery("t", broker="memory://")
    app.conf.update(task_serializer="json", accept_content=["json"])
    with Connection("memory://") as conn:
        app.send_task(task, args=args, queue=queue, connection=conn)
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
