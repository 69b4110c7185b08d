"""The message that runs a task again, built the way Celery's own ``Task.retry`` builds it (same chain
continuation, chord and group membership, root id), but kept instead of sent: a parked stage's message
waits in the limiter, which pushes it onto its queue when a slot frees."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Task
from kombu.serialization import dumps

from schemas.wire import envelope


class _Capture:
    """Stands in for a kombu producer: keeps what Celery would publish. Only the first publish is the
    task; a second one would be its task-sent event, which a parked task should not send."""

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
    countdown_s: float | None = None,
) -> tuple[str, str]:
    """(queue, message) that runs ``task`` again with ``args`` in its canvas, after ``countdown_s``."""
    capture = _Capture()
    signature = task.signature_from_request(task.request, args=args, kwargs={})
    if countdown_s:
        signature.set(countdown=countdown_s)
    signature.apply_async(producer=capture)  # type: ignore[arg-type]
    assert capture.published is not None
    body, options = capture.published
    _, _, data = dumps(body, serializer="json")
    queue = str(options["routing_key"])
    properties = {"correlation_id": options.get("correlation_id"), "reply_to": options.get("reply_to")}
    payload = data.encode() if isinstance(data, str) else bytes(data)
    return queue, envelope(payload, options["headers"], queue, properties=properties)
