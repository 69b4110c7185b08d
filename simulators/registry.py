"""Every provider simulator, in one table the core iterates (app routes, SimConfig sections, CLI flags).

Adding a provider = its package under `simulators/` exposing a `SPEC`, plus one line here. `SimSpec`
itself lives in the leaf module `simulators.spec` so that provider packages can import it.
"""

from __future__ import annotations

from simulators import aimi, aistudios, syncso
from simulators.spec import Option, SimSpec

__all__ = ["SIMULATORS", "Option", "SimSpec"]

SIMULATORS: tuple[SimSpec, ...] = (
    aimi.SPEC,
    syncso.SPEC,
    aistudios.SPEC,
)
