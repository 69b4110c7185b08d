"""A parked stage's message is the message Celery's own retry would send: same chain, same root."""

from __future__ import annotations

import base64
import json

from celery import Celery

from worker.parking import rerun_message


def test_the_rerun_message_keeps_the_chain_and_the_root() -> None:
    app = Celery("t", broker="memory://")
    app.conf.update(task_serializer="json", accept_content=["json"], task_ignore_result=True)

    @app.task(bind=True, name="genq.syncso.create", shared=False)  # not added to every app made later
    def create(self, job_id: str) -> None:  # pragma: no cover (never run)
        pass

    rest = [{"task": "genq.syncso.download", "args": ["j1"], "kwargs": {}, "options": {},
             "subtask_type": None, "immutable": True}]  # fmt: skip
    create.push_request(id="t-1", root_id="root-1", args=["j1"], kwargs={}, chain=rest,
                        delivery_info={"exchange": "", "routing_key": "syncso"})  # fmt: skip
    try:
        queue, text = rerun_message(create, ("j1",))
    finally:
        create.pop_request()

    message = json.loads(text)
    args, kwargs, embed = json.loads(base64.b64decode(message["body"]))
    assert queue == "syncso" == message["properties"]["delivery_info"]["routing_key"]
    assert (args, kwargs) == (["j1"], {})
    assert embed["chain"] == rest
    headers = message["headers"]
    assert headers["task"] == "genq.syncso.create"
    assert headers["root_id"] == "root-1"
    assert headers["id"] == message["properties"]["correlation_id"] != "t-1"  # a run of its own
    assert headers["parent_id"] == "t-1"  # ... linked to the run before
    assert headers["argsrepr"] == "('j1',)"
    assert headers["eta"] is None  # delays wait in the Redis-side schedule, not in a worker


def test_a_retry_run_counts_one_more_retry() -> None:
    app = Celery("t", broker="memory://")
    app.conf.update(task_serializer="json", accept_content=["json"], task_ignore_result=True)

    @app.task(bind=True, name="genq.syncso.wait", shared=False)
    def wait(self, job_id: str) -> None:  # pragma: no cover (never run)
        pass

    wait.push_request(
        id="t-2", args=["j1"], kwargs={}, retries=2, delivery_info={"exchange": "", "routing_key": "syncso"}
    )
    try:
        _, again = rerun_message(wait, ("j1",))
        _, retry = rerun_message(wait, ("j1",), retries=3)
    finally:
        wait.pop_request()
    assert json.loads(again)["headers"]["retries"] == 2
    assert json.loads(retry)["headers"]["retries"] == 3
