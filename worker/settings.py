"""Worker settings: environment variables with the ``GENQ_`` prefix and ``__`` for nesting.

``GENQ_REDIS_URL``, ``GENQ_RETRY__MAX_RETRIES`` ... and one section per provider of the registry,
named after it: ``GENQ_SYNCSO__API_KEY``, ``GENQ_AISTUDIOS__BASE_URL`` (each provider's section is its
own module, ``worker/providers/<name>/settings.py``, and ``registry.ProviderSections`` lists them).
Every provider base URL is a setting, so the same workers talk to the real API or to a simulator.
Secrets are ``SecretStr``: they print as ``**********`` in reprs and logs; the Redis URL, which may
hold a password, is a ``RedisUrl`` and prints without it (``redis://***@host:6379/0``).
"""

from __future__ import annotations

import difflib
import logging
import os
import types
import typing
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Self

import redis
from pydantic import BaseModel, Field, FilePath, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.caps import Caps
from schemas.redis_url import RedisUrl, tls_options
from storage.settings import OutputSettings
from worker.limits import LimitsSettings
from worker.providers.egress import EgressSettings
from worker.providers.registry import ProviderSections

log = logging.getLogger(__name__)

PREFIX = "GENQ_"
# GENQ_ variables genq reads outside ``Settings``: not settings, but not misspellings either.
OTHER_VARIABLES = frozenset({"GENQ_REDIS_SERVER_BIN"})  # genq/redis_server.py: the redis-server to run
_warned: set[str] = set()


class WaitSettings(BaseModel):
    """Parked waits and the Redis-side schedule (worker/waits.py, worker/sweep.py, worker/schedule.py)."""

    # Only the holder of an account's sweep lease sends its status requests; when the holder dies,
    # another worker takes over within this long.
    sweep_lease_s: float = Field(5.0, gt=0)
    # A mover sleeps at most this long when no announcement of a newly scheduled entry wakes it.
    mover_max_sleep_s: float = Field(0.1, gt=0)


class RunSettings(BaseModel):
    """Stage runs in progress and the reconciler (worker/heartbeat.py, worker/reconcile.py)."""

    # Each worker renews, this often, the run lease of every stage it runs and the unacknowledged-message
    # entry of every message it holds, so neither lapses while it is alive. At most a third of
    # GENQ_VISIBILITY_TIMEOUT_S. A run lease lapses three quarters of that timeout after its worker's last
    # heartbeat (until then, a copy of the same message delivered again is not run beside it), so it has
    # lapsed by the time kombu hands a dead worker's message to another worker.
    heartbeat_s: float = Field(5.0, gt=0)
    # The reconciler (one worker at a time) looks this often for running jobs with no message anywhere
    # and for pool slots held by no running step.
    reconcile_every_s: float = Field(5.0, gt=0)
    # A running job is looked for once it has not moved for this long.
    stale_s: float = Field(30.0, gt=0)
    # Only the holder of the reconciler's lease reconciles; another worker takes over this long after it
    # stops renewing.
    leader_lease_s: float = Field(15.0, gt=0)


class WebhookSettings(BaseModel):
    """Where providers deliver webhooks: the public URL of `genq webhooks` (unset: genq polls only), and
    what the receiver spends on a sender before it knows whether the delivery is genuine."""

    base_url: str | None = None
    # Deliveries signed longer ago than this are refused (replays).
    tolerance_s: float = Field(300.0, gt=0)
    # A body over this many bytes is refused (413) unread: by its Content-Length, or as it arrives when it
    # has none (chunked). A provider's delivery is a few kilobytes.
    max_body_bytes: int = Field(1_048_576, gt=0)
    # The whole body must arrive within this long after the request's headers, else 408: a sender that
    # trickles its body holds a slot for this long at most.
    body_timeout_s: float = Field(10.0, gt=0)
    # Deliveries handled at once; one more is answered 503 at once (a lost delivery costs only latency:
    # the status sweep sees the end). `genq webhooks` also keeps at most this many connections open.
    max_concurrency: int = Field(64, gt=0)

    def url_for(self, provider: str) -> str | None:
        return None if not self.base_url else f"{self.base_url.rstrip('/')}/{provider}"


