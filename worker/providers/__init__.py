"""Provider clients and stages, one package each."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.context import Context
    from worker.sweep import Watcher


def watchers(ctx: Context) -> list[Watcher]:
    """The status sweeps of every configured provider account."""
    from worker.providers.syncso.watch import GenerationWatcher  # noqa: PLC0415 (no cycle at import)

    return [GenerationWatcher(ctx.syncso, ctx.settings.syncso, ctx.budgets.syncso_other)]
