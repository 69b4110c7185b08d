"""The shared AI Studios token against a real Redis (the session's private server)."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, NamedTuple, TypeVar

import httpx
import pytest
import redis
from pydantic import SecretStr

from schemas import layout as L
from worker.providers.aistudios.api import ENDPOINTS
from worker.providers.aistudios.client import AIStudiosClient
from worker.providers.aistudios.settings import AIStudiosSettings
from worker.providers.aistudios.tokens import IssuedToken, SharedToken
from worker.providers.errors import AuthFailed, ProviderError, ProviderUnavailable, RateLimited
from worker.providers.http import make_http_client

BASE_URL = "https://app.aistudios.test"
APP_ID = "app-id-SECRET-7f3a"
USER_KEY = "user-key-SECRET-91bc"
TOKEN_PATH = ENDPOINTS["token"][1]
TTL_S = 86_400.0
BEFORE_S = 3_600.0
T0 = 1_700_000_000.0

Handler = Callable[[httpx.Request], httpx.Response]
_T = TypeVar("_T")


def ok(data: Any) -> dict[str, Any]:
    return {"success": True, "data": data}


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Server:
    """AI Studios' token endpoint and progress endpoint, counting the tokens it issues."""

    def __init__(self, delay_s: float = 0.05) -> None:
        self.delay_s = delay_s
        self.lock = threading.Lock()
        self.issued: list[str] = []
        self.bodies: list[Any] = []
        self.valid: set[str] = set()
        self.during_issue: Callable[[], None] = lambda: None

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == TOKEN_PATH:
            assert "authorization" not in request.headers
            time.sleep(self.delay_s)  # long enough for concurrent callers to find the lock taken
            self.during_issue()
            with self.lock:
                token = f"tok-{len(self.issued) + 1}"
                self.issued.append(token)
                self.bodies.append(json.loads(request.content))
                self.valid.add(token)
            return httpx.Response(200, json=ok({"token": token}))
        if request.headers.get("authorization") not in self.valid:
            return httpx.Response(401, json={"success": False, "error": {"code": 401, "msg": "expired"}})
        return httpx.Response(200, json=ok({"progress": 50}))

    def expire_all(self) -> None:
        """The server drops every token early (before the 24 h are up)."""
        with self.lock:
            self.valid.clear()


@pytest.fixture
def account() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
def server() -> Server:
    return Server()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_source(
    redis_client: redis.Redis, account: str, server: Server, clock: Clock
) -> Iterator[Callable[..., SharedToken]]:
    """A SharedToken per call: each is one worker process with its own memo and HTTP client."""
    clients: list[httpx.Client] = []

    def factory(handler: Handler | None = None, **overrides: Any) -> SharedToken:
        http = httpx.Client(base_url=BASE_URL, transport=httpx.MockTransport(handler or server.handler))
        clients.append(http)
        options: dict[str, Any] = {
            "app_id": SecretStr(APP_ID),
            "user_key": SecretStr(USER_KEY),
            "account": account,
            "ttl_s": TTL_S,
            "refresh_before_s": BEFORE_S,
            "clock": clock,
        }
        return SharedToken(redis_client, http, **(options | overrides))

    yield factory
    for http in clients:
        http.close()


def keys(account: str) -> tuple[str, str]:
    return (
        L.TOKEN_KEY.format(provider="aistudios", account=account),
        L.TOKEN_LOCK_KEY.format(provider="aistudios", account=account),
    )


