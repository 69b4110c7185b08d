"""Cost estimates of the simulated sync.so API (reference 3.2): nothing is fetched or created.

`POST /v2/analyze/cost` (the SDK's `estimate_cost`) takes a create body and answers an array of one
`{estimatedFrameCount, estimatedGenerationCost}`. `POST /v2/generations/estimate` (alias
`POST /v2/generate/estimate-cost`) takes `{model, duration, fps?, reasoningEnabled?}` and answers one
object with `estimatedCredits` too. [INF] The simulator cannot measure media, so the billed seconds
are the segments' total span when given, else `media_duration_s`; frames are counted at 25 fps for
the legacy call.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from simulators.provider_base import SimResponse
from simulators.syncso.responses import nest_error
from simulators.syncso.state import SyncSoState
from simulators.syncso.upload import read_json_body
from simulators.syncso.validate import CreateRejected, CreateRequest

LEGACY_FPS = 25.0
DEFAULT_FPS = 30.0
UNAVAILABLE = "cost_estimate_unavailable"
ESTIMATE_KEYS = frozenset({"model", "duration", "fps", "reasoningEnabled"})


def billed_seconds(request: CreateRequest, media_duration_s: float) -> float:
    """[INF] The seconds a generation is billed for: the segments' spans, else the media's length."""
    if not request.segments:
        return media_duration_s
    return float(sum(s["endTime"] - s["startTime"] for s in request.segments))


def _number(value: Any) -> float | None:
    """A positive JSON number, else None."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def check_estimate_body(body: Any) -> tuple[str, float, float]:
    """(model, duration, fps) of a `POST /v2/generations/estimate` body; raise CreateRejected (400)."""
    if not isinstance(body, dict):
        raise CreateRejected(["request body must be a JSON object"])
    messages = [f"property {key} should not exist" for key in sorted(set(body) - ESTIMATE_KEYS)]
    model, duration, fps = (
        body.get("model"),
        _number(body.get("duration")),
        _number(body.get("fps", DEFAULT_FPS)),
    )
    if not isinstance(model, str) or not model:
        messages.append("model must be a non-empty string")
    if duration is None:
        messages.append("duration must be a positive number")
    if fps is None:
        messages.append("fps must be a positive number")
    if "reasoningEnabled" in body and not isinstance(body["reasoningEnabled"], bool):
        messages.append("reasoningEnabled must be a boolean value")
    if messages or not isinstance(model, str) or duration is None or fps is None:
        raise CreateRejected(messages)
    return model, duration, fps


class EstimateRoutes:
    """Handlers of the estimate routes (route name "estimate")."""

    def __init__(self, state: SyncSoState) -> None:
        self.state = state

    def _price(self, model: str) -> float | None:
        return self.state.config.price_per_s.get(model)

    async def analyze_cost(self, request: Request) -> Response:
        """`POST /v2/analyze/cost`: the create body, checked like a create; an array of one estimate."""
        try:
            create_request = self.state.check_create(await read_json_body(request))
        except CreateRejected as exc:
            return nest_error(exc.status, exc.message, exc.error_code)
        price = self._price(create_request.model)
        if price is None:
            return nest_error(422, f"No price is known for model {create_request.model}", UNAVAILABLE)
        seconds = billed_seconds(create_request, self.state.config.media_duration_s)
        self.state.stats.estimates += 1
        estimate = {
            "estimatedFrameCount": seconds * LEGACY_FPS,
            "estimatedGenerationCost": round(seconds * price, 4),
        }
        return SimResponse([estimate])

    async def estimate(self, request: Request) -> Response:
        """`POST /v2/generations/estimate`: one estimate from a model and a duration."""
        try:
            model, duration_s, fps = check_estimate_body(await read_json_body(request))
        except CreateRejected as exc:
            return nest_error(400, exc.message)  # [INF] no errorCode documented for these
        price = self._price(model)
        if price is None:
            return nest_error(422, f"Cost estimate is unavailable for model {model}", UNAVAILABLE)
        self.state.stats.estimates += 1
        return SimResponse(
            {
                "estimatedFrameCount": duration_s * fps,
                "estimatedGenerationCost": round(duration_s * price, 4),
                "estimatedCredits": None,  # null for dollar-billed organisations
            }
        )
