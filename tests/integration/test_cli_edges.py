"""The command line's edges, one exit status each: 0 success, 1 the job ended badly, 2 invalid input
(``invalid:`` lines), 3 Redis unreachable (one line, no password), 4 ``genq watch`` timed out; and the
warning for a ``GENQ_`` variable that names no setting. Real processes where the outcome depends on
how Python ends (a traceback would show there), CliRunner elsewhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from genq.cli import main
from genq.processes import free_port
from producers import Producer
from schemas import JobStatus
from schemas.redis_url import redacted
from tests.conftest import Services, Sim, until
from worker.settings import unknown_variables

pytestmark = pytest.mark.integration

GENQ = [sys.executable, "-m", "genq"]
GOOD = {
    "kind": "lipsync",
    "model": "lipsync-2",
    "video": "https://x.test/v.mp4",
    "audio": "https://x.test/a.wav",
}
PASSWORD = "s3cret-pw-9f2c"
JOB = "0" * 28


def _clean_env(**extra: str) -> dict[str, str]:
    """A user's environment: no GENQ_ settings from this test session, plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("GENQ_")}, **extra}


def _run(
    *args: str, stdin: str = "", cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GENQ, *args], input=stdin, env=_clean_env(**env), cwd=cwd,
                          capture_output=True, text=True, timeout=90, check=False)  # fmt: skip


# --- 3: Redis unreachable --------------------------------------------------------------------------


def closed_urls() -> list[str]:
    port = free_port()  # nothing listens there once the probe socket is closed
    return [
        f"redis://127.0.0.1:{port}/0",
        f"redis://:{PASSWORD}@127.0.0.1:{port}/0",
        f"redis://genq:{PASSWORD}@127.0.0.1:{port}/2",
        f"redis://127.0.0.1:{port}/0?password={PASSWORD}",
    ]


COMMANDS: list[tuple[str, ...]] = [
    ("submit", "-"),
    ("status", JOB),
    ("status", JOB, "--json"),
    ("watch", JOB, "--timeout-s", "5"),
    ("cancel", JOB),
    ("dead",),
    ("jobs",),
    ("replay", JOB),
    ("limits",),
    ("limits", "--prometheus"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:1] + c[2:]))
def test_an_unreachable_redis_is_one_line_and_exit_3(command: tuple[str, ...]) -> None:
    for url in closed_urls():
        result = CliRunner().invoke(main, [*command, "--redis-url", url], input=json.dumps(GOOD))
        assert result.exit_code == 3, (url, result.output, result.exc_info)
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("genq: cannot reach Redis at redis://"), lines[0]
        assert "Connection refused" in lines[0]
        assert PASSWORD not in result.output
        if PASSWORD in url:
            assert "***" in lines[0]


@pytest.mark.slow
def test_an_unreachable_redis_in_a_real_process_prints_no_traceback(tmp_path: Path) -> None:
    url = closed_urls()[2]
    port = url.rsplit(":", 1)[1].split("/")[0]
    runs = [
        _run("submit", "-", "--redis-url", url, stdin=json.dumps(GOOD)),
        _run("status", JOB, GENQ_REDIS_URL=url),  # the URL from the environment
        _run("limits", "--json", GENQ_REDIS_URL=url),
        # The demo checks a given Redis before it starts anything (no worker, no artifacts).
        _run("demo", "--jobs", "1", "--workers", "1", cwd=tmp_path, GENQ_REDIS_URL=url),
    ]
    for result in runs:
        assert result.returncode == 3, result.stderr
        assert result.stderr == f"genq: cannot reach Redis at redis://genq:***@127.0.0.1:{port}/2: " \
            f"Error 111 connecting to 127.0.0.1:{port}. Connection refused.\n"  # fmt: skip
        assert PASSWORD not in result.stdout + result.stderr
    assert not (tmp_path / "artifacts").exists()


def test_a_malformed_redis_url_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["status", JOB, "--redis-url", f"127.0.0.1:6379?password={PASSWORD}"])
    assert result.exit_code == 2
    assert (
        "Invalid value for '--redis-url': Redis URL must specify one of the following schemes"
        in result.stderr
    )
    assert PASSWORD not in result.output