class TimeLimitSettings(BaseModel):
    """How long one run of a stage may take (Celery's soft and hard time limits, prefork pool). A run
    past its soft limit is stopped where it is and retried like a network error (``genq_stage_timeout``),
    up to ``retry.max_retries``, then the job fails; one still running ``grace_s`` later is killed with
    its process and the job fails (dead-lettered). Waits are not runs: a parked stage holds no limit."""

    # Stages that make a few API calls (create, a status check, analyses, a plan): a call is at most
    # its connect and read timeouts (5 s + 30 s by default), and a 20 MB multipart create fits too.
    api_s: float = Field(300.0, gt=0)
    # Stages that move a file: downloads of outputs (up to 5 GiB), media-library uploads, Aimi chunks
    # (30 MB each, read from the source and sent on).
    transfer_s: float = Field(3600.0, gt=0)
    # The hard limit is the soft one plus this: time to record the retry or the failure.
    grace_s: float = Field(30.0, gt=0)
    # Task name -> soft limit (s), overriding its kind's (JSON: {"genq.syncso.download": 7200}).
    tasks: dict[str, float] = {}

    def soft_s(self, task: str, transfer: bool) -> float:
        return self.tasks.get(task, self.transfer_s if transfer else self.api_s)


class RetrySettings(BaseModel):
    max_retries: int = Field(8, ge=0)
    backoff_base_s: float = Field(2.0, gt=0)
    backoff_cap_s: float = Field(300.0, gt=0)


class Settings(BaseSettings, ProviderSections):
    """genq's own settings, and from ``ProviderSections`` a typed section per provider of the registry."""

    model_config = SettingsConfigDict(env_prefix="GENQ_", env_nested_delimiter="__", extra="ignore")

    # One Redis is the broker, the result backend, the job store and the budgets: a submit writes a job's
    # record and its first message in one transaction, and the limiter pushes a woken stage's message in
    # the same script that grants its slot, so they cannot live on different servers.
    # A secret: it may carry the password (shown redacted everywhere). rediss:// is TLS, the server's
    # certificate verified against redis_ca_file (else the system's CAs).
    redis_url: RedisUrl = RedisUrl("redis://127.0.0.1:6379/0")
    redis_ca_file: FilePath | None = None
    artifact_dir: Path = Path("artifacts")
    # The directories local input files may be in (like PATH: `/data/in:/mnt/media`); none: every local
    # input is refused. Checked at submit (producers read the same variable) and before every stage.
    input_roots: str = ""
    # How long a message a worker took waits without that worker's heartbeat before Redis hands it to
    # another worker: a dead worker's stage runs again within about this long (plus a quarter of it, how
    # often workers look). A live worker's heartbeat keeps its messages however long their stages run.
    # Delays do not depend on it: they wait in the Redis-side schedule.
    visibility_timeout_s: int = Field(20, gt=0)
    retry: RetrySettings = RetrySettings()
    limits: LimitsSettings = LimitsSettings()
    waits: WaitSettings = WaitSettings()
    runs: RunSettings = RunSettings()
    webhooks: WebhookSettings = WebhookSettings()
    time_limits: TimeLimitSettings = TimeLimitSettings()
    # What one submit may ask for (producers read the same GENQ_CAPS__ variables) and what one job's
    # outputs may take together (schemas/caps.py).
    caps: Caps = Caps()
    # What a worker may fetch of the URLs a job names (worker/providers/egress.py).
    egress: EgressSettings = EgressSettings()
    # Where outputs are stored (GENQ_OUTPUTS__URL: unset, under artifact_dir) and for how long (storage/).
    outputs: OutputSettings = OutputSettings()

    @model_validator(mode="after")
    def _heartbeat_within_visibility(self) -> Self:
        if self.runs.heartbeat_s * 3 > self.visibility_timeout_s:
            raise ValueError(
                f"runs.heartbeat_s ({self.runs.heartbeat_s:g}) must be at most a third of "
                f"visibility_timeout_s ({self.visibility_timeout_s}): a live worker's messages would be "
                "handed to another worker"
            )
        return self

    @property
    def run_lease_s(self) -> float:
        """How long a stage run's lease lasts after its worker's last heartbeat."""
        return self.visibility_timeout_s * 0.75

    @property
    def redis_tls(self) -> dict[str, Any]:
        """redis-py's TLS keywords for ``redis_url`` (none for redis://), also Celery's broker_use_ssl."""
        ca_file = str(self.redis_ca_file) if self.redis_ca_file else None
        return tls_options(self.redis_url.get_secret_value(), ca_file)

    def with_redis_url(self, url: str) -> Settings:
        """These settings with another Redis (``--redis-url`` of a command)."""
        return self.model_copy(update={"redis_url": RedisUrl(url)})


