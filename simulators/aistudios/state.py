"""State of the simulated AI Studios v3 account: tokens, projects, their renders, faults and counters.

No HTTP here. Methods are synchronous and run on the single event loop, so a check followed by a
mutation is atomic. Renders are plans fixed at export time (see `render.py`).
"""

from __future__ import annotations

import heapq
import math
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from simulators.aistudios.config import AIStudiosSimConfig
from simulators.aistudios.render import Outcome, Render, RenderState, plan_render
from simulators.aistudios.validate import DEFAULT_NAME, ProjectRequest, RenderOptions
from simulators.faults import FaultQueue, HttpFault
from simulators.media import OutputDigests

ROUTES = (
    "token", "auth", "create", "export", "progress", "project", "list", "delete", "models", "dropdown",
    "download",
)  # fmt: skip
WEBHOOK_COUNTERS = ("delivered", "failed", "lost")
SIM_USER_ID = "000000000000000000000001"  # [INF] the `userId` every simulated project carries


class OutcomeFault(BaseModel):
    """`POST /_sim/faults` body forcing how the next `times` renders end."""

    model_config = ConfigDict(extra="forbid")

    route: Literal["aistudios.outcome"]
    outcome: Outcome
    reason: str | None = None
    times: int = Field(1, ge=1)


class TooManyRenders(Exception):
    """Starting a render would exceed `max_renders` renders in flight."""


def iso_time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Project:
    id: str
    created_at: float
    document: dict[str, Any]  # the project JSON as created
    workspace_id: str | None
    renders: list[Render] = field(default_factory=list)

    @property
    def latest(self) -> Render | None:
        return self.renders[-1] if self.renders else None

    def state_at(self, now: float) -> str:
        return "draft" if self.latest is None else self.latest.state_at(now).value

    def has_output(self, now: float) -> bool:
        """Whether any render of the project has finished (a re-export keeps the previous file)."""
        return any(r.state_at(now) is RenderState.EXPORTED for r in self.renders)

    def lifecycle(self, now: float) -> dict[str, Any]:
        """The control view (`GET /_sim/aistudios/projects`): state, the project as sent, and each export's
        plan."""
        return {
            "id": self.id,
            "created_at": self.created_at,
            "state": self.state_at(now),
            "progress": self.latest.progress_at(now) if self.latest else 0,
            "document": self.document,  # the project JSON as it was sent
            "exports": [
                {
                    "backend_task_id": r.task_id,
                    "started_at": r.started_at,
                    "ended_at": None if math.isinf(r.ended_at) else r.ended_at,
                    "outcome": r.outcome.value,
                    "state": r.state_at(now).value,
                    "progress": r.progress_at(now),
                    "resolution": r.options.resolution,
                    "webhook_url": r.options.webhook_url,
                }
                for r in self.renders
            ],
        }

    def to_wire(self, now: float, download_url: str) -> dict[str, Any]:
        """The `project` object of `GET .../editor/project/{id}` (reference 2.4)."""
        doc, render = self.document, self.latest
        exported = render is not None and render.state_at(now) is RenderState.EXPORTED
        updated = self.created_at
        if render is not None:
            updated = max(render.started_at, render.ended_at if render.ended_at <= now else 0)
        return {
            "_id": self.id,
            "name": doc.get("name", DEFAULT_NAME),
            "orientation": doc.get("orientation", "landscape"),
            "scenes": doc["scenes"],
            "userId": SIM_USER_ID,
            "templateId": doc.get("templateId"),
            "workspaceId": self.workspace_id,
            "state": self.state_at(now),
            "thumbnailUrl": doc.get("thumbnailUrl"),
            "baseInfoId": None,
            "dictionary": doc.get("dictionary"),
            "backendTaskId": render.task_id if render else None,
            "exportType": render.options.resolution if render else None,  # [INF] meaning undocumented
            "progress": int(render.progress_at(now)) if render else 0,
            "creditSubstracted": self.has_output(now),
            "createdAt": iso_time(self.created_at),
            "updatedAt": iso_time(updated),
            "download_url": download_url if exported else None,
        }


@dataclass
class Stats:
    requests: Counter[str] = field(default_factory=Counter)
    responses: Counter[str] = field(default_factory=Counter)
    unauthorized: int = 0
    tokens_issued: int = 0
    tokens_refused: int = 0
    projects_created: int = 0
    exports_by_project: Counter[str] = field(default_factory=Counter)
    throttled: int = 0
    peak_in_flight: int = 0
    webhooks: Counter[str] = field(default_factory=Counter)