# --- 2: invalid input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        ("", ["invalid: nothing to submit"]),
        ("  \n\t\n", ["invalid: nothing to submit"]),
        ("[]", ["invalid: nothing to submit"]),
        ('"x"', ["invalid: [0] request: must be a JSON object, not a string"]),
        ("3", ["invalid: [0] request: must be a JSON object, not a number"]),
        ("null", ["invalid: [0] request: must be a JSON object, not null"]),
        ("[[{}]]", ["invalid: [0] request: must be a JSON object, not an array"]),
        (
            json.dumps([GOOD, "x", [GOOD], True]),
            [
                "invalid: [1] request: must be a JSON object, not a string",
                "invalid: [2] request: must be a JSON object, not an array",
                "invalid: [3] request: must be a JSON object, not a boolean",
            ],
        ),
        (
            '{"kind": "lipsync",',
            ["invalid: line 1: not JSON: Expecting property name enclosed in double quotes (column 20)"],
        ),
        (
            json.dumps(GOOD) + "\n{oops}\n",
            ["invalid: line 2: not JSON: Expecting property name enclosed in double quotes (column 2)"],
        ),
        ("[NaN]", ["invalid: request: not JSON: NaN is not a JSON value"]),
        (
            json.dumps({**GOOD, "model": "lipsync-9", "tenant": "a\nb"}),
            [
                "invalid: model: Input should be 'lipsync-2', 'lipsync-2-pro', 'lipsync-1.9.0-beta', "
                "'react-1' or 'sync-3'",
                "invalid: tenant: String should match pattern '^[A-Za-z0-9._:-]+$'",
            ],
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 20 else None,
)
def test_invalid_submissions_exit_2_with_one_line_per_problem_and_store_nothing(
    scratch_url: str, scratch: redis.Redis, text: str, lines: list[str]
) -> None:
    result = CliRunner().invoke(main, ["submit", "-", "--redis-url", scratch_url], input=text)
    assert result.exit_code == 2, result.output
    assert sorted(result.stderr.splitlines()) == sorted(lines)
    assert result.stdout == ""
    assert scratch.dbsize() == 0


def test_a_missing_local_file_refuses_the_whole_submission(
    scratch_url: str, scratch: redis.Redis, tmp_path: Path
) -> None:
    missing = tmp_path / "absent.wav"
    text = json.dumps([GOOD, {**GOOD, "audio": str(missing)}])
    result = CliRunner().invoke(main, ["submit", "-", "--redis-url", scratch_url], input=text)
    assert result.exit_code == 2, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith("invalid: [1] audio: ") and str(missing) in line, line
    assert result.stdout == ""
    assert scratch.dbsize() == 0  # not even the first, valid job


@pytest.mark.slow
def test_invalid_files_exit_2_in_a_real_process(
    scratch_url: str, scratch: redis.Redis, tmp_path: Path
) -> None:
    empty, binary = tmp_path / "empty.json", tmp_path / "binary.json"
    empty.write_text("")
    binary.write_bytes(b"\xff\xfe{}")
    cases = {
        str(empty): "invalid: nothing to submit\n",
        str(binary): f"invalid: {binary}: not UTF-8 text (byte 0: invalid start byte)\n",
    }
    for path, stderr in cases.items():
        result = _run("submit", path, "--redis-url", scratch_url)
        assert (result.returncode, result.stderr, result.stdout) == (2, stderr, "")
    result = _run("submit", "-", "--redis-url", scratch_url, stdin='"x"')
    assert (result.returncode, result.stderr) == (
        2,
        "invalid: [0] request: must be a JSON object, not a string\n",
    )
    # A good request beside one that fails its checks: `submit_many` stores all of them or none.
    stdin = json.dumps([GOOD, {**GOOD, "modle": "lipsync-2"}])
    result = _run("submit", "-", "--redis-url", scratch_url, stdin=stdin)
    problem = "invalid: [1] modle: unknown field; did you mean model?\n"
    assert (result.returncode, result.stderr) == (2, problem)
    assert scratch.dbsize() == 0


def test_an_unknown_job_is_invalid_input(scratch_url: str) -> None:
    for command in (["status", JOB], ["watch", JOB], ["cancel", JOB], ["replay", JOB]):
        result = CliRunner().invoke(main, [*command, "--redis-url", scratch_url])
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith(f"invalid: {JOB}: no such job"), result.stderr


# --- 0, 1, 4: how a watched job ends ---------------------------------------------------------------


def _watch(services: Services, job_id: str, timeout_s: float) -> tuple[int, str]:
    args = ["watch", job_id, "--redis-url", services.redis.url, "--timeout-s", str(timeout_s)]
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.stderr


def test_watch_exit_0_when_the_job_succeeded_and_cancel_exit_1_after(
    services: Services, producer: Producer, sim: Sim
) -> None:
    job_id = producer.submit(GOOD)
    assert _watch(services, job_id, 30) == (0, "")
    assert producer.get(job_id).status is JobStatus.SUCCEEDED
    late = CliRunner().invoke(main, ["cancel", job_id, "--redis-url", services.redis.url])
    assert (late.exit_code, late.stdout) == (1, f"{job_id} succeeded\n")


def test_watch_exit_1_when_the_job_failed(services: Services, producer: Producer, sim: Sim) -> None:
    sim.fault(route="syncso.create", status=400, times=1)
    job_id = producer.submit(GOOD)
    assert _watch(services, job_id, 30) == (1, "")
    assert producer.get(job_id).status is JobStatus.FAILED


