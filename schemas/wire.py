"""Celery task messages as the Redis transport stores them: the contract between whoever writes a
message into a queue list and the Celery workers that consume it.

The envelope is exactly what ``Celery.send_task`` LPUSHes onto a queue list (task protocol 2, JSON
body, base64 body encoding), so any Celery worker consumes it. Building it here instead of going
through kombu lets a producer write a job's record and its first message in one Redis transaction
(a submit is all or nothing) and pipeline thousands of submits in one round trip, and lets the
limiter keep a throttled stage's message in Redis and push it to its queue when a budget frees.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

_ORIGIN = f"genq-producer-{os.getpid()}@{socket.gethostname()}"
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def task_message(task: str, args: Sequence[str], queue: str, *, task_id: str | None = None) -> str:
    """The JSON text of a task message for ``task(*args)`` routed to ``queue``."""
    task_id = task_id or str(uuid.uuid4())
    body = json.dumps([list(args), {}, _EMBED]).encode()
    headers: dict[str, object] = {
        "lang": "py",
        "task": task,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": repr(list(args)),
        "kwargsrepr": "{}",
        "origin": _ORIGIN,
        "ignore_result": True,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    return envelope(body, headers, queue, properties={"correlation_id": task_id, "reply_to": None})


def envelope(body: bytes, headers: Mapping[str, Any], queue: str, *, properties: Mapping[str, Any]) -> str:
    """The JSON text kombu's Redis transport pushes for a JSON-serialized message routed to ``queue``."""
    message = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            **properties,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return json.dumps(message)
