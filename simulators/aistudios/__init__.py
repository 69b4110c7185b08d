"""The DeepBrain AI Studios v3 simulator: `/api/odin/v3/...` routes plus `/_sim/aistudios/...`."""

from simulators.aistudios.config import OPTIONS, AIStudiosSimConfig
from simulators.aistudios.demo import DEMO
from simulators.aistudios.provider import AIStudiosProvider
from simulators.spec import SimSpec

SPEC = SimSpec(
    name="aistudios",
    title="AI Studios",
    config=AIStudiosSimConfig,
    provider=AIStudiosProvider,
    options=OPTIONS,
    demo=DEMO,
    settings=(("GENQ_AISTUDIOS__APP_ID", "app_id"), ("GENQ_AISTUDIOS__USER_KEY", "user_key")),
)
