"""``genq metrics``: a Prometheus endpoint whose figures are read from Redis at each scrape, so any
number of these serve the same figures and none keeps state.

- per queue: its depth, and the age of its oldest message (from the send time messages carry);
- the budgets and backlog of ``genq limits --prometheus`` (``worker.limits.report.gauges``);
- what the workers counted (``worker.metrics``): stage-run durations and provider responses; and the
  job outcomes ``TRANSITION_LUA`` counted.

Every scrape is answered: when Redis cannot be read, with ``genq_up 0`` and the time of the last
scrape that read it (one log line when Redis goes away, one when it is back; never a traceback).
``GET /health`` answers 503 while Redis does not answer a PING within a second (``worker.health``).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import accumulate
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import redis
from prometheus_client import make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry
from prometheus_client.utils import floatToGoString

from genq.report import in_use
from schemas import layout as L
from schemas.wire import SENT_AT_HEADER
from worker.context import Context
from worker.health import health, health_client, unreachable
from worker.limits.report import gauges
from worker.metrics import BUCKETS_S
from worker.providers.registry import PROVIDERS

log = logging.getLogger(__name__)

# How many messages from a queue's tail (the next to be taken) are read for the oldest send time: a
# woken stage's message is pushed to the tail without one (worker/parking.py), ahead of older messages.
TAIL_MESSAGES = 16
_STAGE_LABELS = ["provider", "stage", "outcome"]


def queues() -> list[str]:
    """Every queue genq's workers consume: ``default`` and one per provider."""
    return [L.DEFAULT_QUEUE, *PROVIDERS]


def sent_at(raw: bytes | str) -> float | None:
    """The send time a queued message carries, if it carries one."""
    try:
        value = json.loads(raw)["headers"].get(SENT_AT_HEADER)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def oldest_age_s(tail: Sequence[bytes | str], now: float) -> float | None:
    """Seconds since the oldest send time among a queue's tail messages; 0 for an empty queue, None
    when none of them carries one (unknown)."""
    if not tail:
        return 0.0
    times = [t for t in map(sent_at, tail) if t is not None]
    return max(0.0, now - min(times)) if times else None


def stage_histograms(fields: Mapping[str, str]) -> HistogramMetricFamily:
    """``genq_stage_duration_seconds`` from the stage hash (per-bucket counts and sums, see layout)."""
    series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}
    for name, value in fields.items():
        *labels, last = name.split(L.METRICS_SEP)
        if len(labels) != len(_STAGE_LABELS):
            continue
        counts, total = series.setdefault(tuple(labels), ([0] * (len(BUCKETS_S) + 1), [0.0]))
        if last == "sum":
            total[0] += float(value)
        else:  # a bound the buckets no longer have falls into the next one up
            counts[bisect_left(BUCKETS_S, float(last))] += int(value)
    family = HistogramMetricFamily(
        "genq_stage_duration_seconds",
        "Duration of stage runs (one Celery task each), by provider, stage and outcome.",
        labels=_STAGE_LABELS,
    )
    bounds = [*map(floatToGoString, BUCKETS_S), "+Inf"]
    for label_values, (counts, total) in sorted(series.items()):
        buckets = list(zip(bounds, map(float, accumulate(counts)), strict=True))
        family.add_metric(list(label_values), buckets, sum_value=total[0])
    return family


def counters(name: str, help_text: str, labels: list[str], fields: Mapping[str, str]) -> CounterMetricFamily:
    """A counter family from a hash whose fields are label values joined by ``METRICS_SEP``."""
    family = CounterMetricFamily(name, help_text, labels=labels)
    for field, value in sorted(fields.items()):
        values = field.split(L.METRICS_SEP, len(labels) - 1)
        if len(values) == len(labels):
            family.add_metric(values, float(value))
    return family


