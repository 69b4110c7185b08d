"""Celery task messages as the Redis transport stores them: the contract between whoever writes a
message into a queue list and the Celery workers that consume it.

The envelope is exactly what ``Celery.send_task`` LPUSHes onto a queue list (task protocol 2, JSON
body, base64 body encoding), so any Celery worker consumes it. Building it here instead of going
through kombu lets a producer write a job's record and its first message in one Lua script (a submit
is all or nothing), hundreds of jobs per call; lets a stage's end record its state and push the next
stage's message in one Lua step (worker/stage.py); and lets the limiter, the schedule and parked waits
keep a stage's message in Redis and push it to its queue when its time comes. Every message genq
writes is built here, and a test holds it to Celery's own.

``task_message`` and ``task_messages`` are on the producer's hot path (one message per submitted job):
they fill in a JSON text made once per task and queue, which is ``envelope``'s text with its
per-message values cut out, instead of encoding a whole dict per message.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any

_ORIGIN = f"genq-producer-{os.getpid()}@{socket.gethostname()}"
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
# When a message was pushed onto its queue (Unix seconds, a float): genq's own messages carry it, and the
# workers' ``before_task_publish`` hook (worker/metrics.py) sets it on every message Celery publishes, so
# ``genq metrics`` can tell the age of a queue's oldest message. A run kept in Redis for later (parked,
# scheduled) carries none (null): when it will be pushed is not known when it is built.
SENT_AT_HEADER = "genq_sent_at"
_BODY_TAIL = json.dumps([None, {}, _EMBED]).removeprefix("[null")  # what follows the args: `, {}, {…}]`
# Arguments that JSON and repr() both write as themselves between quotes (job ids, among others).
_PLAIN = re.compile(r"[A-Za-z0-9_.:-]*")
# The per-message values of a task message, in the order they appear in its JSON text.
_SLOTS = (
    "body", "id", "retries", "root_id", "parent_id", "argsrepr", "sent_at", "correlation_id", "delivery_tag"
)  # fmt: skip
# A version 4 UUID's variant nibble (binary 10xx) for each hex digit of random bits.
_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}


def new_uuid() -> str:
    """A random (version 4) UUID as text, like ``str(uuid.uuid4())`` at a fraction of its cost."""
    return new_uuids(1)[0]


def new_uuids(count: int) -> list[str]:
    """``count`` random (version 4) UUIDs as text, from one draw of the system's randomness."""
    x = os.urandom(16 * count).hex()
    return [
        f"{x[i : i + 8]}-{x[i + 8 : i + 12]}-4{x[i + 13 : i + 16]}-{_VARIANT[x[i + 16]]}{x[i + 17 : i + 20]}-"
        f"{x[i + 20 : i + 32]}"
        for i in range(0, 32 * count, 32)
    ]


def task_message(
    task: str,
    args: Sequence[str | int],
    queue: str,
    *,
    task_id: str | None = None,
    root_id: str | None = None,
    parent_id: str | None = None,
    retries: int = 0,
    kept: bool = False,
) -> str:
    """The JSON text of a task message for ``task(*args)`` routed to ``queue``: the one builder of every
    message genq writes, a job's first and every stage run after it. A run of a job carries the job's
    ``root_id`` and the run before it as ``parent_id`` (Flower groups a job's runs under its root);
    ``retries`` counts the retries it is. ``kept``: it waits in Redis before it is pushed (a parked or
    scheduled run), so it carries no send time."""
    return _messages(task, [(args, queue)], task_id, root_id, parent_id, retries, kept)[0]


def task_messages(task: str, calls: Sequence[tuple[Sequence[str], str]]) -> list[str]:
    """``task_message(task, args, queue)`` for each ``(args, queue)`` of ``calls``, made at once."""
    return _messages(task, calls)


def _messages(  # noqa: PLR0917 (the hot path: no keyword handling per message)
    task: str,
    calls: Sequence[tuple[Sequence[str | int], str]],
    task_id: str | None = None,
    root_id: str | None = None,
    parent_id: str | None = None,
    retries: int = 0,
    kept: bool = False,
) -> list[str]:
    uuids, sent_at = new_uuids(2 * len(calls)), "null" if kept else repr(time.time())
    parent, retried = json.dumps(parent_id), str(int(retries))
    messages = []
    for i, (args, queue) in enumerate(calls):
        if len(args) == 1 and isinstance(args[0], str) and _PLAIN.fullmatch(args[0]):  # the hot path
            args_json, argsrepr = f'["{args[0]}"]', f"\"['{args[0]}']\""
        elif all(isinstance(a, str) and _PLAIN.fullmatch(a) for a in args):
            args_json = '["' + '", "'.join(map(str, args)) + '"]' if args else "[]"
            argsrepr = "\"['" + "', '".join(map(str, args)) + "']\"" if args else '"[]"'
        else:
            args_json, argsrepr = json.dumps(list(args)), json.dumps(repr(list(args)))
        body = base64.b64encode(f"[{args_json}{_BODY_TAIL}".encode()).decode()
        p = _message_parts(task, queue)
        tid, tag = task_id or uuids[2 * i], uuids[2 * i + 1]
        root = root_id or tid
        values = (body, tid, retried, root, parent, argsrepr, sent_at, tid, tag)
        messages.append("".join(part for pair in zip(p, (*values, ""), strict=True) for part in pair))
    return messages


@functools.lru_cache(maxsize=256)
def _message_parts(task: str, queue: str) -> tuple[str, ...]:
    """The JSON text of a message of ``task`` to ``queue``, cut at each of ``_SLOTS``. ``retries``,
    ``parent_id``, ``argsrepr`` and ``sent_at`` are cut with their quotes (they are filled in as JSON
    text); the others are plain text inside quotes."""
    nonce = os.urandom(8).hex()
    marks = {slot: f"<{slot}:{nonce}>" for slot in _SLOTS}
    headers: dict[str, Any] = {
        "lang": "py",
        "task": task,
        "id": marks["id"],
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": marks["retries"],
        "timelimit": [None, None],
        "root_id": marks["root_id"],
        "parent_id": marks["parent_id"],
        "argsrepr": marks["argsrepr"],
        "kwargsrepr": "{}",
        "origin": _ORIGIN,
        "ignore_result": True,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
        SENT_AT_HEADER: marks["sent_at"],
    }
    properties = {"correlation_id": marks["correlation_id"], "reply_to": None}
    text = _envelope_text(marks["body"], headers, queue, properties, marks["delivery_tag"])
    for bare in ("retries", "parent_id", "argsrepr", "sent_at"):
        text = text.replace(json.dumps(marks[bare]), marks[bare])
    cut = re.compile("|".join(re.escape(mark) for mark in marks.values()))
    if [m.group() for m in cut.finditer(text)] != list(marks.values()):
        raise AssertionError(f"the message of {task!r} to {queue!r} does not hold each slot once, in order")
    return tuple(cut.split(text))


def envelope(body: bytes, headers: Mapping[str, Any], queue: str, *, properties: Mapping[str, Any]) -> str:
    """The JSON text kombu's Redis transport pushes for a JSON-serialized message routed to ``queue``."""
    return _envelope_text(base64.b64encode(body).decode(), headers, queue, properties, new_uuid())


def _envelope_text(
    body: str, headers: Mapping[str, Any], queue: str, properties: Mapping[str, Any], delivery_tag: str
) -> str:
    message = {
        "body": body,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            **properties,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": delivery_tag,
        },
    }
    return json.dumps(message)
