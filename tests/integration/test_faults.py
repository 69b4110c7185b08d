"""Faults survived (the scenarios of ``bench/faults.py``, asserted): a fault storm from the simulator over
200 jobs, Redis SIGKILLed mid-run and restarted from its AOF, and a worker SIGKILLed during each kind of
lipsync stage. In each: every job ends and succeeds, none is lost, and no job gets a second generation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.faults import Outcome, redis_restart, simulator, storm, worker_kills
from simulators.server import SimulatorServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with simulator() as server:
        yield server


def assert_nothing_lost_or_doubled(outcome: Outcome, *, writes_lost: bool = False) -> None:
    """Every job succeeded with one generation, and none was ever left running with no message: none
    was found so during the run (unless Redis lost writes: then the reconciler repaired each it found,
    and every repair is counted) and none is at the end."""
    assert (outcome.succeeded, outcome.failed, outcome.lost) == (outcome.jobs, 0, 0), outcome
    assert outcome.duplicate_generations == 0, outcome
    assert outcome.generations == outcome.jobs, outcome
    assert outcome.orphans_at_end == set(), outcome
    if not writes_lost:
        assert (outcome.orphaned, outcome.repairs.get("message", 0)) == (set(), 0), outcome
    else:
        assert len(outcome.orphaned) <= outcome.repairs.get("message", 0), outcome


@pytest.mark.timeout(300)  # the scenario's own deadline is 240 s
def test_a_fault_storm_over_200_jobs_every_job_succeeds_with_one_generation(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    outcome = storm(sim, tmp_path, jobs=200)
    assert_nothing_lost_or_doubled(outcome)
    assert outcome.jobs == 200
    struck = outcome.struck  # the storm did strike, with every kind
    assert (
        min(struck["5xx"], struck["429_rate"], struck["429_concurrency"], struck["timeout"], struck["drop"])
        > 0
    )


@pytest.mark.quiet  # under load more of the workers' last second is lost with the AOF
def test_redis_sigkilled_mid_run_and_restarted_from_its_aof_every_job_ends_within_30_s_with_one_generation(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    outcome = redis_restart(sim, tmp_path, jobs=60, timeout_s=30)
    assert_nothing_lost_or_doubled(outcome, writes_lost=True)
    # Every job ended within 30 s of Redis answering again: the reconciler freed the slots whose release
    # the AOF lost and put back the messages no worker held, rather than waiting out the pool lease.
    assert outcome.recovery_s is not None and outcome.recovery_s <= 30, outcome


@pytest.mark.timeout(600)  # five kill points, each with a 90 s deadline
def test_a_worker_sigkilled_during_each_kind_of_stage_loses_no_job_and_doubles_no_generation(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    outcome = worker_kills(sim, tmp_path)
    assert_nothing_lost_or_doubled(outcome)
    assert all("killed while held, succeeded" in note for note in outcome.notes), outcome.notes
    # Create-once is genq's, not the simulator's: a job whose worker died after its create sends it again
    # with the same key (replayed: one create, one replay), and a job killed at any other stage never
    # sends it twice, since it resumes from the generation id it recorded.
    assert outcome.creates == {
        "upload": (1, 0),
        "estimate": (1, 0),
        "create": (2, 1),
        "wait": (1, 0),
        "download": (1, 0),
    }
