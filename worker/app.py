"""The Celery app: ``celery -A worker worker`` and ``celery -A worker flower`` find it here.

JSON only; late acks with redelivery when a worker dies; one queue per provider of the registry plus
``default``. No result backend: a job's record holds every outcome, and what runs next is decided by
the job's step graph (worker/graph.py), not by Celery's canvas.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from schemas import layout as L
from worker import kombu_fix, metrics
from worker.background import Background
from worker.limits.sweeper import LimiterSweep
from worker.providers.registry import PROVIDERS
from worker.settings import Settings, get_settings

# One queue per provider, named after it, so a fleet scales each provider's workers on their own.
PROVIDER_QUEUES = tuple(PROVIDERS)
TASK_MODULES = ["worker.tasks", "worker.pipeline", *(spec.stages for spec in PROVIDERS.values())]


def broker_transport_options(visibility_timeout_s: int) -> dict[str, int]:
    """How long an unacknowledged message waits (since its holder's last heartbeat, worker/heartbeat.py)
    before Redis hands it to another worker, and how often workers sweep for such messages. kombu's
    default sweep runs every 10 s x 10 (its throttle), so a message of a SIGKILLed worker could wait
    100 s past its timeout; genq sweeps every quarter timeout, at most every 10 s, with no throttle (one
    ZRANGE on ``unacked_index`` per sweep and worker)."""
    return {
        "visibility_timeout": visibility_timeout_s,
        "unacked_restore_interval": max(1, min(10, visibility_timeout_s // 4)),
        "unacked_restore_throttle": 1,
    }


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("genq", broker=settings.redis_url.get_secret_value(), include=TASK_MODULES)
    transport = broker_transport_options(settings.visibility_timeout_s)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        # A stage's message is acknowledged only after it ran; a worker that dies mid-stage (SIGKILL,
        # OOM, host loss) leaves it to be redelivered. Every stage is idempotent, so that is safe.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        # rediss://: the server's certificate required and verified (GENQ_REDIS_CA_FILE, else the
        # system's CAs), not kombu's default for a bare rediss:// URL, CERT_NONE. No result backend, so
        # no redis_backend_use_ssl.
        broker_use_ssl=settings.redis_tls or False,
        task_default_queue=L.DEFAULT_QUEUE,
        task_queues=[Queue(name) for name in (L.DEFAULT_QUEUE, *PROVIDER_QUEUES)],
        task_routes={f"genq.{name}.*": {"queue": name} for name in PROVIDER_QUEUES},
        # Job records hold outcomes; nothing reads a task result.
        task_ignore_result=True,
        # Events for Flower without `-E` on every worker command line.
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_track_started=True,
        worker_hijack_root_logger=False,
        # Celery's per-worker rate limits, for comparison only (bench/ratelimit.py); genq's own budgets
        # are global (worker/limits).
        task_annotations={
            name: {"rate_limit": rate} for name, rate in settings.limits.celery_rate_limits.items()
        },
    )
    app.steps["worker"].add(LimiterSweep)
    app.steps["worker"].add(Background)
    metrics.install(settings)
    return app


kombu_fix.install()
app = create_app()