def redis_client(settings: Settings, **options: Any) -> redis.Redis:
    """A client of the settings' Redis (TLS verified for rediss://); ``options`` go to redis-py."""
    url = settings.redis_url.get_secret_value()
    return redis.Redis.from_url(url, **settings.redis_tls, **options)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment (``get_settings.cache_clear()`` re-reads).
    A ``GENQ_`` variable that names no setting is reported once on stderr (see ``warn_unknown``)."""
    warn_unknown()
    return Settings()


def _leaves(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, bool]]:
    """Every environment name of ``model``'s fields, nested ones included, and whether it takes
    arbitrary keys below it (a dict field: ``GENQ_LIMITS__CELERY_RATE_LIMITS__<task>``)."""
    for name, field in model.model_fields.items():
        env = f"{prefix}{name.upper()}"
        yield env, False
        for part in _types_in(field.annotation):
            if isinstance(part, type) and issubclass(part, BaseModel):
                yield from _leaves(part, env + "__")
            elif typing.get_origin(part) in (dict, Mapping):
                yield env, True


def _types_in(annotation: Any) -> list[Any]:
    """``annotation``, or the members of a union (``X | None``)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return list(typing.get_args(annotation))
    return [annotation]


def setting_names() -> tuple[frozenset[str], tuple[str, ...]]:
    """The upper-case environment names of every setting (sections included, since a section may be
    given whole as JSON), and the prefixes below which any name is a key of a dict setting."""
    names: set[str] = set()
    open_prefixes: list[str] = []
    for name, is_open in _leaves(Settings, PREFIX):
        names.add(name)
        if is_open:
            open_prefixes.append(name + "__")
    return frozenset(names), tuple(open_prefixes)


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """The ``GENQ_`` variables of ``environ`` that name no setting, each with the closest valid name
    (or None). Names are compared in upper case, as pydantic-settings reads them case-insensitively."""
    names, open_prefixes = setting_names()
    known = names | OTHER_VARIABLES
    # Compared without the prefix every name shares, which would make any two names look close.
    candidates = sorted(name.removeprefix(PREFIX) for name in known)
    found = []
    for variable in sorted(environ):
        upper = variable.upper()
        if not upper.startswith(PREFIX) or upper in known or upper.startswith(open_prefixes):
            continue
        close = difflib.get_close_matches(upper.removeprefix(PREFIX), candidates, n=1)
        found.append((variable, PREFIX + close[0] if close else None))
    return found


def warn_unknown(environ: Mapping[str, str] | None = None) -> None:
    """Log a warning (stderr, when logging is not configured) for each ``GENQ_`` variable that names no
    setting, once per process and variable: a misspelt setting would otherwise be ignored silently."""
    for variable, close in unknown_variables(os.environ if environ is None else environ):
        if variable in _warned:
            continue
        _warned.add(variable)
        hint = f" (did you mean {close}?)" if close else ""
        log.warning("genq: unknown setting %s%s", variable, hint)