class AIStudiosState:
    """Everything one simulated AI Studios account holds, plus its counters."""

    def __init__(self, config: AIStudiosSimConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        """Forget everything but the config, issued tokens included (the random source is re-seeded)."""
        self.rng = random.Random(self.config.seed)
        self.tokens: dict[str, float] = {}  # token -> expiry (unix s)
        self.projects: dict[str, Project] = {}
        self.renders: list[Render] = []
        self.faults: FaultQueue[HttpFault] = FaultQueue()
        self.outcomes: FaultQueue[OutcomeFault] = FaultQueue()
        self.output_digests = OutputDigests()
        self.stats = Stats()
        self._active_until: list[float] = []  # min-heap of ended_at of possibly in-flight renders

    def configure(self, config: AIStudiosSimConfig) -> None:
        """Apply a new config to what happens from now on (a new seed re-seeds; tokens keep their expiry)."""
        if config.seed != self.config.seed:
            self.rng = random.Random(config.seed)
        self.config = config

    def issue_token(self, app_id: Any, user_key: Any, now: float) -> str | None:
        """A new token valid `token_ttl_s`, or None when the credentials are wrong."""
        if app_id != self.config.app_id or user_key != self.config.user_key:
            self.stats.tokens_refused += 1
            return None
        token = secrets.token_urlsafe(32)
        self.tokens[token] = now + self.config.token_ttl_s
        self.stats.tokens_issued += 1
        return token

    def token_problem(self, token: str | None, now: float) -> str | None:
        """Why `token` is refused, or None when it is valid."""
        if not token:
            return "Authorization header is required"
        expires_at = self.tokens.get(token)
        if expires_at is None:
            return "Invalid token"
        return "Token expired" if now >= expires_at else None

    def expire_tokens(self, now: float) -> int:
        """Make every issued token expire now; return how many were still valid."""
        valid = [token for token, expires_at in self.tokens.items() if expires_at > now]
        for token in valid:
            self.tokens[token] = now
        return len(valid)

    def in_flight(self, now: float) -> int:
        while self._active_until and self._active_until[0] <= now:
            heapq.heappop(self._active_until)
        return len(self._active_until)

    def create_project(
        self, request: ProjectRequest, base_url: str, now: float
    ) -> tuple[Project, Render | None]:
        """Create a project and, if asked, start its render (refused whole when renders are full)."""
        if request.is_export:
            self._check_capacity(now)
        project_id = f"{int(now):08x}{self.rng.getrandbits(64):016x}"  # a Mongo ObjectId's shape
        project = Project(project_id, now, request.document, request.options.workspace_id)
        self.projects[project_id] = project
        self.stats.projects_created += 1
        render = self._start(project, request.options, base_url, now) if request.is_export else None
        return project, render

    def start_render(self, project: Project, options: RenderOptions, base_url: str, now: float) -> Render:
        """Start a new export of `project`; an earlier one still running goes on independently."""
        self._check_capacity(now)
        return self._start(project, options, base_url, now)

    def _start(self, project: Project, options: RenderOptions, base_url: str, now: float) -> Render:
        cfg, rng = self.config, self.rng
        roll = rng.random()  # drawn every time so a seed gives the same sequence with or without faults
        duration_s = cfg.render_s * (1 + rng.uniform(-cfg.render_jitter, cfg.render_jitter))
        task_id = f"{rng.getrandbits(128):032x}"
        forced = self.outcomes.take("aistudios.outcome")
        if forced is not None:
            outcome = forced.outcome
        elif roll < cfg.fail_share:
            outcome = Outcome.FAILED
        elif roll < cfg.fail_share + cfg.stall_share:
            outcome = Outcome.STALLED
        else:
            outcome = Outcome.EXPORTED
        steps, ended_at, reason = plan_render(rng, outcome, now, duration_s)
        if forced is not None and forced.reason is not None and outcome is Outcome.FAILED:
            reason = forced.reason
        credit = max(1, len(project.document["scenes"]))  # [INF] one credit per scene
        render = Render(task_id, project.id, now, options, steps, outcome, ended_at, reason, credit, base_url)
        project.renders.append(render)
        self.renders.append(render)
        self.stats.exports_by_project[project.id] += 1
        if ended_at > now:
            heapq.heappush(self._active_until, ended_at)
        # In-flight only rises at exports, so the peak measured here is exact.
        self.stats.peak_in_flight = max(self.stats.peak_in_flight, self.in_flight(now))
        return render

    def _check_capacity(self, now: float) -> None:
        limit = self.config.max_renders
        if limit is not None and self.in_flight(now) >= limit:
            self.stats.throttled += 1
            raise TooManyRenders(limit)

    def delete(self, ids: list[str]) -> int:
        """Delete the known projects among `ids`; their renders run on (counted, webhooks sent) [INF]."""
        return sum(self.projects.pop(project_id, None) is not None for project_id in set(ids))

    def snapshot(self, now: float) -> dict[str, Any]:
        """The `/_sim/stats` view of this provider."""
        s = self.stats
        states = Counter(render.state_at(now) for render in self.renders)
        return {
            "requests": {route: s.requests[route] for route in ROUTES},
            "responses": dict(sorted(s.responses.items())),
            "unauthorized": s.unauthorized,
            "tokens_issued": s.tokens_issued,
            "tokens_refused": s.tokens_refused,
            "projects_created": s.projects_created,
            "exports": len(self.renders),
            "exports_by_project": dict(s.exports_by_project),
            "renders_completed": states[RenderState.EXPORTED],
            "renders_failed": states[RenderState.FAILED],
            "in_flight": self.in_flight(now),
            "peak_in_flight": s.peak_in_flight,
            "throttled": s.throttled,
            "webhooks": {name: s.webhooks[name] for name in WEBHOOK_COUNTERS},
        }
