"""Property-based test of the webhook receiver: whatever anyone sends to ``POST /syncso`` or
``POST /aistudios?job=&token=`` is answered 200, 202, 400, 401, 413 or 503, never 500 and never an
exception (httpx's ASGI transport raises whatever the app raises).

Inputs mix what a provider sends with what an attacker might: bodies signed with the secret (valid
deliveries, and signed garbage), forged and stale signatures, truncated bodies, JSON nested past
Python's recursion limit, bytes that are not UTF-8, lone surrogates, ``NaN``, integers of hundreds of
digits, progress values of every type, bodies over the cap, a declared Content-Length that is huge,
negative or not a number, chunked bodies, and content types of every kind; half of them against a
receiver whose Redis is down (503). Against a small body cap (4 KiB), so that 413 comes up often.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from schemas import layout as L
from tests.unit.test_fuzz_requests import EXAMPLES
from worker.providers.aistudios.webhook import webhook_token
from worker.providers.syncso.webhook import sign
from worker.settings import Settings
from worker.webhooks import create_app

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
ALLOWED = {200, 202, 400, 401, 413, 503}
SYNC_SECRET = "whsec_fuzz_0123456789abcdef"
HOOK_SECRET = "aistudios-fuzz-secret"
MAX_BODY_BYTES = 4096
JOB = "job-fuzz"

# --- bodies --------------------------------------------------------------------------------------------

SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
)  # floats: NaN and Infinity too, which json.dumps writes and JSON does not have
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
STATUSES = (
    st.sampled_from(["COMPLETED", "FAILED", "REJECTED", "PENDING", "PROCESSING", "", "completed"]) | JSON
)
GENERATIONS = st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=30) | JSON, "status": STATUSES},
    optional={"outputUrl": st.just("https://x.test/o.mp4"), "error": JSON, "extra": JSON},
)
PROGRESS = (
    st.integers(-(10**500), 10**500)
    | st.floats()
    | st.sampled_from(["100", "99.5", "1e999", "nan", "-inf", " 100 ", "", "1_00", "0x64"])
    | JSON
)
REPORTS = st.fixed_dictionaries(
    {},
    optional={"progress": PROGRESS, "credit": JSON, "backendTaskId": JSON, "download_url": JSON},
)


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def nested(depth: int, opener: bytes, closer: bytes, close: bool) -> bytes:
    inner = b'{"id": "g", "status": "COMPLETED", "x": ' + opener * depth
    return inner + (closer * depth + b"}" if close else b"")


# What the providers send: a good share of the bodies, so that accepted deliveries come up too.
DELIVERED = st.one_of(
    st.fixed_dictionaries(
        {
            "id": st.uuids().map(str),
            "status": st.sampled_from(["COMPLETED", "FAILED", "REJECTED", "PROCESSING"]),
        }
    ),
    st.fixed_dictionaries({"progress": st.sampled_from([100, "100", 100.0, 37, 0])}),
).map(dumps)
BODIES = st.one_of(
    DELIVERED,
    DELIVERED,
    DELIVERED,
    GENERATIONS.map(dumps),
    REPORTS.map(dumps),
    JSON.map(dumps),
    st.tuples(st.integers(1, 200_000), st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]), st.booleans()).map(
        lambda t: nested(t[0], *t[1], t[2])
    ),
    st.tuples(GENERATIONS.map(dumps), st.integers(0, 100)).map(lambda t: t[0][: len(t[0]) * t[1] // 100]),
    st.binary(max_size=300),
    st.text(max_size=100).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.sampled_from(
        [
            b'{"id": "g\\ud800", "status": "COMPLETED"}',
            b'{"id": "g", "status": "COMPLETED", "n": NaN}',
            b'{"progress": Infinity}',
            b'{"id": "g", "status": "COMPLETED", "n": ' + b"9" * 5000 + b"}",
            b'{"progress": ' + b"9" * 400 + b"}",
            b"\xef\xbb\xbf{}",
            b"\x00" * 10,
        ]
    ),
    st.integers(MAX_BODY_BYTES - 10, 3 * MAX_BODY_BYTES).map(lambda n: b'{"pad": "' + b"x" * n + b'"}'),
)

# --- headers -------------------------------------------------------------------------------------------

CONTENT_TYPES = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=utf-16",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "application/octet-stream",
        "\u00ff/\u00fe",
    ]
)
# None: httpx sets the true length (or sends chunks, for a streamed body).
LENGTHS = st.sampled_from(
    [None, None, None, "0", "1", "-1", "abc", "1e9", "99999999999999999999", "4097", "²"]
)
SIGNATURES = st.sampled_from(
    ["valid", "valid", "valid", "forged", "stale", "other body", "missing", "garbage"]
)
TOKENS = st.sampled_from(["valid", "valid", "valid", "wrong", "missing", "no job"])


@dataclass(frozen=True)
class Delivery:
    path: str
    body: bytes
    signature: str  # how /syncso's Sync-Signature is made
    garbage: str  # the Sync-Signature header when ``signature`` is "garbage"
    token: str  # how /aistudios's query is made
    content_type: str | None
    length: str | None  # a Content-Length header instead of the true one
    chunked: bool  # sent in 1000-byte chunks
    redis_up: bool

    def headers(self) -> dict[str, bytes]:
        headers: dict[str, bytes] = {}
        if self.content_type is not None:
            headers["content-type"] = self.content_type.encode("latin-1")
        if self.length is not None:
            headers["content-length"] = self.length.encode("latin-1")
        if self.path == "/syncso":
            value = self.sync_signature()
            if value is not None:
                headers["sync-signature"] = value.encode("latin-1")
        return headers

    def sync_signature(self) -> str | None:
        now = int(time.time())
        secret, t, body = SYNC_SECRET, now, self.body
        if self.signature == "missing":
            return None
        if self.signature == "garbage":
            return self.garbage
        if self.signature == "forged":
            secret = "whsec_someone_else"
        elif self.signature == "stale":
            t = now - 3600
        elif self.signature == "other body":
            body = self.body + b" "
        return f"t={t},v1={sign(secret, t, body)}"

    def params(self) -> dict[str, str]:
        return {
            "valid": {"job": JOB, "token": webhook_token(HOOK_SECRET, JOB)},
            "wrong": {"job": JOB, "token": webhook_token(HOOK_SECRET, "another job")},
            "missing": {"job": JOB},
            "no job": {"token": webhook_token(HOOK_SECRET, "")},
        }[self.token]


DELIVERIES = st.builds(
    Delivery,
    path=st.sampled_from(["/syncso", "/aistudios"]),
    body=BODIES,
    signature=SIGNATURES,
    garbage=st.text(st.characters(max_codepoint=255), max_size=40),
    token=TOKENS,
    content_type=CONTENT_TYPES,
    length=LENGTHS,
    chunked=st.booleans(),
    redis_up=st.booleans(),
)


class Harness:
    """Two receivers (Redis up, on the test's scratch database; Redis down) on one event loop."""

    def __init__(self, scratch_url: str) -> None:
        # The job of /aistudios deliveries has a render, so a report at 100 % looks for its wait.
        with redis.Redis.from_url(scratch_url) as client:
            client.hset(L.job_key(JOB), L.PROVIDER_ID_PREFIX + "project", "p-fuzz")
        self.loop = asyncio.new_event_loop()
        self.clients = {
            up: self._client(url) for up, url in ((True, scratch_url), (False, "redis://127.0.0.1:1/0"))
        }
        self.statuses: dict[int, int] = {}

    def _client(self, redis_url: str) -> httpx.AsyncClient:
        settings = Settings(
            redis_url=redis_url,
            syncso={"webhook_secret": SYNC_SECRET},
            aistudios={"webhook_secret": HOOK_SECRET},
            webhooks={"max_body_bytes": MAX_BODY_BYTES, "body_timeout_s": 5},
        )
        app = create_app(settings, redis.Redis.from_url(redis_url))
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hooks.test")

    def send(self, delivery: Delivery) -> int:
        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(delivery.body), 1000):
                yield delivery.body[start : start + 1000]

        content: Any = chunks() if delivery.chunked else delivery.body
        request = self.clients[delivery.redis_up].post(
            delivery.path,
            content=content,
            headers=delivery.headers(),
            params=delivery.params() if delivery.path == "/aistudios" else None,
        )
        status = self.loop.run_until_complete(request).status_code
        self.statuses[status] = self.statuses.get(status, 0) + 1
        return status

    def close(self) -> None:
        for client in self.clients.values():
            self.loop.run_until_complete(client.aclose())
        self.loop.close()


@pytest.fixture
def harness(scratch_url: str) -> Iterator[Harness]:
    h = Harness(scratch_url)
    yield h
    h.close()
    # Every kind of answer came up, accepted deliveries included.
    assert set(h.statuses) == ALLOWED, h.statuses


GOOD = {
    "signature": "valid",
    "garbage": "",
    "token": "valid",
    "content_type": "application/json",
    "length": None,
}


@FUZZ
@given(delivery=DELIVERIES)
# Accepted deliveries, every run: random ones are a small share.
@example(
    Delivery("/syncso", b'{"id": "g-example", "status": "COMPLETED"}', **GOOD, chunked=False, redis_up=True)
)
@example(Delivery("/aistudios", b'{"progress": 100}', **GOOD, chunked=True, redis_up=True))
@pytest.mark.slow
def test_the_receiver_answers_anything_with_an_expected_status(harness: Harness, delivery: Delivery) -> None:
    status = harness.send(delivery)
    event(f"{delivery.path} {status}")  # --hypothesis-show-statistics shows how often each came up
    assert status in ALLOWED
