"""sync.so account commands of ``genq``: ``estimate``, ``models`` and ``assets``.

They read the same ``GENQ_`` settings as the workers (API key, base URL) and spend the account's
shared ``syncso.other`` budget through the limiter when Redis is reachable, so an operator's command
never makes a worker see a 429.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
import redis
from rich.console import Console
from rich.table import Table

from producers import InvalidRequest, validate
from producers.cli import load_requests
from schemas import LipsyncRequest
from schemas.lipsync_wire import generation_body
from worker.context import Context
from worker.providers.errors import ProviderError
from worker.providers.syncso.client import SyncSoClient
from worker.providers.syncso.resources import Asset
from worker.providers.syncso.spec import OTHER, SPEC
from worker.settings import Settings, get_settings

T = TypeVar("T")


class _Account:
    """The sync.so client of these settings, and the account's shared budget for its requests."""

    def __init__(self, settings: Settings) -> None:
        section = SPEC.section(settings)
        if not section.configured:
            raise click.UsageError("GENQ_SYNCSO__API_KEY is not set")
        self.ctx = Context(settings)
        self.client = SyncSoClient.from_settings(section)
        self.holder = f"cli:{os.getpid()}"

    def call(self, fn: Callable[[SyncSoClient], T]) -> T:
        """``fn(client)`` after a turn of ``syncso.other`` (or at once when Redis is not reachable)."""
        try:
            rate = self.ctx.budgets.rate(OTHER)
            while (turn := self.ctx.limiter.take_turn(rate, self.holder, horizon_s=60.0)).wait_s > 0:
                time.sleep(min(turn.wait_s, 5.0))
        except redis.RedisError:
            pass
        return fn(self.client)


@contextmanager
def _account() -> Iterator[_Account]:
    """The account; a provider error becomes one line on stderr and exit status 1."""
    account = _Account(get_settings())
    try:
        yield account
    except ProviderError as exc:
        click.echo(f"sync.so: {exc}", err=True)
        sys.exit(1)
    finally:
        account.client.close()


@click.command()
@click.argument("file", type=click.File("r"))
@click.option("--json", "as_json", is_flag=True, help="Print the estimates as JSON.")
def estimate(file: Any, as_json: bool) -> None:
    """Print sync.so's cost estimate of each lipsync job in FILE (as for genq submit). Exit 1 if a job
    could not be estimated or is over its max_cost_usd, 2 if a job is invalid. Local files cannot be
    estimated here: sync.so estimates from media it can reach (URLs or asset:<id>)."""
    rows: list[dict[str, Any]] = []
    with _account() as account:
        for index, raw in enumerate(load_requests(file.read())):
            try:
                request = validate(raw, check_files=False)
            except InvalidRequest as exc:
                for problem in exc.problems:
                    click.echo(f"invalid: [{index}] {problem}", err=True)
                sys.exit(2)
            rows.append(_estimate_row(index, request, account))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        table = Table(title="sync.so cost estimates", title_justify="left")
        for column in ("job", "model", "frames", "estimate USD", "max_cost_usd", "verdict"):
            table.add_column(column)
        for row in rows:
            usd = "" if row["usd"] is None else f"{row['usd']:.4f}"
            cap = "" if row["max_cost_usd"] is None else f"{row['max_cost_usd']:.4f}"
            frames = "" if row["frames"] is None else f"{row['frames']:g}"
            table.add_row(str(row["job"]), row["model"], frames, usd, cap, row["verdict"])
        Console().print(table)
    sys.exit(0 if all(row["verdict"] == "ok" for row in rows) else 1)


def _estimate_row(index: int, request: Any, account: _Account) -> dict[str, Any]:
    row: dict[str, Any] = {"job": index, "model": getattr(request, "model", ""), "usd": None, "frames": None,
                           "max_cost_usd": None, "verdict": ""}  # fmt: skip
    if not isinstance(request, LipsyncRequest):
        row["verdict"] = f"not a sync.so job ({request.kind})"
        return row
    row["model"] = request.model.value
    row["max_cost_usd"] = request.max_cost_usd
    local = request.local_files()
    if local:
        row["verdict"] = "cannot estimate local files: " + ", ".join(local)
        return row
    body, _ = generation_body(request)
    estimates = account.call(lambda client: client.estimate_cost(body))
    row["usd"] = round(sum(e.estimated_generation_cost for e in estimates), 6)
    row["frames"] = sum(e.estimated_frame_count or 0 for e in estimates)
    over = request.max_cost_usd is not None and row["usd"] > request.max_cost_usd
    row["verdict"] = "over max_cost_usd" if over else "ok"
    return row


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the models as JSON.")
def models(as_json: bool) -> None:
    """List the sync.so models this account may use (GET /v2/models)."""
    with _account() as account:
        found = account.call(lambda client: client.list_models())
    if as_json:
        click.echo(json.dumps([m.model_dump(mode="json") for m in found], indent=2))
        return
    table = Table(title=f"sync.so models: {len(found)}", title_justify="left")
    for column in ("id", "type", "version", "description"):
        table.add_column(column, overflow="fold")
    for m in found:
        table.add_row(m.id, m.type or "", m.version or "", m.description or "")
    Console().print(table)


@click.command()
@click.argument("asset_id", required=False)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 100), help="Assets per page.")
@click.option("--cursor", help="Continue after this asset id (the 'next' line of the previous page).")
@click.option("--search", help="Only assets whose name contains this.")
@click.option(
    "--type", "types", multiple=True, type=click.Choice(["AUDIO", "VIDEO", "IMAGE"]), help="Repeatable."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def assets(asset_id: str | None, as_json: bool, **page: Any) -> None:
    """List the sync.so media library newest first, or show one asset (ASSET_ID). An input of a lipsync
    job may name an asset as "asset:<id>"."""
    with _account() as account:
        if asset_id:
            asset = account.call(lambda client: client.get_asset(asset_id))
            click.echo(json.dumps(asset.model_dump(mode="json"), indent=2) if as_json else _describe(asset))
            return
        found = account.call(lambda client: client.list_assets(**page))
    if as_json:
        click.echo(json.dumps(found.model_dump(mode="json"), indent=2))
        return
    total = "" if found.total_count is None else f" of {found.total_count}"
    table = Table(title=f"sync.so assets: {len(found.items)}{total}", title_justify="left")
    for column in ("id", "type", "name", "size", "duration s", "created"):
        table.add_column(column, overflow="fold")
    for a in found.items:
        created = a.created_at.isoformat(timespec="seconds") if a.created_at else ""
        duration = "" if a.duration_seconds is None else f"{a.duration_seconds:g}"
        size = "" if a.size is None else str(a.size)
        table.add_row(a.id, a.type or "", a.name or "", size, duration, created)
    Console().print(table)
    if found.next_cursor:
        click.echo(f"next: genq assets --cursor {found.next_cursor}")


def _describe(asset: Asset) -> str:
    fields = asset.model_dump(mode="json", exclude_none=True)
    return "\n".join(f"{name}: {value}" for name, value in fields.items())


COMMANDS = (estimate, models, assets)
