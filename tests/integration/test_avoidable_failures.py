"""What genq can know early it says early, through the command line (exit status and output): a provider
that refuses genq's key fails the job with the setting that holds it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from genq.redis_server import EmbeddedRedis
from schemas.requests import CREDENTIALS
from tests.conftest import AVATAR, LIPSYNC, Sim

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
