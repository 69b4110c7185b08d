"""The worker's background loops outlive a bug in one of their passes."""

from __future__ import annotations

import threading

import pytest
import redis

from schemas.wire import task_message
from tests.conftest import until
from worker.background import keep_running
from worker.schedule import Mover


def test_a_mover_whose_pass_raised_a_bug_starts_again_and_moves_what_is_due(
    scratch: redis.Redis, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    mover = Mover(scratch, ["q"], max_sleep_s=0.05)
    move, failures = mover.schedule.move, []

    def broken_once(queues: list[str]) -> tuple[int, float | None]:
        if not failures:
            failures.append(1)
            raise ValueError("a bug in a pass")
        return move(queues)

    monkeypatch.setattr(mover.schedule, "move", broken_once)
    thread = threading.Thread(target=keep_running, args=(mover, 0.05), daemon=True)
    thread.start()
    try:
        until(lambda: failures == [1], 5, "the failing pass")
        mover.schedule.add("j1:genq.start", "q", task_message("genq.start", ["j1"], "q", task_id="t1"), 0)
        until(lambda: scratch.llen("q") == 1, 5, "the restarted mover to push the due run")
    finally:
        mover.stop()
        thread.join(timeout=5)
    assert not thread.is_alive()
    assert "mover failed; starting it again" in caplog.text


def test_a_stopped_loop_is_not_started_again(scratch: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    mover, runs = Mover(scratch, ["q"], max_sleep_s=0.05), []

    def fails() -> None:
        runs.append(1)
        mover.stop()
        raise ValueError("a bug while stopping")

    monkeypatch.setattr(mover, "run", fails)
    keep_running(mover, restart_s=0.01)
    assert runs == [1]
