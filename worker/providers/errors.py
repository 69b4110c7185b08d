"""One error tree for every provider, translated once at the client boundary.

Callers write ``except Throttled`` or ``except ProviderUnavailable``; they never look at status codes.
``retryable`` says whether trying the same call again later can succeed.
"""

from __future__ import annotations

import re
from typing import ClassVar, Final

from schemas.requests import CREDENTIALS

# A credential in a URL's query that a provider may echo in an error body: genq's per-job webhook token
# (AI Studios: ``<base>/aistudios?job=<id>&token=<hmac>``), any ``*token`` and a signed URL's signature,
# with ``=`` plain, percent-encoded or JSON-escaped. The value runs to the next separator.
_QUERY_CREDENTIAL: Final = re.compile(
    r"(?i)((?<![a-z0-9])[a-z0-9_.-]*(?:token|signature)(?:=|%3d|\\u003d))[^&\s\"'<>\\#;,]+"
)


def scrub_tokens(text: str) -> str:
    """``text`` with the value of every token or signature query parameter replaced by ``***``. Every
    ``ProviderError`` message goes through it, so no error stored in a job or logged repeats one."""
    return _QUERY_CREDENTIAL.sub(r"\1***", text)


class ProviderError(Exception):
    """A provider call failed. Carries what an operator needs to find the request at the provider."""

    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status_code: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        failed_provider_ids: tuple[str, ...] = (),
    ) -> None:
        message = scrub_tokens(message)
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status_code = status_code
        self.code = code
        self.request_id = request_id
        # The job's provider ids (by name) of a provider job that failed at the provider: the job
        # records them with its error, and ``genq replay --fresh`` drops them.
        self.failed_provider_ids = failed_provider_ids

    def __str__(self) -> str:
        parts = [f"{self.provider}"]
        if self.status_code is not None:
            parts.append(str(self.status_code))
        if self.code:
            parts.append(self.code)
        return f"[{' '.join(parts)}] {self.message}"


class ProviderUnavailable(ProviderError):
    """Network failure, timeout or a 5xx: the provider may answer later."""

    retryable = True


class Throttled(ProviderError):
    """A 429. ``retry_after_s`` is the provider's Retry-After, if it sent one."""

    retryable = True

    def __init__(self, message: str, *, retry_after_s: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after_s = retry_after_s


class RateLimited(Throttled):
    """A request-rate window is full (sync.so ``rate_limit_exceeded``, Aimi cooldown)."""


class ConcurrencyLimited(Throttled):
    """Too many provider jobs in flight for the account (sync.so ``concurrency_limit_reached``)."""


class AuthFailed(ProviderError):
    """401/403: the key is missing, wrong or expired."""


def credentials_refused(message: str, *, provider: str, title: str) -> str:
    """The message of a 401/403 an API call got: the provider's own, then the settings that hold the
    credentials it refused (``schemas.requests.CREDENTIALS``), so the job's error says what to fix."""
    return f"{message} ({title} refused genq's credentials; check {' and '.join(CREDENTIALS[provider])})"


class PaymentRequired(ProviderError):
    """402: billing or plan state."""


class BadRequest(ProviderError):
    """400/413/422: the provider refused the request itself; sending it again cannot help."""


class NotFound(ProviderError):
    """404: the provider does not know the id."""


class Conflict(ProviderError):
    """409: e.g. an idempotency key reused with another body."""


class JobRejected(ProviderError):
    """The provider job ended in a failure state (sync.so FAILED or REJECTED)."""


class BudgetExceeded(JobRejected):
    """The job's tenant's spend budget cannot take it (``genq_budget_exceeded``): nothing was created."""


class InfrastructureError(ProviderError):
    """genq's own footing failed in the middle of a stage (Redis, the network, the disk): the stage is
    retried with backoff like a provider's 5xx. ``provider`` is ``"genq"``."""

    retryable = True


class InternalError(ProviderError):
    """Anything else a stage raised: a bug. The job fails at once and goes to the dead-letter set, so
    it can be replayed once the bug is fixed. ``provider`` is ``"genq"``."""


SOURCE = "source"  # ``provider`` of a SourceError: the job's own input, not a provider


class SourceError(ProviderError):
    """A URL the job named (a music job's source video) failed or was refused: the job's input, not a
    provider's answer. Never ``Throttled``: a source's 429 or 5xx retries or fails its own job and never
    pauses a provider's budget. ``provider`` is ``"source"``; the message names the URL without its query
    and never quotes what the source sent."""

    def __init__(self, message: str, *, status_code: int | None = None, code: str | None = None) -> None:
        super().__init__(message, provider=SOURCE, status_code=status_code, code=code)


class SourceUnavailable(SourceError):
    """The source failed in a way that may pass (a 429, a 5xx, a cut or stalled connection): the stage
    is retried with backoff, spending a retry of its own job."""

    retryable = True


class SourceRefused(SourceError):
    """The source cannot be used (a 4xx, a host that ignores ``Range``, a size over the cap): permanent."""


class EgressRefused(SourceRefused):
    """The egress policy refused a URL or an address (worker/providers/egress.py)."""


STORE = "store"  # ``provider`` of an output store's errors (GENQ_OUTPUTS__URL)


class OutputStoreFailed(ProviderError):
    """The output store refused genq (its credentials, a missing bucket): permanent until an operator
    acts. Not an ``AuthFailed``: a provider's refused download URL is fetched anew, the store's is not."""


class OutputStoreUnavailable(ProviderUnavailable):
    """The output store failed in a way that may pass (a 5xx, a timeout, no connection): retried."""
