"""`python -m simulators --port 8700 --syncso-api-key K`: serve the provider simulators in the foreground.

Each registered simulator contributes one argument group of `--<name>-<flag>` options (its
`SimSpec.options`); an option left out keeps its config field's default.
"""

from __future__ import annotations

import argparse
from typing import Any

from simulators.config import SimConfig
from simulators.registry import SIMULATORS
from simulators.server import serve
from simulators.spec import Option, SimSpec


def _dest(spec: SimSpec, option: Option) -> str:
    return f"{spec.name}__{option.field}"


def _help(spec: SimSpec, option: Option) -> str:
    default = spec.config.model_fields[option.field].default
    # argparse %-formats help strings.
    return f"{option.help} (default: {default})".replace("%", "%%")


def build_parser() -> argparse.ArgumentParser:
    """The `genq sim` parser: `--host`, `--port`, then one group of options per simulator."""
    parser = argparse.ArgumentParser(prog="genq sim", description="Serve the provider simulators.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8700)
    for spec in SIMULATORS:
        group = parser.add_argument_group(spec.title)
        for option in spec.options:
            group.add_argument(
                f"--{spec.name}-{option.flag}",
                dest=_dest(spec, option),
                metavar=option.field.upper(),
                type=option.type,
                default=None,
                help=_help(spec, option),
            )
    return parser


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """The SimConfig the parsed options describe (raises pydantic's ValidationError when invalid)."""
    sections: dict[str, dict[str, Any]] = {}
    for spec in SIMULATORS:
        values = {option.field: getattr(args, _dest(spec, option)) for option in spec.options}
        sections[spec.name] = {field: value for field, value in values.items() if value is not None}
    return SimConfig.model_validate(sections)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    serve(args.host, args.port, config_from_args(args))


if __name__ == "__main__":
    main()
