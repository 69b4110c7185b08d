"""A job's output budget (GENQ_CAPS__MAX_JOB_OUTPUT_BYTES), shared through Redis by the job's downloads
(on the session Redis's scratch database)."""

from __future__ import annotations

import pytest
import redis

from schemas import layout as L
from worker.outputs import OutputBudget
from worker.providers.http import OutputTooLarge


def budget(client: redis.Redis, download: str, cap: int = 1000) -> OutputBudget:
    return OutputBudget(client, "job-1", download, cap, provider="aimi")


def test_parallel_downloads_are_held_to_one_sum(scratch: redis.Redis) -> None:
    first, second, third = (budget(scratch, f"download[{n}]") for n in range(3))
    first(400)
    second(400)
    with pytest.raises(OutputTooLarge) as caught:
        third(400)
    assert caught.value.message == (
        "the job's outputs would be 1200 bytes; one job may write at most 1000 "
        "(GENQ_CAPS__MAX_JOB_OUTPUT_BYTES)"
    )
    assert (caught.value.code, caught.value.retryable) == ("output_too_large", False)
    # The refused download writes nothing: the others' bytes stand, its own are back to 0.
    assert scratch.hgetall(L.output_bytes_key("job-1")) == {
        b"download[0]": b"400",
        b"download[1]": b"400",
        b"download[2]": b"0",
    }
    assert 0 < scratch.ttl(L.output_bytes_key("job-1")) <= L.JOB_TTL_S


def test_a_download_run_again_replaces_its_own_count(scratch: redis.Redis) -> None:
    first = budget(scratch, "download")
    first(900)
    again = budget(scratch, "download")  # a retry or a redelivery of the same stage
    again(900)
    again(1000)
    with pytest.raises(OutputTooLarge):
        again(1001)


def test_jobs_do_not_share_a_budget(scratch: redis.Redis) -> None:
    budget(scratch, "download")(1000)
    OutputBudget(scratch, "job-2", "download", 1000, provider="aimi")(1000)
