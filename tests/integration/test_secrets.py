"""No secret in a broker message, a stored value, a log line (workers, webhook receiver, Flower) or
Flower's API: every provider's credentials, both webhook secrets, the per-job AI Studios webhook token,
the shared AI Studios access token and the S3 output store's secret key, with one job of each kind (its
outputs in the S3 store) and webhooks delivered.

Every message body is base64 (kombu's Redis transport) and a DUMP payload may be compressed, so values
are read with the command of their type and every base64 message body in them is decoded before the
search; commands seen by MONITOR are searched the same way."""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from genq.processes import free_port, start_flower, start_webhooks, stop, wait_http
from genq.redis_server import EmbeddedRedis
from genq.s3_server import S3Server
from producers import Producer
from schemas import JobStatus
from schemas import layout as L
from tests.conftest import AIMI_KEY, AISTUDIOS_APP, AISTUDIOS_KEY, AVATAR, LIPSYNC, SIM_KEY, Sim, until
from worker.providers.aistudios.webhook import webhook_token

pytestmark = pytest.mark.integration

SYNCSO_WEBHOOK_SECRET = "whsec_secrets_test_0123456789abcdef"
AISTUDIOS_WEBHOOK_SECRET = "aistudios-secrets-test-0123456789abcdef"
# A message body as it appears in a value or, escaped, in a MONITOR line.
_BODY = re.compile(r'\\*"body\\*":\s*\\*"([A-Za-z0-9+/=]{8,})\\*"')


def decoded(text: str) -> str:
    """``text`` followed by every base64 message body found in it, decoded (nested bodies too)."""
    parts = [text]
    for match in _BODY.finditer(text):
        try:
            parts.append(decoded(base64.b64decode(match.group(1)).decode("utf-8", "replace")))
        except (binascii.Error, ValueError):
            continue
    return "\n".join(parts)


def values(client: redis.Redis) -> Iterator[tuple[str, str]]:
    """(key, text) of every value in the database, read uncompressed with the command of its type."""
    for raw_key in client.scan_iter("*"):
        key = raw_key.decode()
        kind = client.type(raw_key).decode()
        items: list[Any]
        if kind == "string":
            items = [client.get(raw_key)]
        elif kind == "hash":
            items = [x for pair in client.hgetall(raw_key).items() for x in pair]
        elif kind == "list":
            items = client.lrange(raw_key, 0, -1)
        elif kind == "set":
            items = list(client.smembers(raw_key))
        elif kind == "zset":
            items = [member for member, _ in client.zrange(raw_key, 0, -1, withscores=True)]
        else:
            items = [repr(client.dump(raw_key))]
        for item in items:
            text = item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
            yield key, decoded(text)


