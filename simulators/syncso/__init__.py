"""The sync.so (Sync Labs) lipsync API v2 simulator: `/v2/...` routes plus `/_sim/syncso/...`."""

from simulators.spec import SimSpec
from simulators.syncso.config import OPTIONS, SyncSoSimConfig
from simulators.syncso.demo import DEMO
from simulators.syncso.provider import SyncSoProvider

SPEC = SimSpec(
    name="syncso",
    title="sync.so",
    config=SyncSoSimConfig,
    provider=SyncSoProvider,
    options=OPTIONS,
    demo=DEMO,
)
