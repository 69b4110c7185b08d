"""The ``genq`` command: enqueue-side commands, the simulators and the demo."""

from __future__ import annotations

import os
from typing import IO, Any

import click
import redis

from genq.budgets import budgets
from producers.cli import (
    REDIS_URL_META,
    Exit,
    cancel,
    dead,
    get,
    jobs,
    redis_option,
    replay,
    status,
    submit,
    watch,
)
from schemas import SUBMITTABLE
from schemas.redis_url import CA_FILE_ENV, password_of, redacted, tls_options
from worker.providers.registry import PROVIDERS
from worker.providers.spec import load

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class RedisUnreachable(click.ClickException):
    """Redis refused or never answered: one line, exit status 3."""

    exit_code = Exit.NO_REDIS

    def __init__(self, url: str, exc: Exception) -> None:
        reason = str(exc) or type(exc).__name__
        password = password_of(url)
        if password:
            reason = reason.replace(password, "***")
        super().__init__(f"genq: cannot reach Redis at {redacted(url)}: {reason}")

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(self.message, file=file, err=file is None)


class Genq(click.Group):
    """The ``genq`` group: whichever command finds Redis unreachable ends with one line naming it
    (without its password) and exit status 3, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            url = ctx.meta.get(REDIS_URL_META) or os.environ.get("GENQ_REDIS_URL") or DEFAULT_REDIS_URL
            raise RedisUnreachable(url, exc) from None


@click.group(cls=Genq)
@click.version_option(package_name="genq")
def main() -> None:
    """genq: Celery workers that drive AI media-generation APIs. See README.md."""


@main.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def sim(args: tuple[str, ...]) -> None:
    """Serve the provider simulators over HTTP (``genq sim --help`` lists the options)."""
    from simulators.__main__ import main as serve_simulators

    serve_simulators(list(args))


@main.command()
@click.option(
    "--kind",
    "kind",
    default="all",
    show_default=True,
    type=click.Choice(["all", *SUBMITTABLE]),
    help="Which job kind to run (all: every kind; pipeline: avatar, 3 dubs, music on each).",
)
@click.option(
    "--jobs", default=None, type=int, help="How many jobs of each kind to run  [default: 20; pipelines: 1]."
)
@click.option(
    "--workers", default=2, show_default=True, type=int, help="Worker processes (each with --concurrency)."
)
@click.option("--concurrency", default=4, show_default=True, type=int)
@click.option("--timeout-s", default=300.0, show_default=True, type=float)
@click.option(
    "--keep", is_flag=True, help="Leave Redis, the simulator, workers and Flower running until Ctrl-C."
)
def demo(kind: str, jobs: int | None, workers: int, concurrency: int, timeout_s: float, keep: bool) -> None:
    """Run jobs end to end on this machine: embedded Redis, the simulators, workers, the webhook
    receiver and Flower."""
    from genq.demo import run_demo

    kinds = list(SUBMITTABLE) if kind == "all" else [kind]
    url = os.environ.get("GENQ_REDIS_URL")
    if url:  # a Redis of the user's: reachable, before any worker starts
        click.get_current_context().meta[REDIS_URL_META] = url
        redis.Redis.from_url(url, **tls_options(url, os.environ.get(CA_FILE_ENV))).ping()
    code = run_demo(
        kinds=kinds, jobs=jobs, workers=workers, concurrency=concurrency, timeout_s=timeout_s, keep=keep
    )
    raise SystemExit(code)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--prometheus", is_flag=True, help="Print the figures in Prometheus text format.")
@redis_option
def limits(as_json: bool, prometheus: bool, redis_url: str) -> None:
    """Every budget of the providers in use (limit, in use, waiting, paused until), and the backlog no
    Celery queue shows: stages parked until their provider job ends, and stage runs scheduled for later.
    Budgets come from the same GENQ_ settings as the workers'; a provider is in use when its credentials
    are set."""
    import json

    from rich.console import Console

    from genq.budgets import as_dicts, spend_table, usage_rows
    from genq.report import backlog_tables, budget_table, in_use
    from worker.context import Context
    from worker.limits.report import prometheus_text
    from worker.settings import get_settings

    ctx = Context(get_settings().with_redis_url(redis_url))
    states, waits, scheduled = in_use(ctx)
    if prometheus:
        click.echo(prometheus_text(states, waits, scheduled), nl=False)
        return
    spend = usage_rows(ctx.spend)
    if as_json:
        figures = {"budgets": states, "parked": waits, "scheduled": scheduled, "spend": as_dicts(spend)}
        click.echo(json.dumps(figures, indent=2, default=lambda o: o.__dict__))
        return
    console = Console()
    console.print(budget_table(states))
    if spend:
        console.print(spend_table(spend))
    for table in backlog_tables(waits, scheduled):
        console.print(table)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=9108, show_default=True, type=int)
@redis_option
def metrics(host: str, port: int, redis_url: str) -> None:
    """Serve Prometheus metrics on GET /metrics, read from Redis at each scrape: queue depths and oldest
    message ages, the figures of `genq limits --prometheus`, stage-run durations, provider responses and
    job outcomes (see README, Metrics). Every scrape is answered: genq_up says whether it read Redis.
    GET /health answers 503 while Redis does not answer."""
    from genq.metrics import serve
    from worker.context import Context
    from worker.health import health_client, redis_problem
    from worker.settings import get_settings

    ctx = Context(get_settings().with_redis_url(redis_url))
    problem = redis_problem(health_client(ctx.settings))
    if problem:  # an exporter starts all the same: its scrapes say genq_up 0 until Redis answers
        click.echo(f"genq metrics: {problem}; scrapes answer genq_up 0 until it answers", err=True)
    serve(ctx, host, port)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8780, show_default=True, type=int)
def webhooks(host: str, port: int) -> None:
    """Receive providers' webhook deliveries (POST /syncso, POST /aistudios ...) and wake the parked
    stages. Providers are told its URL by GENQ_WEBHOOKS__BASE_URL; it reads the same GENQ_ settings as
    the workers (Redis, webhook secrets) and its caps (GENQ_WEBHOOKS__MAX_BODY_BYTES, BODY_TIMEOUT_S,
    MAX_CONCURRENCY). No access log: webhook URLs carry per-job tokens."""
    import uvicorn

    from worker.settings import get_settings
    from worker.webhooks import create_app, server_options

    settings = get_settings()
    app = create_app(settings)
    uvicorn.run(app, host=host, port=port, log_level="info", **server_options(settings.webhooks))


for _spec in PROVIDERS.values():  # each provider's account commands (sync.so: estimate, models, assets)
    if _spec.commands:
        for _command in load(_spec.commands):
            main.add_command(_command)
main.add_command(submit)
main.add_command(budgets)
main.add_command(status)
main.add_command(watch)
main.add_command(cancel)
main.add_command(dead)
main.add_command(jobs)
main.add_command(replay)
main.add_command(get)


if __name__ == "__main__":
    main()
