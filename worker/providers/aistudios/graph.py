"""The step graph of an avatar job: create and export → wait for the render → download."""

from __future__ import annotations

from worker.graph import Graph, Step
from worker.providers.aistudios.spec import RENDERS

AVATAR = Graph(
    "avatar",
    (
        Step("create", "genq.aistudios.create"),
        Step("wait", "genq.aistudios.wait", releases=(RENDERS,)),
        Step("download", "genq.aistudios.download"),
    ),
)

GRAPHS = (AVATAR,)
