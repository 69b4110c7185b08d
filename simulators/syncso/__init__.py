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
    settings=(
        ("GENQ_SYNCSO__API_KEY", "api_key"),
        ("GENQ_SYNCSO__WEBHOOK_SECRET", "webhook_secret"),
        ("GENQ_SYNCSO__PLAN", "plan"),
    ),
)
