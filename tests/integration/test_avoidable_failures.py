"""What genq can know early it says early, through the command line (exit status and output): a provider
that refuses genq's key fails the job with the setting that holds it; a batch on a plan without batches
is refused at submit; a job of a provider no worker serves yet is stored with a warning; ``genq replay
--fresh`` makes a new provider job where the old one failed at the provider."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner, Result

from genq.cli import main
from genq.redis_server import EmbeddedRedis
from producers import Producer
from schemas import JobStatus
from schemas import layout as L
from schemas.requests import CREDENTIALS
from tests.conftest import AVATAR, LIPSYNC, Services, Sim, until

pytestmark = pytest.mark.integration

GENQ = [sys.executable, "-m", "genq"]


def genq(*args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    """``genq ARGS`` in a process of its own, with none of this session's GENQ_ settings but ``env``."""
    environ = {**{k: v for k, v in os.environ.items() if not k.startswith("GENQ_")}, **env}
    return subprocess.run([*GENQ, *args], input=stdin, env=environ, capture_output=True, text=True,
                          timeout=90, check=False)  # fmt: skip


def submitted(url: str, request: dict[str, Any]) -> str:
    result = genq("submit", "-", "--redis-url", url, stdin=json.dumps(request))
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


# Per provider: a job, the wrong key its workers get, and how the job's error ends.
REFUSED = {
    "syncso": (LIPSYNC, {"GENQ_SYNCSO__API_KEY": "wrong-key"}, "(sync.so refused genq's credentials; check "
               "GENQ_SYNCSO__API_KEY)"),
    "aistudios": (AVATAR, {"GENQ_AISTUDIOS__USER_KEY": "wrong-user-key"}, "(AI Studios refused genq's "
                  "credentials; check GENQ_AISTUDIOS__APP_ID and GENQ_AISTUDIOS__USER_KEY)"),
}  # fmt: skip


@pytest.mark.parametrize("provider", list(REFUSED))
@pytest.mark.slow
def test_a_refused_key_fails_the_job_naming_the_setting_that_holds_it(
    own_redis: EmbeddedRedis, workers: Callable[..., subprocess.Popen[bytes]], sim: Sim, provider: str
) -> None:
    request, settings, refused = REFUSED[provider]
    workers("refused", **settings)
    job_id = submitted(own_redis.url, request)
    watched = genq("watch", job_id, "--timeout-s", "60", "--redis-url", own_redis.url)
    assert watched.returncode == 1, watched.stdout + watched.stderr
    record = json.loads(genq("status", job_id, "--json", "--redis-url", own_redis.url).stdout)
    error = record["error"]
    assert (error["stage"], error["status_code"]) == ("create", 401)
    assert error["message"].endswith(refused)
    assert next(iter(settings.values())) not in json.dumps(record)
    shown = genq("status", job_id, "--redis-url", own_redis.url, COLUMNS="240")
    assert next(iter(CREDENTIALS[provider])) in shown.stdout, shown.stdout


# --- at submit: a batch the plan cannot run, jobs no worker serves yet -------------------------------

BATCH = "\n".join(json.dumps({**LIPSYNC, "video": f"https://x.test/{i}.mp4"}) for i in range(20))
MUSIC = {"kind": "music", "video": "https://x.test/v.mp4"}
PIPELINE = {"kind": "pipeline", "steps": {"avatar": {"request": AVATAR}, "dub": {"request": {
    **LIPSYNC, "video": {"from": "avatar"}}}}}  # fmt: skip


def warning(provider: str, settings: str) -> str:
    return (f"genq: warning: no worker has registered an account for {provider} in Redis yet: its jobs wait "
            f"in queue {provider} until workers with {settings} set take them\n")  # fmt: skip


@pytest.mark.slow
def test_a_batch_on_a_plan_without_batches_is_refused_at_submit_by_this_process_setting(
    scratch_url: str, scratch: redis.Redis
) -> None:
    result = genq(
        "submit", "--batch", "-", "--redis-url", scratch_url, stdin=BATCH, GENQ_SYNCSO__PLAN="creator"
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "invalid: batch: sync.so runs batches on the scale and enterprise plans only, and GENQ_SYNCSO__PLAN "
        "is 'creator' here; submit the jobs one by one, or set GENQ_SYNCSO__PLAN to the account's plan\n"
    )
    assert scratch.dbsize() == 0


