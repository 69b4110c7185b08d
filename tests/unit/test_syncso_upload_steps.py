"""The upload stage's plain function over fakes: a file goes into the media library once, and a run
re-queued for a rate turn resumes where the last one was instead of starting over."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from schemas import JOB_REQUEST, JobRecord, JobStatus
from worker.handoff import Roots
from worker.limits import Gate, MemoryLimiter, Pool, RateBudget
from worker.outcomes import Later
from worker.providers.syncso.account import SyncSo
from worker.providers.syncso.inputs import upload_inputs
from worker.providers.syncso.resources import Asset, AssetPage, UploadTicket
from worker.providers.syncso.settings import SyncSoSettings
from worker.settings import LimitsSettings


class FakeClient:
    def __init__(self, listed: list[Asset] | None = None) -> None:
        self.calls: list[str] = []
        self.listed = listed or []

    def start_upload(self, file_name: str, content_type: str, size: int) -> UploadTicket:
        self.calls.append("ticket")
        return UploadTicket(upload_url="https://up.test/put", url=f"https://files.test/{file_name}")

    def put_upload(self, ticket: UploadTicket, stream: object, content_type: str) -> None:
        self.calls.append("put")

    def create_asset(self, url: str, asset_type: str, name: str) -> Asset:
        self.calls.append("register")
        return Asset(id="a1", name=name, url=url, type=asset_type)

    def list_assets(self, **query: Any) -> AssetPage:
        self.calls.append("list")
        return AssetPage(items=self.listed)


class FakeStore:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def set_data(self, job_id: str, name: str, value: object) -> None:
        self.data[name] = value


def run(client: FakeClient, store: FakeStore, video: Path, *, turn_taken: bool = False) -> dict[str, str]:
    """One run of the upload stage; with ``turn_taken``, the account's one ``syncso.other`` turn of the
    minute was just taken by someone else, so the registration has to wait for the next."""
    now = datetime.now(UTC)
    request = JOB_REQUEST.validate_python(
        {"kind": "lipsync", "model": "lipsync-2", "video": str(video), "audio": "https://x.test/a.wav"}
    )
    job = JobRecord(id="j1", kind="lipsync", status=JobStatus.RUNNING, request=request, data=dict(store.data),
                    created_at=now, updated_at=now)  # fmt: skip
    limiter = MemoryLimiter()
    fast = RateBudget("syncso.upload", 10_000_000, 60.0)
    other = (
        RateBudget("syncso.other", 1, 60.0) if turn_taken else RateBudget("syncso.other", 10_000_000, 60.0)
    )
    if turn_taken:
        limiter.take_turn(other, "someone-else", horizon_s=120)
    sync = SyncSo(client, SyncSoSettings(max_upload_bytes=10), Pool("syncso.generations", 3, 60.0),  # type: ignore[arg-type]
                  Pool("syncso.batches", 1, 60.0), fast, other, fast, None,
                  Roots((video.parent,)))  # fmt: skip
    gate = Gate(limiter, LimitsSettings(horizon_s=120), job, lambda: ("syncso", "rerun"))
    return upload_inputs(job, store, sync, gate)  # type: ignore[arg-type]


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "v.mp4"
    path.write_bytes(b"x" * 100)
    return path


def test_a_large_file_is_put_once_and_registered_once(video: Path) -> None:
    client, store = FakeClient(), FakeStore()
    assert run(client, store, video) == {"video": "a1"}
    assert client.calls == ["ticket", "put", "register"]
    assert run(client, store, video) == {"video": "a1"}  # a redelivery finds the asset recorded
    assert client.calls == ["ticket", "put", "register"]


def test_a_run_whose_registration_turn_comes_later_resumes_with_the_registration(video: Path) -> None:
    client, store = FakeClient(), FakeStore()
    with pytest.raises(Later):
        run(client, store, video, turn_taken=True)
    assert client.calls == ["ticket", "put"]
    assert store.data["uploads"]["video"] == {"url": "https://files.test/genq-j1-video.mp4"}
    resumed = FakeClient()
    assert run(resumed, store, video) == {"video": "a1"}
    assert resumed.calls == ["register"]  # no second ticket, no second PUT


def test_a_registration_that_may_have_reached_sync_so_is_looked_up_by_name_first(video: Path) -> None:
    store = FakeStore()
    store.data = {"uploads": {"video": {"url": "https://files.test/x", "registering": "2026-12-01T00:00:00"}}}
    listed = [Asset(id="a9", name="genq-j1-video", size=100, type="VIDEO")]
    client = FakeClient(listed)
    assert run(client, store, video) == {"video": "a9"}
    assert client.calls == ["list"]
