"""``genq jobs`` through the command line, with real workers and the simulators: failed jobs are listed
whatever their retryability (a render AI Studios failed, a lipsync whose retries ran out), newest first,
with their error codes, and only the test's own (a tenant of its own: other tests' jobs share Redis)."""

from __future__ import annotations

import json
import uuid

import pytest
from click.testing import CliRunner

from genq.cli import main
from producers import Producer
from schemas import JobStatus
from tests.conftest import AVATAR, LIPSYNC, Services, Sim

pytestmark = pytest.mark.integration


def genq_jobs(services: Services, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["jobs", *args, "--redis-url", services.redis.url])
    return result.exit_code, result.output


def test_genq_jobs_lists_failed_jobs_whatever_their_retryability(
    services: Services, producer: Producer, sim: Sim
) -> None:
    tenant = f"jobs-{uuid.uuid4().hex[:12]}"
    sim.fault(route="syncso.create", status=503, times=5)  # the session's workers retry 4 times
    retried_out = producer.submit({**LIPSYNC, "tenant": tenant})
    assert producer.wait(retried_out, timeout_s=30).status is JobStatus.FAILED
    succeeded = producer.submit({**LIPSYNC, "tenant": tenant})
    sim.configure("aistudios", fail_share=1.0)
    renders = [producer.submit({**AVATAR, "tenant": tenant}) for _ in range(2)]
    for job_id in [succeeded, *renders]:
        assert producer.wait(job_id, timeout_s=30).is_terminal
    assert producer.get(succeeded).status is JobStatus.SUCCEEDED

    code, output = genq_jobs(services, "--status", "failed", "--tenant", tenant)
    assert code == 0, output
    heading, header, *rows = output.splitlines()
    assert heading.startswith("all jobs: ") and heading.endswith(" (counts of every kind and tenant)")
    assert header.split() == ["job", "kind", "status", "tenant", "created", "time", "detail"]
    listed = [line.split() for line in rows]
    assert [r[0] for r in listed] == [*reversed(renders), retried_out]  # newest first
    for r in listed[:2]:
        assert r[1:4] == ["avatar", "failed", tenant]
        assert r[6] == "took" and r[8:] == ["aistudios", "RENDER_FAILED", "at", "wait"]
    assert listed[2][1:4] == ["lipsync", "failed", tenant]
    assert listed[2][8:] == ["syncso", "503", "at", "create"]

    code, output = genq_jobs(services, "--tenant", tenant, "--since", "5m", "--json")
    assert code == 0, output
    found = json.loads(output)
    assert [(j["id"], j["status"]) for j in found["jobs"]] == [
        (renders[1], "failed"), (renders[0], "failed"), (succeeded, "succeeded"), (retried_out, "failed")
    ]  # fmt: skip
    errors = {j["id"]: j["error"] for j in found["jobs"]}
    assert errors[retried_out]["retryable"] and not errors[renders[0]]["retryable"]
    assert found["counts"]["failed"] >= 3 and found["counts"]["succeeded"] >= 1

    code, output = genq_jobs(services, "--status", "failed", "--tenant", tenant, "--kind", "lipsync")
    assert (code, [line.split()[0] for line in output.splitlines()[2:]]) == (0, [retried_out])