@pytest.mark.slow
def test_submit_says_at_once_what_the_workers_cannot_run(
    own_redis: EmbeddedRedis, workers: Callable[..., subprocess.Popen[bytes]], sim: Sim
) -> None:
    url = own_redis.url
    client = redis.Redis.from_url(url)
    early = genq("submit", "-", "--redis-url", url, stdin=json.dumps(AVATAR))
    assert early.returncode == 0 and len(early.stdout.split()) == 1  # stored all the same: workers may come
    assert early.stderr == warning("aistudios", "GENQ_AISTUDIOS__APP_ID and GENQ_AISTUDIOS__USER_KEY")
    unknown_plan = genq("submit", "--batch", "-", "--redis-url", url, stdin=BATCH)
    assert unknown_plan.returncode == 0, unknown_plan.stderr  # no plan known anywhere: sync.so will say

    # A worker with sync.so's key only, on the creator plan: it registers both as it starts.
    workers("syncso-only", queues=("default", "syncso"), GENQ_SYNCSO__PLAN="creator",
            GENQ_AISTUDIOS__APP_ID="", GENQ_AIMI__API_KEY="")  # fmt: skip
    until(lambda: client.hget(L.PLANS_KEY, "syncso") == b"creator", 15, "the worker's plan in Redis")
    assert set(client.hkeys(L.ACCOUNTS_KEY)) >= {b"syncso"}

    jobs = len(list(client.scan_iter(L.JOB_KEY.format(job_id="*"))))
    refused = genq("submit", "--batch", "-", "--redis-url", url, stdin=BATCH)
    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr == (
        "invalid: batch: sync.so runs batches on the scale and enterprise plans only, and the workers' "
        "GENQ_SYNCSO__PLAN is 'creator' (registered in Redis by their sync.so sweep); submit the jobs one by "
        "one, or set GENQ_SYNCSO__PLAN to the account's plan\n"
    )
    assert len(list(client.scan_iter(L.JOB_KEY.format(job_id="*")))) == jobs  # nothing stored
    served = genq("submit", "-", "--redis-url", url, stdin=json.dumps(LIPSYNC))
    assert (served.returncode, served.stderr) == (0, "")
    mixed = genq("submit", "-", "--redis-url", url, stdin=json.dumps(PIPELINE))
    assert mixed.returncode == 0
    assert mixed.stderr == warning("aistudios", "GENQ_AISTUDIOS__APP_ID and GENQ_AISTUDIOS__USER_KEY")
    music = genq("submit", "-", "--redis-url", url, stdin=json.dumps(MUSIC))
    assert (music.returncode, music.stderr) == (0, warning("aimi", "GENQ_AIMI__API_KEY"))

    # This process's own setting, when it has one, is what it goes by.
    told = genq("submit", "--batch", "-", "--redis-url", url, stdin=BATCH, GENQ_SYNCSO__PLAN="scale")
    assert told.returncode == 0, told.stderr
    assert told.stderr.startswith("batch ") and told.stderr.endswith(": 20 jobs\n")
    client.close()


# --- genq replay --fresh -----------------------------------------------------------------------------


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def test_replay_fresh_makes_a_new_generation_where_the_old_one_failed_at_the_provider(
    services: Services, producer: Producer, sim: Sim
) -> None:
    url = services.redis.url
    sim.configure(fail_share=1.0)  # every generation ends FAILED
    job_id = producer.submit({**LIPSYNC, "max_cost_usd": 5.0})
    assert cli("watch", job_id, "--redis-url", url, "--timeout-s", "30").exit_code == 1
    failed = producer.get(job_id)
    assert failed.error is not None and failed.error.failed_provider_ids == ("generation",)
    first = failed.provider_ids["generation"]
    estimate = failed.data["estimate"]

    again = cli("replay", job_id, "--redis-url", url)  # as before: the same generation, failed again
    assert (again.exit_code, again.stdout, again.stderr) == (0, f"{job_id} queued\n", "")
    assert cli("watch", job_id, "--redis-url", url, "--timeout-s", "30").exit_code == 1
    assert producer.get(job_id).provider_ids["generation"] == first

    sim.configure(fail_share=0.0)
    fresh = cli("replay", "--fresh", job_id, "--redis-url", url)
    assert (fresh.exit_code, fresh.stdout) == (0, f"{job_id} queued\n")
    frames = f", {float(estimate['frames']):g} frames" if estimate["frames"] else ""
    assert fresh.stderr == (
        f"genq: {job_id}: a new provider job replaces generation {first}, which failed at syncso, and is "
        f"paid for again: syncso estimated ${estimate['usd']:.4f}{frames}\n"
    )
    assert cli("watch", job_id, "--redis-url", url, "--timeout-s", "30").exit_code == 0
    done = producer.get(job_id)
    second = done.provider_ids["generation"]
    assert second != first
    assert done.data[L.FRESH_REPLAYS] == 1
    assert done.data["estimate"] == estimate  # estimated once: the request is the same
    keys = sim.stats()["generations_by_idempotency_key"]
    assert (keys[f"genq-{job_id}"], keys[f"genq-{job_id}-fresh1"]) == ([first], [second])

    done_again = cli("replay", "--fresh", job_id, "--redis-url", url)
    assert (done_again.exit_code, done_again.stderr) == (
        1, f"Error: job {job_id} is succeeded; only a failed job can be replayed\n"
    )  # fmt: skip


