"""The ``genq`` console script: the command group, or one line per bad setting instead of a traceback.

The settings are read when the worker package is imported (the Celery app is built from them), which
happens before any command runs; a ``GENQ_`` variable that does not parse is reported here, exit 2."""

from __future__ import annotations

import sys

from pydantic import ValidationError


def main() -> None:
    try:
        from genq.cli import main as cli  # noqa: PLC0415 (importing it reads the settings)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            name = "GENQ_" + "__".join(str(part) for part in error["loc"]).upper()
            sys.stderr.write(f"genq: invalid setting {name}: {error['msg']}\n")
        raise SystemExit(2) from None
    cli()
