"""The AI Studios account's API token, shared by every worker process and host through Redis.

A token comes from ``POST /api/odin/v3/auth/token`` (appId + userKey) and lasts 24 hours. It is kept
at ``TOKEN_KEY`` as JSON ``{"token", "expires_at"}`` (Unix seconds) with a Redis expiry at
``expires_at``, and memoised per process. A token is renewed ``refresh_before_s`` before it expires,
and on demand when the API refuses it (``refresh(stale)``).

One renewal at a time across the fleet: the renewer holds ``TOKEN_LOCK_KEY`` (``SET NX PX``, a random
holder value, released by compare-and-delete). Whoever finds the lock taken keeps using a still-valid
token, or else polls Redis every ``poll_s`` for a token other than the stale one, and takes the lock
itself once a dead holder's lock lapses. The token request's timeouts are kept well inside the lock's
lifetime, so a live holder does not lose its lock mid-request.

Weak spots: a renewal that fails releases the lock, so callers waiting for it each try the request
themselves in turn (their task retries then back off). Should the lock lapse under a slow holder
anyway, two tokens are fetched and the last one written wins; a caller that had the other and is
refused just refreshes once more.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol, Self

import httpx
import redis
from pydantic import SecretStr

from schemas import layout as L
from schemas.requests import CREDENTIALS
from worker.providers.aistudios.api import ENDPOINTS, PROVIDER, unwrap
from worker.providers.errors import AuthFailed, ProviderUnavailable
from worker.providers.http import send_with_connect_retry

if TYPE_CHECKING:
    from worker.providers.aistudios.settings import AIStudiosSettings

log = logging.getLogger(__name__)

# Deletes the lock only while ARGV[1] still holds it: a lapsed lock may belong to someone else now.
_RELEASE_LUA: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class TokenSource(Protocol):
    """What ``TokenAuth`` needs: the current token, and a new one when the API refuses it."""

    def token(self) -> str:
        """A token believed valid."""
        ...

    def refresh(self, stale: str) -> str:
        """A token other than ``stale``, which the API just refused."""
        ...


class TokenAuth(httpx.Auth):
    """Sends the token raw in ``Authorization`` (no "Bearer"). A 401 gets one refresh and one retry: the
    token may have expired early or been replaced by another worker; a second 401 is the caller's."""

    # The refused answer is read before the refresh, so its connection is free for the token request.
    requires_response_body = True

    def __init__(self, tokens: TokenSource) -> None:
        self._tokens = tokens

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._tokens.token()
        request.headers["Authorization"] = token
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = self._tokens.refresh(token)
            yield request


@dataclass(frozen=True)
class IssuedToken:
    token: str = field(repr=False)
    expires_at: float

    def valid(self, now: float, *, margin_s: float = 0.0) -> bool:
        return now < self.expires_at - margin_s