def test_watch_exit_1_for_a_cancelled_job(services: Services, producer: Producer, sim: Sim) -> None:
    job_id = producer.submit(GOOD)
    cancel = CliRunner().invoke(main, ["cancel", job_id, "--redis-url", services.redis.url])
    assert (cancel.exit_code, cancel.stdout) == (0, f"{job_id} cancelled\n")
    assert _watch(services, job_id, 30) == (1, "")
    again = CliRunner().invoke(main, ["cancel", job_id, "--redis-url", services.redis.url])
    assert (again.exit_code, again.stdout) == (0, f"{job_id} cancelled\n")  # what was asked holds


@pytest.mark.slow
def test_watch_exit_4_when_it_stops_before_the_job_ends(
    services: Services, producer: Producer, sim: Sim
) -> None:
    sim.configure(pending_s=0.5, processing_s=3.0)
    job_id = producer.submit(GOOD)
    code, stderr = _watch(services, job_id, 0.5)
    assert code == 4
    assert stderr.startswith(f"genq: {job_id} is still ") and stderr.endswith(" after 0.5 s\n"), stderr
    assert not producer.get(job_id).is_terminal  # watching stopped; the job did not
    assert _watch(services, job_id, 30) == (0, "")


# --- unknown GENQ_ variables -----------------------------------------------------------------------


def test_a_misspelt_setting_is_reported_once_by_the_cli(services: Services) -> None:
    result = _run("limits", "--json", "--redis-url", services.redis.url, GENQ_SYNCSO__CONCURENCY="3",
                  GENQ_SYNCSO__API_KEY="k", GENQ_REDIS_SERVER_BIN="/usr/bin/true",
                  GENQ_LIMITS__CELERY_RATE_LIMITS__genq_x="1/s")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        "genq: unknown setting GENQ_SYNCSO__CONCURENCY (did you mean GENQ_SYNCSO__CONCURRENCY?)\n"
    )
    json.loads(result.stdout)  # the warning goes to stderr only


def test_a_setting_that_does_not_parse_is_one_line_and_exit_2() -> None:
    result = _run("status", JOB, GENQ_RETRY__MAX_RETRIES="many")
    assert result.returncode == 2
    assert result.stderr == (
        "genq: invalid setting GENQ_RETRY__MAX_RETRIES: Input should be a valid integer, unable to parse "
        "string as an integer\n"
    )


def test_a_misspelt_setting_is_reported_by_a_worker(
    workers: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    workers("misspelt", GENQ_RETRY__MAX_RETRIS="2")
    log = tmp_path / "misspelt.log"
    line = "genq: unknown setting GENQ_RETRY__MAX_RETRIS (did you mean GENQ_RETRY__MAX_RETRIES?)"
    until(lambda: log.exists() and line in log.read_text(), 30, "the worker's warning")
    assert log.read_text().count(line) == 1


@pytest.mark.parametrize(
    ("environ", "unknown"),
    [
        ({"GENQ_SYNCSO__CONCURRENCY": "3", "GENQ_REDIS_URL": "r", "HOME": "/root"}, []),
        ({"genq_syncso__api_key": "k", "GENQ_SYNCSO": "{}", "GENQ_SYNCSO__HTTP__READ_TIMEOUT_S": "9"}, []),
        ({"GENQ_LIMITS__CELERY_RATE_LIMITS__genq.syncso.create": "1/s", "GENQ_REDIS_SERVER_BIN": "/x"}, []),
        ({"GENQ_SYNCSO__CONCURENCY": "3"}, [("GENQ_SYNCSO__CONCURENCY", "GENQ_SYNCSO__CONCURRENCY")]),
        ({"GENQ_AISTUDIOS__HTTP__READ_TIMEOUT": "9"},
         [("GENQ_AISTUDIOS__HTTP__READ_TIMEOUT", "GENQ_AISTUDIOS__HTTP__READ_TIMEOUT_S")]),
        ({"GENQ_REDIS_ULR": "r"}, [("GENQ_REDIS_ULR", "GENQ_REDIS_URL")]),
        ({"GENQ_NOTHING_LIKE_IT": "1"}, [("GENQ_NOTHING_LIKE_IT", None)]),
    ],
)  # fmt: skip
def test_unknown_variables_are_those_that_name_no_setting(
    environ: dict[str, str], unknown: list[tuple[str, str | None]]
) -> None:
    assert unknown_variables(environ) == unknown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        (f"redis://:{PASSWORD}@h:1/0", "redis://***@h:1/0"),
        (f"redis://genq:{PASSWORD}@h:1/0", "redis://genq:***@h:1/0"),
        (f"rediss://{PASSWORD}@h:1", "rediss://***@h:1"),  # one part: a user name, often meant as a password
        (f"unix:///run/redis.sock?db=1&password={PASSWORD}", "unix:///run/redis.sock?db=1&password=***"),
    ],
)
def test_redis_urls_are_shown_without_their_password(url: str, shown: str) -> None:
    assert redacted(url) == shown
