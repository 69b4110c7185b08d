"""A JOB_ID that no job could have (``new_job_id``'s form: 28 lowercase hex) is refused as malformed, in one
line and before Redis is asked, and told apart from a well-formed id that no record has."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from genq.cli import main
from producers.producer import is_job_id, new_job_id

JOB = "019a2b3c4d5e6f708192a3b4c5d6"
NO_REDIS = "redis://127.0.0.1:1/0"  # nothing listens there
MALFORMED = ["nope", JOB[:-1], JOB + "0", JOB.upper(), JOB[:-1] + "g", f" {JOB}"]


def test_every_id_genq_makes_is_well_formed() -> None:
    assert is_job_id(new_job_id()) and is_job_id(JOB)
    assert not any(is_job_id(text) for text in MALFORMED)


@pytest.mark.parametrize("command", ["status", "watch", "cancel", "replay", "get"])
@pytest.mark.parametrize("job_id", MALFORMED)
def test_a_malformed_job_id_is_one_line_and_exit_2_before_redis_is_asked(command: str, job_id: str) -> None:
    result = CliRunner().invoke(main, [command, job_id, "--redis-url", NO_REDIS])
    assert (result.exit_code, result.stdout) == (2, "")
    assert (
        result.stderr
        == f"invalid: {job_id}: not a job id (28 lowercase hex characters, as genq submit prints)\n"
    )


def test_a_well_formed_id_without_a_record_is_no_such_job(scratch_url: str) -> None:
    result = CliRunner().invoke(main, ["status", JOB, "--redis-url", scratch_url])
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        f"invalid: {JOB}: no such job (none was submitted with this id, or its record expired: records are "
        "kept 7 days after the job ends)\n"
    )
    unreachable = CliRunner().invoke(main, ["status", JOB, "--redis-url", NO_REDIS])
    assert unreachable.exit_code == 3  # a well-formed id is looked up


def test_ids_one_process_makes_sort_in_the_order_it_made_them_within_a_millisecond() -> None:
    from producers.producer import _new_job_ids  # noqa: PLC0415

    made = [new_job_id() for _ in range(2000)] + _new_job_ids(500) + [new_job_id() for _ in range(10)]
    assert len({m[:12] for m in made}) < len(made)  # several ids shared a millisecond
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(is_job_id(m) for m in made)