@pytest.mark.slow
def test_no_secret_in_messages_stored_values_logs_or_flower(  # noqa: PLR0917
    workers: Callable[..., subprocess.Popen[bytes]],
    own_redis: EmbeddedRedis,
    env: dict[str, str],
    sim: Sim,
    tmp_path: Path,
    s3: S3Server,
) -> None:
    seen: list[str] = []
    monitor_client = redis.Redis.from_url(own_redis.url, socket_timeout=None)  # redis-py 8: 5 s by default
    ready, done = threading.Event(), threading.Event()

    def record() -> None:
        with monitor_client.monitor() as monitor:
            ready.set()
            for command in monitor.listen():
                seen.append(command["command"])
                if done.is_set():
                    return

    thread = threading.Thread(target=record, daemon=True)
    thread.start()
    ready.wait(5)
    sim.configure(webhook_secret=SYNCSO_WEBHOOK_SECRET)
    port, hooks_port = free_port(), free_port()
    secrets_env = {
        "GENQ_SYNCSO__WEBHOOK_SECRET": SYNCSO_WEBHOOK_SECRET,
        "GENQ_AISTUDIOS__WEBHOOK_SECRET": AISTUDIOS_WEBHOOK_SECRET,
        "GENQ_WEBHOOKS__BASE_URL": f"http://127.0.0.1:{hooks_port}",
        **s3.env("secrets"),  # outputs go to the S3 store: its secret key must stay out of sight too
    }
    flower = start_flower({**env, **secrets_env}, port=port, log_path=tmp_path / "flower.log")
    receiver = start_webhooks({**env, **secrets_env}, port=hooks_port, log_path=tmp_path / "webhooks.log")
    workers("secrets", **secrets_env)  # logs at INFO: every task received and every HTTP request line
    producer = Producer(own_redis.url)
    video = tmp_path / "clip.mp4"
    video.write_bytes(os.urandom(256 * 1024))
    try:
        wait_http(f"http://127.0.0.1:{port}/healthcheck", timeout_s=30)
        wait_http(f"http://127.0.0.1:{hooks_port}/health", timeout_s=30)
        time.sleep(1.0)  # Flower subscribes to events once it runs
        jobs = [producer.submit(LIPSYNC), producer.submit(AVATAR), producer.submit(music(video))]
        ended = [producer.wait(j, timeout_s=60) for j in jobs]
        assert [r.status for r in ended] == [JobStatus.SUCCEEDED] * 3
        assert all(o.store_url and o.store_url.startswith("s3://") for r in ended for o in r.outputs)
        lipsync, avatar, music_job = jobs

        def flower_tasks() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/tasks", timeout=5) as response:
                return response.read().decode()

        until(lambda: "genq.aimi.collect" in flower_tasks(), 20, "Flower to list the runs")
        flower_text = flower_tasks()
    finally:
        stop(flower)
        stop(receiver)
        done.set()
        producer.redis.ping()  # one more command so the monitor loop wakes and ends
        thread.join(5)

    token_keys = [k for k in producer.redis.scan_iter(L.PREFIX + "token:*") if not k.endswith(b":lock")]
    tokens = [json.loads(producer.redis.get(k) or b"{}")["token"] for k in token_keys]
    assert len(tokens) == 1  # the AI Studios token is shared through Redis: it must not travel elsewhere
    job_token = webhook_token(AISTUDIOS_WEBHOOK_SECRET, avatar)
    credentials = (SIM_KEY, AISTUDIOS_APP, AISTUDIOS_KEY, AIMI_KEY, SYNCSO_WEBHOOK_SECRET,
                   AISTUDIOS_WEBHOOK_SECRET, job_token, s3.secret_access_key)  # fmt: skip
    monitored = [decoded(c) for c in seen]
    stored = list(values(producer.redis))
    logs = {name: (tmp_path / f"{name}.log").read_text().splitlines() for name in ("secrets", "webhooks",
                                                                                  "flower")}  # fmt: skip

    # The searches look where the secrets would be: message bodies were decoded, and hold the job ids;
    # the logs and Flower saw every kind of job; the webhooks were sent and received.
    assert any(lipsync in text and "genq.syncso.create" in text for text in monitored)
    assert any(f'["{avatar}"]' in text for text in monitored)  # a decoded body's args
    assert any(music_job in text and "genq.aimi." in text for text in monitored)
    assert {L.job_key(lipsync), L.job_key(avatar), L.job_key(music_job)} <= {key for key, _ in stored}
    assert all(job in flower_text for job in jobs)
    assert any("Task genq.syncso.create[" in line for line in logs["secrets"])
    assert any("Task genq.aimi.execute[" in line for line in logs["secrets"])
    assert any("HTTP Request: POST" in line for line in logs["secrets"])
    assert logs["flower"] and logs["webhooks"]
    assert sim.stats()["webhooks"]["delivered"] == 1  # sync.so's signed delivery, with its secret
    assert sim.stats("aistudios")["webhooks"]["delivered"] == 1  # to the URL with the job's token

    secrets = (*credentials, *tokens)
    names = [k.decode() for k in token_keys]
    # The token may travel only to and from its own key.
    assert [c for c in monitored if any(s in c for s in credentials)] == []
    assert [c for c in monitored if any(t in c for t in tokens) and not any(n in c for n in names)] == []
    assert [k for k, text in stored if any(s in text for s in credentials)] == []
    assert [k for k, text in stored if any(t in text for t in tokens) and k.encode() not in token_keys] == []
    for name, lines in logs.items():
        assert [line for line in lines if any(s in line for s in secrets)] == [], name
    assert not any(s in flower_text for s in secrets)


def music(video: Path) -> dict[str, Any]:
    return {"kind": "music", "video": str(video), "executions": 1}
