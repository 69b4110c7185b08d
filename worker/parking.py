"""The message of a stage's next run, built the way Celery's own ``Task.retry`` builds it (same chain
continuation, chord and group membership, root id), but kept instead of sent: it waits in the
limiter, the schedule or a parked wait, which push it onto its queue when its time comes.

Each run is a task of its own (a new task id, whose parent is the run before), so Flower shows every
run as one row that ends in a final state instead of one row re-used by every run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Task
from celery.canvas import Signature, _chain
from celery.utils import uuid
from kombu.serialization import dumps

from schemas.wire import SENT_AT_HEADER, envelope


class _Capture:
    """Stands in for a kombu producer: keeps what Celery would publish. Only the first publish is the
    task; a second one would be its task-sent event, which a kept message should not send."""

    def __init__(self) -> None:
        self.published: tuple[Any, dict[str, Any]] | None = None
        self.connection = self

    @contextmanager
    def _reraise_as_library_errors(self) -> Iterator[None]:
        yield

    def publish(self, body: Any, **options: Any) -> None:
        if self.published is None:
            self.published = (body, options)


def rerun_message(
    task: Task,  # type: ignore[type-arg]
    args: tuple[Any, ...],
    *,
    retries: int | None = None,
) -> tuple[str, str]:
    """(queue, message) that runs ``task`` again with ``args`` in its canvas, as a new task whose parent
    is the running one; ``retries`` counts the retry it is (default: as many as this run's)."""
    signature = task.signature_from_request(task.request, args=args, kwargs={})
    options: dict[str, Any] = {"task_id": uuid(), "parent_id": task.request.id}
    if retries is not None:
        options["retries"] = retries
    signature.set(**options)
    return captured_message(signature, kept=True)


def captured_message(signature: Signature, *, kept: bool = False) -> tuple[str, str]:
    """(queue, message) that ``signature.apply_async()`` would publish (its first task, with the rest
    of its canvas embedded), kept instead of sent. ``kept``: it waits in Redis before it is pushed, so
    it carries no send time (``SENT_AT_HEADER``)."""
    capture = _Capture()
    if isinstance(signature, _chain):
        # A chain's apply_async does not pass a producer on to its first task: prepare it as
        # ``_chain.run`` does (the rest of the chain, reversed, goes in the first task's ``chain``).
        tasks, _ = signature.prepare_steps((), {}, list(signature.tasks), app=signature.app)
        first = tasks.pop()
        first.apply_async(producer=capture, **({"chain": tasks} if tasks else {}))
    else:
        signature.apply_async(producer=capture)  # type: ignore[arg-type]
    assert capture.published is not None
    body, options = capture.published
    _, _, data = dumps(body, serializer="json")
    queue = str(options["routing_key"])
    properties = {"correlation_id": options.get("correlation_id"), "reply_to": options.get("reply_to")}
    payload = data.encode() if isinstance(data, str) else bytes(data)
    headers = options["headers"]
    if kept:
        headers.pop(SENT_AT_HEADER, None)
    return queue, envelope(payload, headers, queue, properties=properties)
