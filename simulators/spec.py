"""What the core needs to know about one provider simulator, and typed access to its config section.

A leaf module: provider packages import it to describe themselves (`SPEC = SimSpec(...)`) while
`simulators.registry` imports those packages, so it must not import either of them at runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from simulators.app import Provider
    from simulators.config import SimConfig
    from simulators.demo import Demo
    from simulators.events import EventLog

S = TypeVar("S", bound=BaseModel)


class Option(NamedTuple):
    """One `genq sim` flag, `--<spec name>-<flag>`, setting `field` of the spec's config section."""

    flag: str  # e.g. "api-key"
    field: str  # e.g. "api_key"
    type: Callable[[str], Any]  # argparse converter
    help: str


@dataclass(frozen=True)
class SimSpec:
    """One simulated provider: its name (config field, `/_sim/stats` key, fault-route prefix), display
    title, config section class, provider factory, command-line options and `genq demo` part."""

    name: str
    title: str
    config: type[BaseModel]
    provider: Callable[[SimConfig, EventLog], Provider]
    options: tuple[Option, ...] = ()
    demo: Demo | None = None  # what `genq demo` runs against it
    # The workers' settings this simulator's config decides (its keys, its webhook secret, its plan), as
    # (setting, config field): `genq sim` prints them at start, with GENQ_<NAME>__BASE_URL.
    settings: tuple[tuple[str, str], ...] = ()


def section(config: SimConfig, name: str, kind: type[S]) -> S:
    """The config section of simulator `name`, checked to be a `kind`.

    E.g. `section(config, "syncso", SyncSoSimConfig)`; raises TypeError when the section is not a `kind`.
    """
    value = getattr(config, name)
    if not isinstance(value, kind):
        raise TypeError(f"config section {name!r} is a {type(value).__name__}, not a {kind.__name__}")
    return value


def parse_bool(raw: str) -> bool:
    """argparse converter for boolean options: true/false, yes/no, on/off or 1/0."""
    lowered = raw.strip().lower()
    if lowered in {"true", "yes", "on", "1"}:
        return True
    if lowered in {"false", "no", "off", "0"}:
        return False
    raise ValueError(f"not a boolean: {raw!r}")
