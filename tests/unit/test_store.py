"""A job's failure is one step: its error, its status and its dead-letter entry appear together, and a job
that has ended already is left as it was; a claimed provider id is recorded in the same step; a replay
drops genq's own wait timeouts in its one step (on the session Redis's scratch database)."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from producers import Producer
from schemas import JobError, JobStatus
from schemas import layout as L
from tests.conftest import LIPSYNC
from worker.store import JobStore
from worker.waits import WaitResult, Waits


def _error(message: str) -> JobError:
    return JobError(stage="create", message=message, code="genq_internal_error")


def commands_sent(monkeypatch: pytest.MonkeyPatch, client: redis.Redis) -> list[str]:
    """The names of the commands ``client`` sends from now until ``monkeypatch.undo()``."""
    sent: list[str] = []
    execute = client.execute_command

    def counted(*args: Any, **options: Any) -> Any:
        sent.append(str(args[0]))
        return execute(*args, **options)

    monkeypatch.setattr(client, "execute_command", counted)
    return sent


def _dead(client: redis.Redis) -> set[str]:
    return {L.text(member) for member in client.zrange(L.DEAD_LETTERS, 0, -1)}


def test_a_failure_writes_its_error_status_and_dead_letter_entry_in_one_step(
    scratch_url: str, scratch: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    producer = Producer(scratch_url)
    warm, job_id = producer.submit(LIPSYNC), producer.submit(LIPSYNC)
    store = JobStore(scratch)
    store.fail(warm, _error("loads the script"))
    sent = commands_sent(monkeypatch, scratch)
    store.fail(job_id, _error("boom"), dead_letter=True)
    assert sent == ["EVALSHA"]  # one command, so nobody sees the status without the error or the entry
    monkeypatch.undo()
    record = store.get(job_id)
    assert (record.status, record.error) == (JobStatus.FAILED, _error("boom"))
    assert _dead(scratch) == {job_id}


def test_a_job_that_ended_keeps_its_first_error_and_is_not_dead_lettered_later(
    scratch_url: str, scratch: redis.Redis
) -> None:
    producer = Producer(scratch_url)
    failed, cancelled = producer.submit(LIPSYNC), producer.submit(LIPSYNC)
    store = JobStore(scratch)
    store.fail(failed, _error("first"))
    producer.cancel(cancelled)

    store.fail(failed, _error("second"), dead_letter=True)  # e.g. a second branch failing
    store.fail(cancelled, _error("late"), dead_letter=True)  # a stage that ran on after the cancel

    assert store.get(failed).error == _error("first")
    assert (store.get(cancelled).status, store.get(cancelled).error) == (JobStatus.CANCELLED, None)
    assert _dead(scratch) == set()


def test_a_claim_records_the_id_in_the_same_step_and_a_claimed_id_is_not_taken_again(
    scratch_url: str, scratch: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    producer = Producer(scratch_url)
    ours, theirs = producer.submit(LIPSYNC), producer.submit(LIPSYNC)
    store = JobStore(scratch)
    store.claim("syncso.batch", "warm", job_id=ours, name="warm")  # loads the script
    sent = commands_sent(monkeypatch, scratch)
    assert store.claim("syncso.batch", "batch_1", job_id=ours, name="batch") == "batch_1"
    assert sent == ["EVALSHA"]  # one command: no crash leaves the id claimed but unrecorded
    monkeypatch.undo()
    assert store.claim("syncso.batch", "batch_1", job_id=theirs, name="batch") is None
    assert store.get(ours).provider_ids["batch"] == "batch_1"
    assert "batch" not in store.get(theirs).provider_ids
    assert scratch.smembers(L.CLAIMED_KEY.format(kind="syncso.batch")) == {b"warm", b"batch_1"}


def test_a_replay_drops_its_jobs_wait_timeouts_in_its_one_step_and_keeps_real_ends(
    scratch_url: str, scratch: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    producer, store, waits = Producer(scratch_url), JobStore(scratch), Waits(scratch)
    warm, job_id = producer.submit(LIPSYNC), producer.submit(LIPSYNC)
    store.fail(warm, _error("loads the script"))
    producer.replay(warm)
    store.record_provider_id(job_id, "generation", "gen-late")
    store.record_provider_id(job_id, "earlier", "gen-done")
    timeout, ended = WaitResult(state="timeout", source="sweep"), WaitResult(state="ended", source="sweep")
    waits.resolve("syncso", "gen-late", timeout)  # nothing parked: the end is recorded all the same
    waits.resolve("syncso", "gen-done", ended)
    waits.resolve("aistudios", "gen-late", timeout)  # another provider's id: not this job's
    store.fail(job_id, JobError(stage="wait", message="still running", code="genq_wait_timeout"))
    sent = commands_sent(monkeypatch, producer.redis)
    producer.replay(job_id)
    assert sent.count("EVALSHA") == 1 and "DEL" not in sent  # the timeout goes in the replay's one step
    monkeypatch.undo()
    assert store.get(job_id).status is JobStatus.QUEUED
    assert waits.result("syncso", "gen-late") is None  # the replayed wait follows the generation again
    assert waits.result("syncso", "gen-done") == ended  # a finished one is downloaded, not made again
    assert waits.result("aistudios", "gen-late") == timeout
