"""The settings every provider section is built from: HTTP timeouts, rate budgets and the fields each
provider's section has (``ProviderSettings``). Provider packages import these; ``worker.settings``
puts the sections together, so it can import the provider registry without a cycle."""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, Field


class HttpSettings(BaseModel):
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(30.0, gt=0)


class RateBudgetSettings(BaseModel):
    """At most ``limit`` calls in any ``period_s`` window. ``guard_s`` widens the window genq plans for,
    so that network jitter between genq and the provider never puts limit + 1 calls into one of the
    provider's windows (0.25 s of 60 s costs 0.4% of the rate)."""

    limit: int = Field(gt=0)
    period_s: float = Field(60.0, gt=0)
    guard_s: float = Field(0.25, ge=0)


class ProviderSettings(BaseModel):
    """What every provider section has. ``GENQ_<PROVIDER>__CONCURRENCY`` is the size of the account's
    pool of provider jobs in flight (None: the provider section says how it is derived)."""

    http: HttpSettings = HttpSettings()
    concurrency: int | None = Field(None, gt=0)
    # A parked provider job is checked this often by the account's status sweep (and first this long
    # after create); webhooks, when configured, end the wait sooner.
    check_interval_s: float = Field(10.0, gt=0)
    # A provider job that has not ended this long after create fails the job (genq_wait_timeout).
    max_wait_s: float = Field(7200.0, gt=0)
    max_output_bytes: int = Field(5 * 1024**3, gt=0)
    # What one provider job costs (USD) where the provider gives no estimate before it runs (AI Studios: an
    # export; Aimi: an execution); None: unknown (a job of a tenant with a spend budget is then refused,
    # unless the budget admits jobs of unknown cost at a stated price). sync.so estimates each job itself.
    price_usd: float | None = Field(None, ge=0)

    @property
    def configured(self) -> bool:
        """Whether the account's credentials are set: only then do workers sweep it and does
        ``genq limits`` show its budgets."""
        raise NotImplementedError

    @property
    def account(self) -> str:
        """Names the account in Redis keys and reports without revealing its credentials."""
        raise NotImplementedError

    @property
    def plan_name(self) -> str | None:
        """The account's plan as these settings name it, where plans differ in what they run (sync.so:
        batches); workers register it in Redis (``layout.PLANS_KEY``) for producers to check at submit."""
        return None


def account_label(secret: str) -> str:
    """12 hex characters of the SHA-256 of a credential: stable per account, reveals nothing."""
    return hashlib.sha256(secret.encode()).hexdigest()[:12]
