"""The ``genq`` command: enqueue-side commands, the simulators and the demo."""

from __future__ import annotations

import click

from producers.cli import cancel, status, submit, watch


@click.group()
@click.version_option(package_name="genq")
def main() -> None:
    """genq: Celery workers that drive AI media-generation APIs. See README.md."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8700, show_default=True, type=int)
@click.option(
    "--api-key", default="sim-syncso-key", show_default=True, help="The key the sync.so simulator accepts."
)
@click.option(
    "--pending-s", default=1.0, show_default=True, type=float, help="Seconds a generation stays PENDING."
)
@click.option("--processing-s", default=3.0, show_default=True, type=float, help="Seconds in PROCESSING.")
@click.option(
    "--plan",
    default="creator",
    show_default=True,
    type=click.Choice(["free", "hobbyist", "creator", "growth", "scale"]),
    help="sync.so plan: its concurrency limit.",
)
@click.option(
    "--fail-share", default=0.0, show_default=True, type=float, help="Share of generations that FAIL."
)
def sim(
    host: str, port: int, api_key: str, pending_s: float, processing_s: float, plan: str, fail_share: float
) -> None:
    """Serve the provider simulators (sync.so) over HTTP; control endpoints under /_sim/."""
    from simulators.server import serve

    from simulators.config import SimConfig, SyncSoSimConfig

    syncso = SyncSoSimConfig.model_validate(
        {"api_key": api_key, "pending_s": pending_s, "processing_s": processing_s, "plan": plan,
         "fail_share": fail_share}
    )  # fmt: skip
    click.echo(f"simulators on http://{host}:{port} (sync.so key {api_key!r}); stats at /_sim/stats")
    serve(host, port, SimConfig(syncso=syncso))


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


main.add_command(submit)
main.add_command(status)
main.add_command(watch)
main.add_command(cancel)
