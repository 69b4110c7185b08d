"""The webhook receiver's caps and refusals, driven in process over ASGI (no sockets): a body over the cap
is refused by its Content-Length before a byte is read, or as it streams; a body that does not arrive in
time is 408; deliveries past the concurrency cap are 503; a body a handler cannot use is 400, never 500.
(The same over real sockets, with uvicorn: ``tests/integration/test_webhooks_server.py``.)"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import redis
from starlette.types import ASGIApp, Message

from worker.providers.aistudios.webhook import webhook_token
from worker.providers.syncso.webhook import sign
from worker.settings import Settings, WebhookSettings
from worker.webhooks import MAX_JSON_DEPTH, Unusable, create_app, json_object

SYNC_SECRET = "whsec_receiver_unit_0123456789"
HOOK_SECRET = "aistudios-receiver-unit-secret"
DOWN = "redis://127.0.0.1:1/0"  # nothing listens there: a receiver whose Redis is down
JOB = "job-receiver-unit"

Receive = Callable[[], Awaitable[Message]]


def make_app(redis_url: str = DOWN, **webhooks: Any) -> ASGIApp:
    settings = Settings(
        redis_url=redis_url,
        syncso={"webhook_secret": SYNC_SECRET},
        aistudios={"webhook_secret": HOOK_SECRET},
        webhooks=webhooks,
    )
    return create_app(settings, redis.Redis.from_url(redis_url))


def signed(body: bytes, *, secret: str = SYNC_SECRET, t: int | None = None) -> dict[str, str]:
    t = int(time.time()) if t is None else t
    return {"sync-signature": f"t={t},v1={sign(secret, t, body)}", "content-type": "application/json"}


AISTUDIOS = f"/aistudios?job={JOB}&token={webhook_token(HOOK_SECRET, JOB)}"


def post(app: ASGIApp, url: str, body: bytes, headers: dict[str, Any] | None = None) -> httpx.Response:
    """One POST through httpx's ASGI transport: an exception in the app fails the test."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hooks.test") as client:
            return await client.post(url, content=body, headers=headers or {})

    return asyncio.run(send())


async def raw(
    app: ASGIApp, path: str, headers: dict[str, str], receive: Receive
) -> tuple[int, dict[str, str]]:
    """A POST driven message by message, so a test decides how the body arrives (or does not)."""
    path, _, query = path.partition("?")
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
        "root_path": "", "client": ("127.0.0.1", 50000), "server": ("hooks.test", 80),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }  # fmt: skip
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}


class Trickle:
    """A sender's body, in ``chunk``-byte pieces each ``gap_s`` after the last, that never ends or, after
    ``stall_after`` pieces, stalls. A receiver that goes on reading fails the test, boundedly: past
    ``MAX_PIECES`` pieces, or after a stall of ``STALL_S`` (it would otherwise hold memory or hang)."""

    MAX_PIECES = 200
    STALL_S = 5.0

    def __init__(self, chunk: int = 65536, gap_s: float = 0.0, stall_after: int | None = None) -> None:
        self.chunk, self.gap_s, self.stall_after = chunk, gap_s, stall_after
        self.calls = 0

    async def __call__(self) -> Message:
        self.calls += 1
        if self.stall_after is not None and self.calls > self.stall_after:
            await asyncio.sleep(self.STALL_S)
            raise AssertionError(f"still reading after a stall of {self.STALL_S:g} s")
        if self.calls > self.MAX_PIECES:
            raise AssertionError(f"read on past {self.MAX_PIECES} pieces of {self.chunk} bytes")
        await asyncio.sleep(self.gap_s)
        return {"type": "http.request", "body": b"x" * self.chunk, "more_body": True}


async def never_read() -> Message:
    raise AssertionError("the body was read")


# --- finding 3: the body cap, the body deadline, the concurrency cap --------------------------------------


@pytest.mark.parametrize("path", ["/syncso", AISTUDIOS])
@pytest.mark.parametrize("declared", ["1048577", "1073741824", "9" * 40])
def test_a_body_declared_over_the_cap_is_413_before_a_byte_is_read(path: str, declared: str) -> None:
    status, headers = asyncio.run(raw(make_app(), path, {"content-length": declared}, never_read))
    assert status == 413
    assert headers["connection"] == "close"  # uvicorn closes it: the rest of the body is never read


@pytest.mark.parametrize("path", ["/syncso", AISTUDIOS])
def test_a_body_without_a_length_is_cut_off_once_past_the_cap(path: str) -> None:
    body = Trickle(chunk=65536)  # never ends: 64 KiB after 64 KiB
    status, headers = asyncio.run(raw(make_app(max_body_bytes=200_000), path, {}, body))
    assert (status, headers["connection"]) == (413, "close")
    assert body.calls == 4  # 4 * 64 KiB is the first count over 200,000 bytes: nothing more is read


@pytest.mark.parametrize("declared", ["abc", "-1", "1e6", "0x10", "²"])
def test_a_content_length_that_is_not_a_number_is_400(declared: str) -> None:
    status, _ = asyncio.run(raw(make_app(), "/syncso", {"content-length": declared}, never_read))
    assert status == 400


def test_a_body_that_stalls_is_408_at_the_body_timeout() -> None:
    body = Trickle(chunk=100, stall_after=1)  # one piece, then nothing
    started = time.monotonic()
    status, headers = asyncio.run(raw(make_app(body_timeout_s=0.3), "/syncso", {}, body))
    took_s = time.monotonic() - started
    assert (status, headers["connection"]) == (408, "close")
    assert 0.3 <= took_s < 2