class GenqCollector:
    """Reads every figure from Redis when Prometheus scrapes (``collect``). A scrape that cannot read
    Redis is answered all the same: ``genq_up 0`` and the time of the last one that could."""

    def __init__(
        self, ctx: Context, queue_names: Sequence[str], *, clock: Callable[[], float] = time.time
    ) -> None:
        self.ctx = ctx
        self.queue_names = list(queue_names)
        self.clock = clock
        self.last_read_s: float | None = None  # when a scrape last read Redis whole
        self.problem: str | None = None  # what kept the last scrape from reading it
        self._lock = threading.Lock()  # scrapes run in threads of their own

    def collect(self) -> Iterator[Metric]:
        try:
            figures = list(self.read())  # all of it, or nothing: never half a scrape
        except redis.RedisError as exc:
            figures = []
            self._failed(unreachable(self.ctx.redis, exc))
        else:
            self._read_at(self.clock())
        up = GaugeMetricFamily("genq_up", "1 when this scrape read Redis, 0 when it could not.")
        up.add_metric([], 0.0 if self.problem else 1.0)
        last = GaugeMetricFamily(
            "genq_last_successful_read_timestamp_seconds",
            "When a scrape last read Redis whole (Unix time); 0 before the first.",
        )
        last.add_metric([], self.last_read_s or 0.0)
        yield from [up, last, *figures]

    def _failed(self, problem: str) -> None:
        with self._lock:
            if self.problem is None:
                log.warning("genq metrics: cannot read Redis (%s); answering genq_up 0", problem)
            self.problem = problem

    def _read_at(self, now: float) -> None:
        with self._lock:
            if self.problem is not None:
                log.warning("genq metrics: Redis answers again")
            self.problem, self.last_read_s = None, now

    def read(self) -> Iterator[Metric]:
        """Every figure of one scrape, read from Redis (``redis.RedisError`` when it cannot be)."""
        count = len(self.queue_names)
        with self.ctx.redis.pipeline(transaction=False) as pipe:
            for queue in self.queue_names:
                pipe.llen(queue)
                pipe.lrange(queue, -TAIL_MESSAGES, -1)
            for key in (L.METRICS_STAGES_KEY, L.METRICS_RESPONSES_KEY, L.METRICS_JOBS_KEY, L.REPAIRS_KEY):
                pipe.hgetall(key)
            replies = pipe.execute()
        yield from self._queues(replies[0 : 2 * count : 2], replies[1 : 2 * count : 2], self.clock())
        yield from self._budgets()
        yield from self._spend()
        stages, responses, jobs, repairs = (_text_fields(raw) for raw in replies[2 * count :])
        yield stage_histograms(stages)
        yield counters(
            "genq_provider_responses",
            "HTTP responses provider clients received, by provider, status and the provider's error code.",
            ["provider", "status", "code"],
            responses,
        )
        yield counters(
            "genq_jobs", "Jobs that reached a terminal status, by kind and status.", ["kind", "status"], jobs
        )
        yield counters(
            "genq_repairs", "Repairs the reconciler made (message, lease, unacked, spend).", ["kind"], repairs
        )

    def _queues(self, lengths: list[int], tails: list[list[bytes]], now: float) -> Iterator[Metric]:
        depth = GaugeMetricFamily("genq_queue_depth", "Messages waiting in the queue.", labels=["queue"])
        age = GaugeMetricFamily(
            "genq_queue_oldest_age_seconds",
            "Seconds since the queue's oldest message was sent (of the next 16 to be taken); 0 when the "
            "queue is empty, no sample when none of those carries a send time.",
            labels=["queue"],
        )
        for queue, length, tail in zip(self.queue_names, lengths, tails, strict=True):
            depth.add_metric([queue], float(length))
            seconds = oldest_age_s(tail, now)
            if seconds is not None:
                age.add_metric([queue], seconds)
        yield depth
        yield age

    def _budgets(self) -> Iterator[Metric]:
        for gauge in gauges(*in_use(self.ctx)):
            names = list(gauge.samples[0][0]) if gauge.samples else []
            family = GaugeMetricFamily(gauge.name, gauge.help, labels=names)
            for labels, value in gauge.samples:
                family.add_metric(list(labels.values()), float(value))
            yield family

    def _spend(self) -> Iterator[Metric]:
        """Each tenant's spend budget in its current period, and the jobs refused for budget."""
        spend = self.ctx.spend
        labels = ["tenant", "per"]
        families = {
            "limit": GaugeMetricFamily(
                "genq_spend_limit_usd", "A tenant's spend budget per period.", labels=labels
            ),
            "spent": GaugeMetricFamily("genq_spend_spent_usd", "Spent in the current period.", labels=labels),
            "reserved": GaugeMetricFamily(
                "genq_spend_reserved_usd", "Reserved by jobs not ended.", labels=labels
            ),
            "waiting": GaugeMetricFamily(
                "genq_spend_waiting_jobs", "Jobs waiting for budget.", labels=labels
            ),
        }
        for budget in spend.budgets():
            usage, values = spend.usage(budget), [budget.tenant, budget.per]
            families["limit"].add_metric(values, budget.limit_usd)
            families["spent"].add_metric(values, usage.spent_usd)
            families["reserved"].add_metric(values, usage.reserved_usd)
            families["waiting"].add_metric(values, float(usage.waiting))
        yield from families.values()
        refusals = {L.text(k): L.text(v) for k, v in self.ctx.redis.hgetall(L.METRICS_REFUSALS_KEY).items()}
        yield counters(
            "genq_spend_refusals", "Jobs refused for their tenant's spend budget.", ["tenant"], refusals
        )


def _text_fields(raw: Mapping[bytes, bytes]) -> dict[str, str]:
    return {L.text(key): L.text(value) for key, value in raw.items()}


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def create_app(ctx: Context) -> WsgiApp:
    """The metrics server's WSGI app: ``GET /health`` (``worker.health``), every other path the metrics
    (prometheus_client's app, which answers any path)."""
    registry = CollectorRegistry()
    registry.register(GenqCollector(ctx, queues()))
    metrics = make_wsgi_app(registry)
    checked = health_client(ctx.settings)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/health":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        status, body = health(checked)
        text = json.dumps(body).encode()
        phrase = "200 OK" if status == 200 else "503 Service Unavailable"
        start_response(phrase, [("Content-Type", "application/json"), ("Content-Length", str(len(text)))])
        return [text]

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in progress does not hold the process at exit


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log: a line per scrape says nothing."""


def serve(ctx: Context, host: str, port: int) -> None:
    """Serve the metrics (``GET /metrics``) and ``GET /health`` on ``host:port`` until interrupted."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]

    class Server(_Server):
        address_family = family  # an IPv6 --host binds too

    server: WSGIServer = make_server(host, port, create_app(ctx), Server, handler_class=_Quiet)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
