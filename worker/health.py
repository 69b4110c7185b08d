"""What a ``/health`` endpoint answers (the webhook receiver's, ``genq metrics``'): whether Redis answers
a PING within a short timeout, and if not, one line that says what is wrong and where, e.g.
``redis: connection refused at 127.0.0.1:6379``. The line names Redis by its address, never by its URL,
so no password is ever in it."""

from __future__ import annotations

import socket
import ssl
from typing import Any, Final

import redis

from worker.settings import Settings, redis_client

# How long a health check waits for Redis (connect, then the PING's answer): an orchestrator's probe
# must not hang on a Redis that drops packets.
HEALTH_TIMEOUT_S: Final = 1.0


def health_client(settings: Settings, timeout_s: float = HEALTH_TIMEOUT_S) -> redis.Redis:
    """A client of the settings' Redis for health checks only: short timeouts (and, as redis-py's
    clients are by default, no retries)."""
    return redis_client(settings, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)


def redis_problem(client: redis.Redis) -> str | None:
    """None when Redis answers a PING; else what is wrong (``redis: <reason> at <address>``)."""
    try:
        client.ping()
    except redis.RedisError as exc:
        return unreachable(client, exc)
    return None


def health(client: redis.Redis) -> tuple[int, dict[str, Any]]:
    """What ``/health`` answers: 200 ``{"ok": true}``, or 503 ``{"ok": false, "error": <what is wrong>}``."""
    problem = redis_problem(client)
    return (200, {"ok": True}) if problem is None else (503, {"ok": False, "error": problem})


def unreachable(client: redis.Redis, exc: redis.RedisError) -> str:
    """``exc`` as one line: ``redis: <reason> at <address>``, without the password."""
    kwargs = client.connection_pool.connection_kwargs
    reason = _reason(exc, kwargs.get("socket_timeout"))
    password = kwargs.get("password")
    if password:
        reason = reason.replace(str(password), "***")
    return f"redis: {reason} at {address(kwargs)}"


def address(kwargs: dict[str, Any]) -> str:
    """Where a client's connections go: ``host:port``, or a Unix socket's path."""
    if kwargs.get("path"):
        return str(kwargs["path"])
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def _reason(exc: redis.RedisError, timeout_s: float | None) -> str:
    if isinstance(exc, redis.AuthenticationError):
        return "authentication failed"
    if isinstance(exc, redis.TimeoutError):
        return f"no answer within {timeout_s:g} s" if timeout_s else "timed out"
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, socket.gaierror):
        return "unknown host name"
    if isinstance(cause, ssl.SSLError):
        return f"TLS failed ({cause.reason or cause})"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror[:1].lower() + cause.strerror[1:]
    if isinstance(exc, redis.ResponseError):
        return f"answered {str(exc).splitlines()[0]!r}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