def test_a_body_sent_a_byte_at_a_time_is_408_at_the_body_timeout_however_steady() -> None:
    body = Trickle(chunk=1, gap_s=0.05)  # always a byte coming, never the end
    status, _ = asyncio.run(raw(make_app(body_timeout_s=0.5), AISTUDIOS, {}, body))
    assert status == 408
    assert body.calls < 20


def test_deliveries_past_the_concurrency_cap_are_503_at_once_and_later_ones_are_served() -> None:
    app = make_app(max_concurrency=2)
    release = asyncio.Event()

    async def held() -> Message:  # a body that arrives only once the test says so
        await release.wait()
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def scenario() -> tuple[list[int], int, int]:
        first = [asyncio.create_task(raw(app, "/syncso", {}, held)) for _ in range(2)]
        await asyncio.sleep(0.05)
        started = time.monotonic()
        over, _ = await raw(app, "/syncso", {}, never_read)
        assert time.monotonic() - started < 0.5
        release.set()
        done = [status for status, _ in await asyncio.gather(*first)]
        after, _ = await raw(app, "/syncso", {}, held)
        return done, over, after

    done, over, after = asyncio.run(scenario())
    assert over == 503
    assert done == [401, 401] and after == 401  # unsigned: read, then refused by the handler


def test_the_caps_are_settings_with_their_documented_defaults() -> None:
    hooks = WebhookSettings()
    assert (hooks.max_body_bytes, hooks.body_timeout_s, hooks.max_concurrency) == (1_048_576, 10.0, 64)


# --- finding 8: 400 for any body the receiver cannot use, never 500 ---------------------------------------


@pytest.mark.parametrize(
    "progress",
    [int("9" * 400), "9" * 400, float("nan"), float("inf"), "NaN", "-Infinity", True, None, [100], {"p": 1}],
)
def test_an_aistudios_report_whose_progress_is_no_finite_number_is_400(progress: Any) -> None:
    body = json.dumps({"progress": progress, "credit": 3}).encode()
    assert post(make_app(), AISTUDIOS, body).status_code == 400


def test_a_signed_syncso_body_nested_past_pythons_recursion_limit_is_400() -> None:
    body = b'{"id": "g1", "status": "COMPLETED", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert post(make_app(), "/syncso", body, signed(body)).status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,  # nested and truncated
        b'{"a": ' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1),  # deeper than any delivery
        b'{"id": "g1", "status": "COMPLETED"',  # truncated
        b"\xff\xfe{not utf-8",
        b"",
        b"not json",
        b'["g1", "COMPLETED"]',
        b'{"id": "g1", "status": "COMPLETED", "error": NaN}',
        b'{"id": "g1", "status": "COMPLETED", "n": ' + b"9" * 5000 + b"}",  # past int's digit limit
        b'{"id": "g\\ud800", "status": "COMPLETED"}',  # a lone surrogate: no Redis key, no stored JSON
        b'{"id": 7, "status": "COMPLETED"}',
        b'{"id": "", "status": "COMPLETED"}',
        b'{"id": "g1", "status": ["COMPLETED"]}',
        b'{"id": "g1"}',
    ],
)
def test_a_signed_syncso_body_that_is_not_a_generation_is_400(body: bytes) -> None:
    assert post(make_app(), "/syncso", body, signed(body)).status_code == 400


@pytest.mark.parametrize(
    "header",
    ["t=²,v1=00", "t=" + "1" * 5000 + ",v1=00", "t=,v1=", ",,,", "v1=" + "a" * 64, "t=1;v1=2"],
)
def test_a_malformed_signature_header_is_401(header: str) -> None:
    body = b'{"id": "g1", "status": "COMPLETED"}'
    headers = {"sync-signature": header.encode("latin-1")}  # as a server decodes header bytes
    assert post(make_app(), "/syncso", body, headers).status_code == 401


def test_json_object_accepts_what_a_provider_sends() -> None:
    body = {"id": "g1", "status": "COMPLETED", "input": [{"type": "video", "url": "https://x.test/v"}]}
    assert json_object(json.dumps(body).encode()) == body
    nested: Any = 1
    for _ in range(MAX_JSON_DEPTH - 1):
        nested = [nested]
    assert json_object(json.dumps({"a": nested}).encode())["a"] == nested
    with pytest.raises(Unusable):
        json_object(json.dumps({"a": [nested]}).encode())


# --- what still holds: Redis down is 503, a good delivery is accepted --------------------------------------


def test_with_redis_down_a_signed_delivery_is_503_and_a_forged_one_still_401() -> None:
    body = b'{"id": "g-down", "status": "COMPLETED"}'
    assert post(make_app(), "/syncso", body, signed(body)).status_code == 503
    assert post(make_app(), "/syncso", body, signed(body, secret="whsec_other")).status_code == 401
    report = json.dumps({"progress": 100}).encode()
    assert post(make_app(), AISTUDIOS, report).status_code == 503


def test_a_signed_delivery_within_the_caps_is_accepted(scratch_url: str) -> None:
    body = json.dumps({"id": f"g-{time.time_ns()}", "status": "COMPLETED", "pad": "x" * 60_000}).encode()
    response = post(make_app(scratch_url, max_body_bytes=len(body)), "/syncso", body, signed(body))
    assert (response.status_code, response.json()) == (200, {"woken": False})  # nothing parked for it
    report = json.dumps({"progress": "100"}).encode()
    response = post(make_app(scratch_url), AISTUDIOS, report)
    assert (response.status_code, response.json()) == (202, {"ignored": "no such render"})