def run_together(calls: Sequence[Callable[[], _T]]) -> list[_T]:
    """Run every call in its own thread, released at once; re-raise the first failure."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], _T]) -> _T:
        barrier.wait(timeout=10)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def assert_no_secret(error: BaseException) -> None:
    for text in (str(error), repr(error), getattr(error, "message", "")):
        assert APP_ID not in text
        assert USER_KEY not in text


# --- fetching and caching --------------------------------------------------------------------


def test_first_token_is_requested_and_stored(make_source, redis_client, server, account) -> None:
    assert make_source().token() == "tok-1"
    assert server.bodies == [{"appId": APP_ID, "userKey": USER_KEY}]
    key, lock = keys(account)
    assert json.loads(redis_client.get(key)) == {"token": "tok-1", "expires_at": T0 + TTL_S}
    assert 0 < redis_client.pttl(key) <= TTL_S * 1000
    assert not redis_client.exists(lock)


def test_many_calls_from_many_workers_make_one_request(make_source, server) -> None:
    sources = [make_source() for _ in range(5)]
    calls = [source.token for source in sources for _ in range(10)]
    assert set(run_together(calls)) == {"tok-1"}
    assert set(run_together(calls)) == {"tok-1"}
    assert server.issued == ["tok-1"]


def test_another_worker_reads_the_stored_token(make_source, server) -> None:
    make_source().token()
    assert make_source().token() == "tok-1"
    assert server.issued == ["tok-1"]


def test_unreadable_stored_value_is_replaced(make_source, redis_client, server, account) -> None:
    redis_client.set(keys(account)[0], "not json")
    assert make_source().token() == "tok-1"
    assert server.issued == ["tok-1"]


# --- refresh after a 401 ---------------------------------------------------------------------


def test_concurrent_refreshes_make_one_request(make_source, server) -> None:
    stale = make_source().token()
    sources = [make_source() for _ in range(20)]
    assert set(run_together([partial(source.refresh, stale) for source in sources])) == {"tok-2"}
    # A job that learns of the expiry later takes the new token without a request.
    assert make_source().refresh(stale) == "tok-2"
    assert server.issued == ["tok-1", "tok-2"]


def test_refresh_takes_a_newer_stored_token_without_a_request(make_source, server) -> None:
    first, second = make_source(), make_source()
    stale = first.token()
    assert second.refresh(stale) == "tok-2"
    assert first.refresh(stale) == "tok-2"
    assert first.token() == "tok-2"
    assert server.issued == ["tok-1", "tok-2"]


def test_early_server_expiry_costs_one_more_request_for_every_client(make_source, server) -> None:
    clients = [
        AIStudiosClient(make_http_client(BASE_URL, connect_timeout_s=1, read_timeout_s=3, headers={},
                                         transport=httpx.MockTransport(server.handler)), make_source())
        for _ in range(5)
    ]  # fmt: skip
    calls = [partial(client.progress, "p-1") for client in clients for _ in range(10)]
    assert {progress.progress for progress in run_together(calls)} == {50.0}
    assert server.issued == ["tok-1"]
    server.expire_all()
    assert {progress.progress for progress in run_together(calls)} == {50.0}
    assert server.issued == ["tok-1", "tok-2"]
    for client in clients:
        client.close()


# --- renewal before expiry -------------------------------------------------------------------


def test_renewed_before_it_expires(make_source, server, clock) -> None:
    first, second = make_source(), make_source()
    assert first.token() == second.token() == "tok-1"
    clock.now = T0 + TTL_S - BEFORE_S - 1
    assert first.token() == second.token() == "tok-1"
    clock.now += 2
    assert first.token() == "tok-2"
    assert second.token() == "tok-2"  # its memo is due too, and Redis has the new one
    assert server.issued == ["tok-1", "tok-2"]


def test_due_token_is_used_while_another_worker_renews(make_source, redis_client, server, clock, account):
    source = make_source()
    source.token()
    clock.now = T0 + TTL_S - 10
    redis_client.set(keys(account)[1], "another-worker", px=10_000)
    started = time.monotonic()
    assert source.token() == "tok-1"
    assert time.monotonic() - started < 1
    assert server.issued == ["tok-1"]


def test_expired_token_is_replaced(make_source, server, clock) -> None:
    source = make_source()
    source.token()
    clock.now = T0 + TTL_S + 1
    assert source.token() == "tok-2"


# --- the lock --------------------------------------------------------------------------------


def test_dead_lock_holder_blocks_only_until_its_lock_lapses(make_source, redis_client, server, account):
    stale = make_source().token()
    redis_client.set(keys(account)[1], "dead-worker", px=400)
    started = time.monotonic()
    assert make_source(lock_s=1.0).refresh(stale) == "tok-2"
    assert 0.3 < time.monotonic() - started < 5
    assert server.issued == ["tok-1", "tok-2"]


def test_waiting_for_a_stuck_holder_is_bounded(make_source, redis_client, server, account) -> None:
    stale = make_source().token()
    redis_client.set(keys(account)[1], "stuck-worker", px=60_000)
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable, match="another worker"):
        make_source(lock_s=0.2).refresh(stale)
    assert time.monotonic() - started < 3
    assert server.issued == ["tok-1"]


def test_lock_is_released_only_by_its_holder(make_source, redis_client, server, account) -> None:
    lock = keys(account)[1]
    source = make_source()
    source.token()
    assert not redis_client.exists(lock)

    def lock_lapses_and_another_worker_takes_it() -> None:
        redis_client.set(lock, "successor", px=10_000)

    server.during_issue = lock_lapses_and_another_worker_takes_it
    source.refresh("tok-1")
    assert redis_client.get(lock) == b"successor"


# --- failures and secrets --------------------------------------------------------------------


def _connect_error(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def _reply(status_code: int, body: Any, headers: dict[str, str] | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, dict):
            return httpx.Response(status_code, json=body, headers=headers)
        return httpx.Response(status_code, content=body, headers=headers)

    return handler


def _refused(code: str, msg: str) -> dict[str, Any]:
    return {"success": False, "error": {"code": code, "msg": msg}}


class Failure(NamedTuple):
    name: str
    handler: Handler
    expected: type[ProviderError]


TOKEN_FAILURES = [
    ("401", _reply(401, _refused("INVALID_CREDENTIALS", f"bad appId {APP_ID}")), AuthFailed),
    ("200 refused", _reply(200, _refused("INVALID_CREDENTIALS", f"userKey {USER_KEY}?")), AuthFailed),
    ("429", _reply(429, _refused("TOO_MANY", "slow down"), {"Retry-After": "3"}), RateLimited),
    ("500", _reply(500, _refused("INTERNAL", f"failed for {APP_ID}")), ProviderUnavailable),
    ("502 html", _reply(502, b"<html>Bad Gateway</html>"), ProviderUnavailable),
    ("200 without token", _reply(200, ok({})), ProviderUnavailable),
    ("200 not JSON", _reply(200, f"echo {USER_KEY}".encode()), ProviderUnavailable),
    ("connect error", _connect_error, ProviderUnavailable),
]


@pytest.mark.parametrize(
    "case", [Failure(*row) for row in TOKEN_FAILURES], ids=[r[0] for r in TOKEN_FAILURES]
)
def test_token_request_failures(make_source, redis_client, account, case: Failure) -> None:
    with pytest.raises(ProviderError) as info:
        make_source(case.handler).token()
    assert type(info.value) is case.expected
    assert_no_secret(info.value)
    if isinstance(info.value, RateLimited):
        assert info.value.retry_after_s == 3.0
    key, lock = keys(account)
    assert not redis_client.exists(key)
    assert not redis_client.exists(lock)  # the next caller may try at once


def test_missing_credentials_fail_without_a_request(make_source, server) -> None:
    with pytest.raises(AuthFailed, match="GENQ_AISTUDIOS__APP_ID and GENQ_AISTUDIOS__USER_KEY are not set"):
        make_source(user_key=SecretStr("")).token()
    assert server.issued == []


def test_reprs_show_no_secret(make_source) -> None:
    source = make_source()
    token = source.token()
    for text in (repr(source), str(source), repr(IssuedToken(token, T0))):
        assert token not in text
        assert APP_ID not in text
        assert USER_KEY not in text


def test_refresh_window_must_be_shorter_than_the_token(make_source) -> None:
    with pytest.raises(ValueError, match="refresh_before_s"):
        make_source(refresh_before_s=TTL_S)


def test_from_settings_uses_the_settings_account(redis_client) -> None:
    settings = AIStudiosSettings(app_id=SecretStr(uuid.uuid4().hex), user_key=SecretStr(USER_KEY))
    with httpx.Client(base_url=BASE_URL) as http:
        source = SharedToken.from_settings(settings, redis_client, http)
    assert source.account == settings.account
    client = AIStudiosClient.from_settings(settings, redis_client)
    assert str(client._http.base_url) == "https://app.aistudios.com"
    client.close()


# --- several processes -----------------------------------------------------------------------


def _process(
    redis_url: str, account: str, *, stale: str | None, barrier: Any, results: str, count: str
) -> None:
    """One worker process: 5 threads ask for the token (or refresh ``stale``) at once."""
    client = redis.Redis.from_url(redis_url)

    def handler(request: httpx.Request) -> httpx.Response:
        time.sleep(0.05)
        return httpx.Response(200, json=ok({"token": f"tok-{client.incr(count)}"}))

    with httpx.Client(base_url=BASE_URL, transport=httpx.MockTransport(handler)) as http:
        source = SharedToken(client, http, app_id=SecretStr(APP_ID), user_key=SecretStr(USER_KEY),
                             account=account, ttl_s=TTL_S, refresh_before_s=BEFORE_S)  # fmt: skip
        barrier.wait(timeout=60)
        with ThreadPoolExecutor(5) as pool:
            call = source.token if stale is None else partial(source.refresh, stale)
            got = [future.result() for future in [pool.submit(call) for _ in range(5)]]
    client.rpush(results, *got)
    client.close()


@pytest.mark.slow
def test_several_processes_make_one_request_and_one_more_after_expiry(redis_client, account) -> None:
    kwargs = redis_client.connection_pool.connection_kwargs
    redis_url = f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"
    context = multiprocessing.get_context("spawn")
    count = f"test:aistudios:{account}:issued"

    def round_of(stale: str | None) -> set[bytes]:
        results = f"test:aistudios:{account}:results:{uuid.uuid4().hex}"
        barrier = context.Barrier(3)
        processes = [
            context.Process(
                target=_process,
                args=(redis_url, account),
                kwargs={"stale": stale, "barrier": barrier, "results": results, "count": count},
            )
            for _ in range(3)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=90)
            assert process.exitcode == 0
        assert redis_client.llen(results) == 15
        return set(redis_client.lrange(results, 0, -1))

    assert round_of(None) == {b"tok-1"}
    assert redis_client.get(count) == b"1"
    assert round_of("tok-1") == {b"tok-2"}
    assert redis_client.get(count) == b"2"
