"""A fix of kombu 5.7's Redis transport that keeps a worker alive when Redis goes away.

When the consumer's connection to Redis is lost, Celery closes it (``Consumer.on_connection_error_after
_connected``). A channel used after that, or while that happens, needs a new Redis client, built from
the transport's connection, which closing has already set to None: ``AttributeError: 'NoneType' object
has no attribute 'hostname'`` (or ``'client'``) in ``Channel._connparams``. Two paths were seen in
genq's Redis-restart fault run: the channel's close giving back its unacknowledged messages
(``QoS.restore_unacked``), and a stage's late ``Reject(requeue=True)`` (``QoS.restore_by_tag``). An
AttributeError is not a connection error, so Celery takes it for an unrecoverable one and the worker
exits: one or both workers, in about one run in three.

The fix makes that case the connection error it is (``redis.ConnectionError``, one of the transport's
``connection_errors``), which kombu and Celery already handle on those paths: the close goes on, the
reject is logged, the consumer reconnects. Nothing is lost: the messages stay in kombu's ``unacked``
hash, from which the reconciler (after a restart, at once) or kombu (after the visibility timeout)
brings them back.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis

_connparams = getattr(kombu_redis.Channel, "_connparams")  # noqa: B009 (untyped in the stubs)


def connparams(self: Any, asynchronous: bool = False) -> Any:
    transport = self.connection
    if transport is None or transport.client is None:
        raise redis.ConnectionError("this broker channel's connection is closed")
    return _connparams(self, asynchronous)


def install() -> None:
    """Patch kombu's Redis ``Channel._connparams`` (idempotent)."""
    setattr(kombu_redis.Channel, "_connparams", connparams)  # noqa: B010 (untyped in the stubs)