def test_replay_fresh_makes_a_new_project_where_the_render_failed(
    services: Services, producer: Producer, sim: Sim
) -> None:
    url = services.redis.url
    sim.configure("aistudios", fail_share=1.0)
    job_id = producer.submit(AVATAR)
    assert cli("watch", job_id, "--redis-url", url, "--timeout-s", "30").exit_code == 1
    first = producer.get(job_id).provider_ids["project"]
    sim.configure("aistudios", fail_share=0.0)
    fresh = cli("replay", "--fresh", job_id, "--redis-url", url)
    assert fresh.exit_code == 0
    assert fresh.stderr == (
        f"genq: {job_id}: a new provider job replaces project {first}, which failed at aistudios, and is "
        "paid for again (genq has no estimate of its cost)\n"
    )
    assert cli("watch", job_id, "--redis-url", url, "--timeout-s", "30").exit_code == 0
    assert producer.get(job_id).provider_ids["project"] != first


def test_replay_fresh_refuses_a_job_whose_provider_job_did_not_fail(
    services: Services, producer: Producer, sim: Sim
) -> None:
    url = services.redis.url
    sim.fault(route="syncso.create", status=400, times=1)  # refused before any generation was made
    job_id = producer.submit(LIPSYNC)
    assert cli("watch", job_id, "--redis-url", url, "--timeout-s", "30").exit_code == 1
    refused = cli("replay", "--fresh", job_id, "--redis-url", url)
    assert refused.exit_code == 1
    assert refused.stderr.startswith(f"Error: job {job_id} failed at create (syncso 400"), refused.stderr
    assert refused.stderr.endswith(
        ", not with a provider job that failed at the provider: nothing to make anew (genq replay "
        f"{job_id} runs it again as it is)\n"
    )
    assert producer.get(job_id).status is JobStatus.FAILED  # unchanged
    assert cli("replay", job_id, "--redis-url", url).exit_code == 0
    assert cli("watch", job_id, "--redis-url", url, "--timeout-s", "30").exit_code == 0


def test_replay_fresh_starts_a_new_execution_and_keeps_the_upload(
    services: Services, producer: Producer, sim: Sim, tmp_path: Path
) -> None:
    url = services.redis.url
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(256 * 1024))
    sim.configure("aimi", fail_share=1.0)
    job_id = producer.submit({"kind": "music", "video": str(video)})
    assert cli("watch", job_id, "--redis-url", url, "--timeout-s", "60").exit_code == 1
    failed = producer.get(job_id)
    first, task = failed.provider_ids["exec[0]"], failed.provider_ids["task"]
    sim.configure("aimi", fail_share=0.0)
    fresh = cli("replay", "--fresh", job_id, "--redis-url", url)
    assert fresh.exit_code == 0
    assert fresh.stderr == (
        f"genq: {job_id}: a new provider job replaces exec[0] {first}, which failed at aimi, and is paid for "
        "again (genq has no estimate of its cost)\n"
    )
    assert cli("watch", job_id, "--redis-url", url, "--timeout-s", "60").exit_code == 0
    done = producer.get(job_id)
    assert done.provider_ids["exec[0]"] != first
    assert done.provider_ids["task"] == task  # the upload, analyses and plan are not made again
    assert len(sim.http.get("/_sim/aimi/uploads").raise_for_status().json()) == 1
