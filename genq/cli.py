"""The ``genq`` command: enqueue-side commands, the simulators and the demo."""

from __future__ import annotations

import click

from producers.cli import cancel, dead, redis_option, replay, status, submit, watch


@click.group()
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
@click.option("--jobs", default=20, show_default=True, type=int, help="How many lipsync jobs to run.")
@click.option(
    "--workers", default=2, show_default=True, type=int, help="Worker processes (each with --concurrency)."
)
@click.option("--concurrency", default=4, show_default=True, type=int)
@click.option("--timeout-s", default=300.0, show_default=True, type=float)
@click.option(
    "--keep", is_flag=True, help="Leave Redis, the simulator, workers and Flower running until Ctrl-C."
)
def demo(jobs: int, workers: int, concurrency: int, timeout_s: float, keep: bool) -> None:
    """Run lipsync jobs end to end on this machine: embedded Redis, simulator, workers, Flower."""
    from genq.demo import run_demo

    raise SystemExit(
        run_demo(jobs=jobs, workers=workers, concurrency=concurrency, timeout_s=timeout_s, keep=keep)
    )


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--prometheus", is_flag=True, help="Print the figures in Prometheus text format.")
@redis_option
def limits(as_json: bool, prometheus: bool, redis_url: str) -> None:
    """Every provider budget: limit, in use, waiting, paused until. Budgets come from the same GENQ_
    settings as the workers'."""
    import dataclasses
    import json
    import time

    import redis
    from rich.console import Console
    from rich.table import Table

    from worker.limits import RedisLimiter, budgets_from
    from worker.limits.report import prometheus_text, snapshot
    from worker.settings import get_settings

    states = snapshot(RedisLimiter(redis.Redis.from_url(redis_url)), budgets_from(get_settings()))
    if prometheus:
        click.echo(prometheus_text(states), nl=False)
        return
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(s) for s in states], indent=2))
        return
    table = Table(title="provider budgets", title_justify="left")
    for column in ("budget", "kind", "limit", "in use", "waiting", "paused until"):
        table.add_column(column)
    for s in states:
        paused = time.strftime("%H:%M:%S", time.localtime(s.paused_until)) if s.paused_until else ""
        table.add_row(s.name, s.kind, str(s.limit), f"{s.in_use:g}", str(s.waiting), paused)
    Console().print(table)


main.add_command(submit)
main.add_command(status)
main.add_command(watch)
main.add_command(cancel)
main.add_command(dead)
main.add_command(replay)


if __name__ == "__main__":
    main()