class SharedToken:
    """The account's token, fetched once for every worker (see the module docstring)."""

    def __init__(
        self,
        client: redis.Redis,
        http: httpx.Client,
        *,
        app_id: SecretStr,
        user_key: SecretStr,
        account: str,
        ttl_s: float,
        refresh_before_s: float,
        clock: Callable[[], float] = time.time,
        lock_s: float = 15.0,
        poll_s: float = 0.05,
    ) -> None:
        if not 0 <= refresh_before_s < ttl_s:
            raise ValueError("refresh_before_s must be at least 0 and less than ttl_s")
        self._redis = client
        self._http = http
        self._app_id = app_id
        self._user_key = user_key
        self.account = account
        self._ttl_s = ttl_s
        self._refresh_before_s = refresh_before_s
        self._clock = clock
        self._lock_s = lock_s
        self._poll_s = poll_s
        self._key = L.TOKEN_KEY.format(provider=PROVIDER, account=account)
        self._lock_key = L.TOKEN_LOCK_KEY.format(provider=PROVIDER, account=account)
        self._release = client.register_script(_RELEASE_LUA)
        self._memo: IssuedToken | None = None
        # Two connection attempts, a write and a read all fit in the lock's lifetime.
        self._request_timeout = httpx.Timeout(lock_s / 5)

    @classmethod
    def from_settings(cls, settings: AIStudiosSettings, client: redis.Redis, http: httpx.Client) -> Self:
        """The token of ``settings``' account; ``http`` must carry the API's base URL."""
        return cls(
            client,
            http,
            app_id=settings.app_id,
            user_key=settings.user_key,
            account=settings.account,
            ttl_s=settings.token_ttl_s,
            refresh_before_s=settings.token_refresh_before_s,
        )

    def __repr__(self) -> str:
        return f"SharedToken(account={self.account!r})"

    def token(self) -> str:
        """The current token, renewed first when it is due (``refresh_before_s`` before it expires)."""
        now = self._clock()
        memo = self._memo
        if memo is not None and memo.valid(now, margin_s=self._refresh_before_s):
            return memo.token
        current = self._load()
        if current is not None and current.valid(now, margin_s=self._refresh_before_s):
            self._memo = current
            return current.token
        usable = current if current is not None and current.valid(now) else None
        return self._renew(stale=current.token if current else None, usable=usable)

    def refresh(self, stale: str) -> str:
        """A token other than ``stale``: the one another worker already stored, or a new one."""
        current = self._load()
        if current is not None and current.token != stale and current.valid(self._clock()):
            self._memo = current
            return current.token
        return self._renew(stale=stale, usable=None)

    def _renew(self, *, stale: str | None, usable: IssuedToken | None) -> str:
        deadline = time.monotonic() + 1.5 * self._lock_s
        while True:
            holder = secrets.token_hex(16)
            if self._redis.set(self._lock_key, holder, nx=True, px=round(self._lock_s * 1000)):
                try:
                    return self._renew_holding(stale)
                finally:
                    self._release(keys=[self._lock_key], args=[holder])
            if usable is not None:
                return usable.token  # someone else is renewing it; this one still works meanwhile
            current = self._load()
            if current is not None and current.token != stale and current.valid(self._clock()):
                self._memo = current
                return current.token
            if time.monotonic() >= deadline:
                raise ProviderUnavailable(
                    "timed out waiting for another worker's token request", provider=PROVIDER
                )
            time.sleep(self._poll_s)

    def _renew_holding(self, stale: str | None) -> str:
        # Someone may have stored a new token between our look and taking the lock.
        current = self._load()
        if current is not None and current.token != stale and current.valid(self._clock()):
            self._memo = current
            return current.token
        issued = self._request()
        ttl_ms = round((issued.expires_at - self._clock()) * 1000)
        value = json.dumps({"token": issued.token, "expires_at": issued.expires_at})
        self._redis.set(self._key, value, px=max(ttl_ms, 1))
        self._memo = issued
        log.info("new %s token for account %s, expires at %.0f", PROVIDER, self.account, issued.expires_at)
        return issued.token

    def _request(self) -> IssuedToken:
        app_id, user_key = self._app_id.get_secret_value(), self._user_key.get_secret_value()
        if not (app_id and user_key):
            unset = " and ".join(CREDENTIALS[PROVIDER])
            raise AuthFailed(f"{unset} are not set", provider=PROVIDER)
        # The token's 24 hours start at the server's issue time, after this instant: a safe underestimate.
        issued_at = self._clock()
        method, path = ENDPOINTS["token"]
        request = self._http.build_request(
            method,
            path,
            json={"appId": app_id, "userKey": user_key},
            timeout=self._request_timeout,
        )
        response = send_with_connect_retry(self._http, request, attempts=2, provider=PROVIDER)
        data = unwrap(response, secrets=[app_id, user_key])
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise ProviderUnavailable("token response has no data.token", provider=PROVIDER)
        return IssuedToken(token, issued_at + self._ttl_s)

    def _load(self) -> IssuedToken | None:
        raw: Any = self._redis.get(self._key)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return IssuedToken(str(data["token"]), float(data["expires_at"]))
        except (ValueError, KeyError, TypeError):
            return None  # unreadable: as if absent, so it gets replaced
