"""The `genq` commands as a user runs them: demo, sim, watch."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from click.testing import CliRunner

from genq.cli import main
from genq.processes import free_port, stop, wait_http
from producers import Producer
from schemas import JobStatus
from schemas import layout as L
from tests.conftest import Services
from worker.limits import Pool, RedisLimiter, Waiter

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GENQ = [sys.executable, "-m", "genq.cli"]


def _clean_env() -> dict[str, str]:
    """A user's environment: no GENQ_ settings from this test session."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GENQ_")}


def test_demo_runs_jobs_to_the_end_and_prints_a_summary(tmp_path: Path) -> None:
    result = subprocess.run(
        [*GENQ, "demo", "--jobs", "4", "--workers", "1", "--concurrency", "4", "--timeout-s", "120"],
        cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "16/16 succeeded" in result.stdout
    assert re.search(r"flower\s+http://127\.0\.0\.1:\d+", result.stdout)
    outputs = sorted(p.name for p in (tmp_path / "artifacts").glob("demo-*/artifacts/*/*.*"))
    expected = sorted(
        [f"{kind}_{i:03d}.mp4" for kind in ("avatar", "lipsync") for i in range(4)]
        + [f"music_{i:03d}_{n}.{'zip' if i % 4 == 0 else 'mp4'}" for i in range(4) for n in range(2)]
        # Each pipeline's avatar, its three dubs and the music on each (one name, three jobs' folders).
        + [f"promo_{i:03d}{lang}.mp4" for i in range(4) for lang in ("", "_fr", "_de", "_es")]
        + [f"promo_{i:03d}_score_0.mp4" for i in range(4) for _ in range(3)]
    )
    assert outputs == expected


def test_sim_serves_each_provider_with_its_own_options() -> None:
    port = free_port()
    options = ["--syncso-api-key", "k-123", "--syncso-plan", "growth", "--aistudios-app-id", "app-9",
               "--aistudios-user-key", "key-9"]  # fmt: skip
    process = subprocess.Popen(
        [*GENQ, "sim", "--port", str(port), *options],
        env=_clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/_sim/stats")
        assert httpx.get(f"{base}/v2/models", headers={"x-api-key": "k-123"}).status_code == 200
        assert httpx.get(f"{base}/v2/models", headers={"x-api-key": "other"}).status_code == 401
        assert httpx.get(f"{base}/_sim/config").json()["syncso"]["plan"] == "growth"
        token = f"{base}/api/odin/v3/auth/token"
        assert httpx.post(token, json={"appId": "app-9", "userKey": "key-9"}).json()["success"] is True
        assert httpx.post(token, json={"appId": "app-9", "userKey": "other"}).status_code == 401
    finally:
        stop(process)


def test_sim_prints_where_it_serves_and_every_key_at_start(tmp_path: Path) -> None:
    port = free_port()
    options = ["--syncso-api-key", "k-123", "--syncso-webhook-secret", "whsec_mine", "--syncso-plan", "scale",
               "--aimi-api-key", "aimi-9"]  # fmt: skip
    out = tmp_path / "sim.out"
    with out.open("wb") as log:
        process = subprocess.Popen([*GENQ, "sim", "--port", str(port), *options], env=_clean_env(),
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/_sim/stats")
    finally:
        stop(process)
    assert out.read_text().splitlines() == [
        f"genq sim: the provider simulators on {base} (Ctrl-C stops them); workers use them with:",
        f"export GENQ_AIMI__BASE_URL={base} GENQ_AIMI__API_KEY=aimi-9  # Aimi Sync",
        f"export GENQ_SYNCSO__BASE_URL={base} GENQ_SYNCSO__API_KEY=k-123 "
        "GENQ_SYNCSO__WEBHOOK_SECRET=whsec_mine GENQ_SYNCSO__PLAN=scale  # sync.so",
        f"export GENQ_AISTUDIOS__BASE_URL={base} GENQ_AISTUDIOS__APP_ID=sim-aistudios-app "
        "GENQ_AISTUDIOS__USER_KEY=sim-aistudios-key  # AI Studios",
    ]
    with socket.create_server(("127.0.0.1", 0)) as held:  # a port something else listens on
        taken = held.getsockname()[1]
        refused = subprocess.run([*GENQ, "sim", "--port", str(taken)], env=_clean_env(), capture_output=True,
                                 text=True, timeout=60, check=False)  # fmt: skip
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == f"genq sim: cannot listen on 127.0.0.1:{taken}: Address already in use\n"


def test_watch_ends_with_the_jobs_outcome(services: Services, producer: Producer) -> None:
    job_id = producer.submit(
        {
            "kind": "lipsync",
            "model": "lipsync-2",
            "video": "https://x.test/v.mp4",
            "audio": "https://x.test/a.wav",
        }
    )
    args = ["watch", job_id, "--redis-url", services.redis.url, "--timeout-s", "30"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert producer.get(job_id).status is JobStatus.SUCCEEDED
    assert "succeeded" in result.output


def test_limits_shows_every_budget_with_its_state(scratch_url: str) -> None:
    # A database of its own: no other test's job holds a slot there (it was once read as 2 in use).
    client = redis.Redis.from_url(scratch_url)
    limiter = RedisLimiter(client)
    pool = Pool("syncso.generations", 6, 180.0)
    limiter.acquire(pool, Waiter("limits-test-job", "", 0.0, "nowhere", "m"))
    limiter.pause(pool, 30.0)
    try:
        result = CliRunner().invoke(main, ["limits", "--json", "--redis-url", scratch_url])
        assert result.exit_code == 0, result.output
        figures = json.loads(result.output)
        states = {s["name"]: s for s in figures["budgets"]}
        assert [w["provider"] for w in figures["parked"]] == ["syncso", "syncso.batch", "aistudios", "aimi"]
        assert {q["queue"] for q in figures["scheduled"]} == {"default", "syncso", "aistudios", "aimi"}
        assert set(states) == {
            "syncso.create", "syncso.other", "syncso.upload", "syncso.generations", "syncso.batches",
            "aistudios.requests", "aistudios.renders", "aimi.requests", "aimi.executions",
        }  # fmt: skip
        assert states["syncso.generations"]["limit"] == 6  # the settings the workers have
        assert states["syncso.generations"]["in_use"] == 1
        assert states["syncso.generations"]["paused_until"] > time.time() + 20
        table = CliRunner().invoke(main, ["limits", "--redis-url", scratch_url])
        assert "syncso.generations" in table.output
        assert "parked until the provider job ends" in table.output
        metrics = CliRunner().invoke(main, ["limits", "--prometheus", "--redis-url", scratch_url])
        assert 'genq_budget_in_use{budget="syncso.generations",kind="pool"} 1' in metrics.output
        assert 'genq_scheduled{queue="syncso"} 0' in metrics.output
    finally:
        limiter.pause(pool, 0.001)
        limiter.release(pool, "limits-test-job")
        client.close()


def test_limits_shows_the_providers_whose_credentials_are_set_or_whose_accounts_workers_sweep(
    scratch_url: str, scratch: redis.Redis
) -> None:
    """A database no worker swept: only what the command's own credentials name. Then a worker's sweep
    of an AI Studios account registers it, and a command without any credentials (compose's `metrics`
    gets none) reports that account's budgets and backlog."""

    def limits(**env: str) -> dict[str, Any]:
        result = subprocess.run([*GENQ, "limits", "--json", "--redis-url", scratch_url],
                                env={**_clean_env(), **env}, capture_output=True, text=True, timeout=60,
                                check=False)  # fmt: skip
        assert result.returncode == 0, result.stderr
        figures: dict[str, Any] = json.loads(result.stdout)
        return figures

    figures = limits(GENQ_SYNCSO__API_KEY="only-syncso")
    assert {s["name"] for s in figures["budgets"]} == {
        "syncso.create",
        "syncso.other",
        "syncso.upload",
        "syncso.generations",
        "syncso.batches",
    }
    assert [w["provider"] for w in figures["parked"]] == ["syncso", "syncso.batch"]
    assert {q["queue"] for q in figures["scheduled"]} == {"default", "syncso"}
    assert limits()["budgets"] == []

    scratch.hset(L.ACCOUNTS_KEY, "aistudios", "0123456789ab")  # as a worker's AI Studios sweep does
    figures = limits()
    assert {s["name"] for s in figures["budgets"]} == {"aistudios.requests", "aistudios.renders"}
    assert [(w["provider"], w["account"]) for w in figures["parked"]] == [("aistudios", "0123456789ab")]
    assert {q["queue"] for q in figures["scheduled"]} == {"default", "aistudios"}
