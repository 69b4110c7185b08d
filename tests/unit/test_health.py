"""What ``/health`` says when Redis does not answer: one line with the reason and Redis's address, never
its password (``worker.health``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from genq.processes import free_port
from genq.redis_server import EmbeddedRedis
from worker.health import health, redis_problem

PASSWORD = "s3cret-health-pw"


@pytest.fixture(scope="module")
def guarded() -> Iterator[EmbeddedRedis]:
    """A Redis of this module's own, with a password."""
    with EmbeddedRedis(password=PASSWORD) as server:
        yield server


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)


def test_a_redis_that_answers_is_healthy(guarded: EmbeddedRedis) -> None:
    assert redis_problem(_client(guarded.url)) is None
    assert health(_client(guarded.url)) == (200, {"ok": True})


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://:{pw}@127.0.0.1:{closed}/0", "redis: connection refused at 127.0.0.1:{closed}"),
        ("redis://genq:{pw}@127.0.0.1:{closed}/2", "redis: connection refused at 127.0.0.1:{closed}"),
        ("redis://:wrong-{pw}@127.0.0.1:{port}/0", "redis: authentication failed at 127.0.0.1:{port}"),
        ("redis://127.0.0.1:{port}/0", "redis: authentication failed at 127.0.0.1:{port}"),
        ("redis://:{pw}@nowhere.invalid:6379/0", "redis: unknown host name at nowhere.invalid:6379"),
        ("unix://{tmp}/none.sock?password={pw}", "redis: no such file or directory at {tmp}/none.sock"),
    ],
)
def test_what_is_wrong_is_one_line_without_the_password(
    guarded: EmbeddedRedis, tmp_path: Path, url: str, problem: str
) -> None:
    names = {"pw": PASSWORD, "closed": free_port(), "port": guarded.port, "tmp": tmp_path}
    status, body = health(_client(url.format(**names)))
    assert (status, body) == (503, {"ok": False, "error": problem.format(**names)})
    assert PASSWORD not in str(body)
