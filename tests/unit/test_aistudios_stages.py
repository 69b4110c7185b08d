"""The AI Studios create stage's plain function over fakes: a project is created once and exported once,
whatever run of the stage dies or waits for its turn where."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from schemas import JOB_REQUEST, JobRecord, JobStatus
from worker.limits import Gate, MemoryLimiter, Pool, RateBudget
from worker.outcomes import Later
from worker.providers.aistudios.client import Progress
from worker.providers.aistudios.settings import AIStudiosSettings
from worker.providers.aistudios.stages import AIStudios, start_render
from worker.settings import LimitsSettings

SIMPLE = {"kind": "avatar", "script": "Hello.", "model": "M000045058", "clothes": "BG00002320"}
RENDERS = Pool("aistudios.renders", 4, 60.0)
LIMITS = LimitsSettings(horizon_s=0.01)


class FakeClient:
    def __init__(self, progress: dict[str, Any] | None = None) -> None:
        self.calls: list[str] = []
        self._progress = Progress.model_validate(progress or {"progress": 0, "state": "draft"})

    def create_project(self, project: dict[str, Any], **options: Any) -> str:
        self.calls.append("create")
        assert options["export"] is False
        return "p1"

    def export(self, project_id: str, **options: Any) -> str:
        self.calls.append("export")
        return project_id

    def progress(self, project_id: str) -> Progress:
        self.calls.append("progress")
        return self._progress


class FakeStore:
    def __init__(self, ids: dict[str, str]) -> None:
        self.ids = dict(ids)

    def record_provider_id(self, job_id: str, name: str, value: str) -> str:
        return self.ids.setdefault(name, value)

    def set_provider_id(self, job_id: str, name: str, value: str) -> None:
        self.ids[name] = value


def job(ids: dict[str, str]) -> JobRecord:
    now = datetime.now(UTC)
    request = JOB_REQUEST.validate_python(SIMPLE)
    return JobRecord(id="j1", kind="avatar", status=JobStatus.RUNNING, request=request, provider_ids=ids,
                     created_at=now, updated_at=now)  # fmt: skip


def run(client: FakeClient, store: FakeStore, *, calls_per_minute: int = 10_000_000) -> str:
    record = job(store.ids)
    rate = RateBudget("aistudios.requests", calls_per_minute, 60.0)
    ai = AIStudios(client, AIStudiosSettings(), RENDERS, rate, None)  # type: ignore[arg-type]
    gate = Gate(MemoryLimiter(), LIMITS, record, lambda: ("aistudios", "rerun"))
    return start_render(record, store, ai, gate)  # type: ignore[arg-type]


def test_a_new_job_creates_a_draft_then_exports_it_once() -> None:
    client, store = FakeClient(), FakeStore({})
    assert run(client, store) == "p1"
    assert client.calls == ["create", "export"]
    assert store.ids == {"project": "p1", "export": "accepted"}


def test_a_run_whose_export_turn_comes_later_exports_on_its_next_run_without_asking_progress() -> None:
    client, store = FakeClient(), FakeStore({})
    with pytest.raises(Later):  # one call a minute: the export waits a minute for its turn
        run(client, store, calls_per_minute=1)
    assert (client.calls, store.ids) == (["create"], {"project": "p1"})

    client.calls.clear()
    run(client, store)
    assert client.calls == ["export"]
    assert store.ids["export"] == "accepted"


@pytest.mark.parametrize(
    ("progress", "calls"),
    [
        ({"progress": 0, "state": "exporting"}, ["progress"]),
        ({"progress": 12.5}, ["progress"]),
        ({"progress": 100, "downloadUrl": "https://x/o.mp4", "state": "exported"}, ["progress"]),
        ({"progress": 0, "state": "draft"}, ["progress", "export"]),
    ],
    ids=["exporting", "moving", "done", "still-a-draft"],
)
def test_a_run_after_one_that_died_mid_export_exports_again_only_if_the_project_is_still_a_draft(
    progress: dict[str, Any], calls: list[str]
) -> None:
    client, store = FakeClient(progress), FakeStore({"project": "p1", "export": "requested"})
    run(client, store)
    assert client.calls == calls
    assert store.ids == {"project": "p1", "export": "accepted"}


def test_a_recorded_project_and_export_are_not_sent_again() -> None:
    client, store = FakeClient(), FakeStore({"project": "p1", "export": "accepted"})
    assert run(client, store) == "p1"
    assert client.calls == []
