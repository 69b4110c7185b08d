"""Configuration of the provider simulators (validated, changeable at runtime through `/_sim/config`).

`SimConfig` has one field per registered simulator, named after it and holding its own config class,
e.g. `SimConfig(syncso=SyncSoSimConfig(...), aistudios=AIStudiosSimConfig(...))`; an omitted section
takes its defaults. The class is built from the registry, so the type checker sees only a model of
named sections: provider code reads its own with `section(config, "syncso", SyncSoSimConfig)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from simulators.registry import SIMULATORS
from simulators.spec import section

__all__ = ["SimConfig", "section"]

_DOC = "Configuration of every provider served by one simulator process (their paths do not overlap)."

if TYPE_CHECKING:

    class SimConfig(BaseModel):
        """Static view of the model built below: keyword arguments are the registered sections."""

        def __init__(self, **sections: Any) -> None: ...

else:
    SimConfig = create_model(
        "SimConfig",
        __config__=ConfigDict(extra="forbid", frozen=True),
        __doc__=_DOC,
        __module__=__name__,
        **{spec.name: (spec.config, Field(default_factory=spec.config)) for spec in SIMULATORS},
    )
