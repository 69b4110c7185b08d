"""A kombu Redis channel used after its connection closed raises a connection error, which kombu and
Celery handle, not an AttributeError, which Celery takes for unrecoverable and exits on
(worker/kombu_fix.py); the unacknowledged message stays where the reconciler and kombu restore it from
(on the session Redis's scratch database)."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from kombu import Connection

from schemas import layout as L
from worker import kombu_fix

QUEUE = "kombu-fix-q"


def _channel_holding_a_message(url: str) -> Any:
    channel = Connection(url).channel()
    channel.queue_declare(QUEUE)
    channel.basic_publish(channel.prepare_message("hello"), exchange="", routing_key=QUEUE)
    message = channel.basic_get(QUEUE, no_ack=False)
    assert message is not None  # taken: in unacked now
    channel.message = message
    # As Celery's close after a lost connection leaves it: pools dropped, the transport's client gone.
    channel._disconnect_pools()
    channel.connection.client = None
    return channel


def use(monkeypatch: pytest.MonkeyPatch, fixed: bool) -> None:
    patched = kombu_fix.connparams if fixed else kombu_fix._connparams
    monkeypatch.setattr(kombu_fix.kombu_redis.Channel, "_connparams", patched)


@pytest.mark.parametrize("fixed", [False, True])
def test_closing_a_channel_whose_connection_is_gone(
    fixed: bool, scratch_url: str, scratch: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, fixed)
    channel = _channel_holding_a_message(scratch_url)
    expected = redis.ConnectionError if fixed else AttributeError
    with pytest.raises(expected):
        channel.close()  # gives the unacknowledged message back: needs a client
    if fixed:
        assert isinstance(redis.ConnectionError(), channel.connection.connection_errors)
    assert scratch.hlen(L.UNACKED) == 1
    assert scratch.llen(QUEUE) == 0


@pytest.mark.parametrize("fixed", [False, True])
def test_rejecting_a_message_on_a_closed_channel(
    fixed: bool, scratch_url: str, scratch: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, fixed)
    channel = _channel_holding_a_message(scratch_url)
    message = channel.message
    channel.connection = None  # closed meanwhile, as a late Reject(requeue=True) finds it
    expected = redis.ConnectionError if fixed else AttributeError
    with pytest.raises(expected):
        message.reject(requeue=True)
    assert scratch.hlen(L.UNACKED) == 1
    channel.qos._on_collect.cancel()  # no restore at interpreter exit: the channel stays broken
