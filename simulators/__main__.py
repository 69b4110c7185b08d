"""`python -m simulators --port 8700 --syncso-api-key K`: serve the provider simulators in the foreground.

Each registered simulator contributes one argument group of `--<name>-<flag>` options (its
`SimSpec.options`); an option left out keeps its config field's default. `--storm-<flag>` options start
a fault storm at launch (the fields of `POST /_sim/storm`; any one of them starts it).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pydantic import BaseModel

from simulators.config import SimConfig
from simulators.registry import SIMULATORS
from simulators.server import listen, serve
from simulators.spec import Option, SimSpec, section
from simulators.storm import StormPlan


def _names(raw: str) -> list[str]:
    return [name.strip() for name in raw.split(",") if name.strip()]


STORM_OPTIONS: tuple[Option, ...] = (
    Option("5xx", "share_5xx", float, "share of requests answered 500, 502 or 503"),
    Option("429", "share_429", float, "share answered 429 (half rate limit, half concurrency)"),
    Option("timeout", "share_timeout", float, "share processed, then answered after --storm-timeout-s"),
    Option("drop", "share_drop", float, "share processed, then cut off mid-response"),
    Option("timeout-s", "timeout_s", float, "seconds a stormed timeout holds its answer"),
    Option("retry-after-s", "retry_after_s", float, "Retry-After of the stormed rate-limit 429s"),
    Option("seed", "seed", int, "random seed of the storm"),
    Option("providers", "providers", _names, "comma-separated providers to storm (None: all)"),
)


def _dest(spec: SimSpec, option: Option) -> str:
    return f"{spec.name}__{option.field}"


def _help(model: type[BaseModel], option: Option) -> str:
    default = model.model_fields[option.field].default
    # argparse %-formats help strings.
    return f"{option.help} (default: {default})".replace("%", "%%")


def build_parser() -> argparse.ArgumentParser:
    """The `genq sim` parser: `--host`, `--port`, the `--storm-*` group, then one group per simulator."""
    parser = argparse.ArgumentParser(prog="genq sim", description="Serve the provider simulators.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8700)
    storm = parser.add_argument_group("fault storm (see POST /_sim/storm)")
    for option in STORM_OPTIONS:
        storm.add_argument(
            f"--storm-{option.flag}",
            dest=f"storm__{option.field}",
            metavar=option.field.upper(),
            type=option.type,
            default=None,
            help=_help(StormPlan, option),
        )
    for spec in SIMULATORS:
        group = parser.add_argument_group(spec.title)
        for option in spec.options:
            group.add_argument(
                f"--{spec.name}-{option.flag}",
                dest=_dest(spec, option),
                metavar=option.field.upper(),
                type=option.type,
                default=None,
                help=_help(spec.config, option),
            )
    return parser


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """The SimConfig the parsed options describe (raises pydantic's ValidationError when invalid)."""
    sections: dict[str, dict[str, Any]] = {}
    for spec in SIMULATORS:
        values = {option.field: getattr(args, _dest(spec, option)) for option in spec.options}
        sections[spec.name] = {field: value for field, value in values.items() if value is not None}
    return SimConfig.model_validate(sections)


def storm_from_args(args: argparse.Namespace) -> dict[str, Any] | None:
    """The `POST /_sim/storm` body the `--storm-*` options describe, or None when none is given."""
    values = {option.field: getattr(args, f"storm__{option.field}") for option in STORM_OPTIONS}
    given = {field: value for field, value in values.items() if value is not None}
    return given or None


def banner(base_url: str, config: SimConfig) -> str:
    """What `genq sim` prints at start: where it serves, and per provider the settings that point a
    worker at it (base URL, the keys it accepts, the secret it signs webhooks with, its plan)."""
    lines = [f"genq sim: the provider simulators on {base_url} (Ctrl-C stops them); workers use them with:"]
    for spec in SIMULATORS:
        values = section(config, spec.name, BaseModel)
        pairs = [(f"GENQ_{spec.name.upper()}__BASE_URL", base_url)]
        pairs += [(setting, str(getattr(values, field))) for setting, field in spec.settings]
        lines.append("export " + " ".join(f"{name}={value}" for name, value in pairs) + f"  # {spec.title}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    try:
        sock = listen(args.host, args.port)
    except OSError as exc:
        raise SystemExit(
            f"genq sim: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
        ) from None
    host = f"[{args.host}]" if ":" in args.host else args.host
    sys.stdout.write(banner(f"http://{host}:{sock.getsockname()[1]}", config))
    sys.stdout.flush()
    serve(args.host, args.port, config, storm_from_args(args), sock=sock)


if __name__ == "__main__":
    main()
