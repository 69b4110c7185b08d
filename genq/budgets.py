"""``genq budgets``: each tenant's spend budget (limit, spent, reserved, period), and setting them."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table

from producers.cli import redis_option
from worker.spend import Budget, Spend, Usage


def spend_table(rows: list[tuple[Budget, Usage]]) -> Table:
    table = Table(title="spend budgets", title_justify="left")
    for column in ("tenant", "limit", "period", "spent", "reserved", "left", "waiting", "refused", "over",
                   "unknown cost"):  # fmt: skip
        table.add_column(column)
    for budget, usage in rows:
        left = max(budget.limit_usd - usage.spent_usd - usage.reserved_usd, 0.0)
        unknown = "refused" if budget.unknown_usd is None else f"admitted at ${budget.unknown_usd:.2f}"
        table.add_row(budget.tenant, f"${budget.limit_usd:.2f} a {budget.per}", usage.period,
                      f"${usage.spent_usd:.2f}", f"${usage.reserved_usd:.2f}", f"${left:.2f}",
                      str(usage.waiting), str(usage.refused), budget.over, unknown)  # fmt: skip
    return table


def usage_rows(spend: Spend) -> list[tuple[Budget, Usage]]:
    return [(budget, spend.usage(budget)) for budget in spend.budgets()]


def as_dicts(rows: list[tuple[Budget, Usage]]) -> list[dict[str, object]]:
    return [
        {"tenant": b.tenant, "limit_usd": b.limit_usd, "per": b.per, "over": b.over,
         "unknown_usd": b.unknown_usd, "period": u.period, "spent_usd": u.spent_usd,
         "reserved_usd": u.reserved_usd, "waiting": u.waiting, "refused": u.refused}
        for b, u in rows
    ]  # fmt: skip


def _spend(redis_url: str) -> Spend:
    from worker.context import Context  # noqa: PLC0415 (the worker's settings, read when used)
    from worker.settings import get_settings  # noqa: PLC0415

    return Context(get_settings().with_redis_url(redis_url)).spend


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@redis_option
@click.pass_context
def budgets(ctx: click.Context, as_json: bool, redis_url: str) -> None:
    """Each tenant's spend budget: its limit per day or month, what its jobs spent and reserved in the
    current period (UTC), what is left, how many jobs wait for budget or were refused."""
    if ctx.invoked_subcommand is not None:
        return
    rows = usage_rows(_spend(redis_url))
    if as_json:
        click.echo(json.dumps(as_dicts(rows), indent=2))
    else:
        Console().print(spend_table(rows))


@budgets.command("set")
@click.argument("tenant")
@click.option("--usd", type=click.FloatRange(min=0), required=True, help="The limit per period, in USD.")
@click.option("--per", type=click.Choice(["day", "month"]), default="day", show_default=True)
@click.option("--over", type=click.Choice(["refuse", "wait"]), default="refuse", show_default=True,
              help="What a job over the budget gets: it fails (genq_budget_exceeded), or waits for the next "
                   "period or a raised limit.")  # fmt: skip
@click.option("--unknown-usd", type=click.FloatRange(min=0), default=None,
              help="Admit a job of unknown cost at this price (default: refuse it).")  # fmt: skip
@redis_option
def set_budget(  # noqa: PLR0917 (click passes each option)
    tenant: str, usd: float, per: str, over: str, unknown_usd: float | None, redis_url: str
) -> None:
    """Set TENANT's spend budget (replacing any it had; what was spent in the period stays)."""
    from pydantic import TypeAdapter, ValidationError  # noqa: PLC0415

    from schemas.base import Tenant  # noqa: PLC0415

    try:
        TypeAdapter(Tenant).validate_python(tenant)
    except ValidationError:
        click.echo(
            f"invalid: tenant: {tenant!r} is not a tenant name (1-64 of A-Z a-z 0-9 . _ : -)", err=True
        )
        sys.exit(2)
    budget = Budget(tenant, usd, per, over, unknown_usd)  # type: ignore[arg-type]
    _spend(redis_url).set_budget(budget)
    click.echo(f"{tenant}: ${usd:.2f} a {per}, over: {over}")


@budgets.command("delete")
@click.argument("tenant")
@redis_option
def delete_budget(tenant: str, redis_url: str) -> None:
    """Remove TENANT's spend budget: its jobs are no longer held to one."""
    if not _spend(redis_url).delete_budget(tenant):
        click.echo(f"genq: tenant {tenant} has no budget", err=True)
        sys.exit(1)
    click.echo(f"{tenant}: no budget")
