"""The sync.so simulator driven by the vendor SDK (syncsdk 0.3.0, `import sync`).

The SDK parses answers leniently (`construct_type` accepts missing fields and wrong types), so every
raw JSON answer is also validated strictly against the SDK's own pydantic type: aliases converted the
SDK's way (`convert_and_respect_annotation_metadata`, direction "read"), then pydantic in strict JSON
mode, and no keys beyond the declared fields unless named.
"""

from __future__ import annotations

import json
import time
import typing
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pydantic
import pytest
from sync import (
    Asset,
    Audio,
    BadRequestError,
    BatchResponse,
    EstimatedGenerationCost,
    Generation,
    GenerationError,
    GenerationSegment,
    ModelInfo,
    NotFoundError,
    PaginatedAssetsResponse,
    PaymentRequiredError,
    SegmentAudioInput,
    Sync,
    TooManyRequestsError,
    ValidationResponse,
    Video,
)
from sync.core.api_error import ApiError
from sync.core.serialization import convert_and_respect_annotation_metadata
from sync.core.unchecked_base_model import construct_type

from tests.simulators.conftest import API_KEY

T = TypeVar("T")
VIDEO_URL = "https://cdn.example.com/talk.mp4"
AUDIO_URL = "https://cdn.example.com/voice.wav"
ASSET_TYPES = {"AUDIO", "VIDEO", "IMAGE"}


class Recorder:
    """Keeps every answer the SDK's httpx client receives, body read, for the strict checks."""

    def __init__(self) -> None:
        self.responses: list[httpx.Response] = []

    def __call__(self, response: httpx.Response) -> None:
        response.read()
        self.responses.append(response)

    def last_json(self, path: str) -> Any:
        """The JSON body of the latest answer to a request for `path`."""
        response = next(r for r in reversed(self.responses) if r.request.url.path == path)
        return response.json()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def client(api: httpx.Client, recorder: Recorder) -> Iterator[Sync]:
    """The SDK against the simulator (state reset by `api`); base_url without a trailing slash."""
    base_url = str(api.base_url).rstrip("/")
    with httpx.Client(timeout=15, event_hooks={"response": [recorder]}) as http:
        yield Sync(api_key=API_KEY, base_url=base_url, httpx_client=http)


def strict(type_: type[T] | Any, raw: Any, extras: frozenset[str] = frozenset()) -> T:
    """`raw` validated strictly as the SDK type `type_`. The top-level models may carry only the
    `extras` keys beyond their declared fields, nested ones none."""
    dealiased = convert_and_respect_annotation_metadata(object_=raw, annotation=type_, direction="read")
    parsed: T = pydantic.TypeAdapter(type_).validate_json(json.dumps(dealiased), strict=True)
    for top in parsed if isinstance(parsed, list) else [parsed]:
        assert isinstance(top, pydantic.BaseModel)
        assert set(top.model_extra or {}) == extras, top.model_extra
        for nested in _nested_models(top):
            assert not nested.model_extra, nested.model_extra
    return parsed


def _nested_models(model: pydantic.BaseModel) -> Iterator[pydantic.BaseModel]:
    for name in type(model).model_fields:
        value = getattr(model, name)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, pydantic.BaseModel):
                yield item
                yield from _nested_models(item)


def test_strict_check_refuses_what_the_lenient_sdk_parse_accepts():
    """The checks below have teeth: a camelCase created_at or float counts pass the SDK, not `strict`."""
    good = {
        "id": "batch_0",
        "created_at": "2026-01-01T00:00:00.000Z",
        "status": "PENDING",
        "metrics": {"total_generations": 20, "success_count": 0, "failed_count": 0, "pending_count": 20},
        "webhookUrl": None,
        "outputUrl": "http://sim/v2/batch/batch_0/output",
    }
    assert strict(BatchResponse, good).metrics.total_generations == 20
    for bad in (
        {**good, "created_at": None, "createdAt": good["created_at"]},
        {**good, "metrics": {**good["metrics"], "success_count": 1.0}},
        {k: v for k, v in good.items() if k != "outputUrl"},
    ):
        construct_type(type_=BatchResponse, object_=bad)  # the SDK's own parse lets it through
        with pytest.raises((pydantic.ValidationError, AssertionError)):
            strict(BatchResponse, bad)


def strict_error(raw: Any) -> GenerationError:
    """A NestJS error body as the SDK's GenerationError, with the newer `error` and `errorCode` keys."""
    return strict(GenerationError, raw, frozenset({"error", "errorCode"}))


def jsonl(count: int, **payload: Any) -> bytes:
    body = {
        "model": "lipsync-2",
        "input": [{"type": "video", "url": VIDEO_URL}, {"type": "audio", "url": AUDIO_URL}],
    }
    records = [
        {"request_id": f"r-{i}", "endpoint": "/v2/generate", "payload": body | payload} for i in range(count)
    ]
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def test_estimate_cost(client, recorder, configure):
    configure(media_duration_s=8.0)
    estimates = client.generations.estimate_cost(
        model="lipsync-2", input=[Video(url=VIDEO_URL), Audio(url=AUDIO_URL)]
    )
    assert [(e.estimated_frame_count, e.estimated_generation_cost) for e in estimates] == [(200.0, 0.4)]
    (checked,) = strict(list[EstimatedGenerationCost], recorder.last_json("/v2/analyze/cost"))
    assert (checked.estimated_frame_count, checked.estimated_generation_cost) == (200.0, 0.4)

    segments = [GenerationSegment(start_time=1, end_time=4, audio_input=SegmentAudioInput(ref_id="a"))]
    spans = client.generations.estimate_cost(
        model="sync-3", input=[Video(url=VIDEO_URL), Audio(url=AUDIO_URL, ref_id="a")], segments=segments
    )
    assert spans[0].estimated_generation_cost == 0.399 and spans[0].estimated_frame_count == 75.0

    with pytest.raises(ApiError) as refused:  # the SDK lists no 400 for estimate_cost: a plain ApiError
        client.generations.estimate_cost(model="lipsync-2", input=[Audio(url=AUDIO_URL)])
    assert refused.value.status_code == 400
    error = strict_error(recorder.last_json("/v2/analyze/cost"))
    assert error.status_code == 400.0 and error.message == ["input must include one video input"]
    assert error.model_extra == {"error": "Bad Request", "errorCode": "generation_video_missing"}


def test_models_list(client, recorder):
    models = client.models.list()
    assert [m.id for m in models] == ["sync-3", "lipsync-2-pro", "lipsync-2", "lipsync-1.9.0-beta", "react-1"]
    checked = strict(list[ModelInfo], recorder.last_json("/v2/models"))
    assert {m.type for m in checked} == {"lipsync", "react"}
    assert all(m.name == m.id and m.version and m.description and m.deprecated_at is None for m in checked)


def test_generation_create_and_get(client, recorder, api):
    voice = api.post("/v2/assets", json={"url": AUDIO_URL, "type": "AUDIO"}).json()
    created = client.generations.create(
        model="lipsync-2",
        input=[Video(url=VIDEO_URL), Audio(asset_id=voice["id"])],
        output_file_name="take_1",
    )
    assert created.status == "PENDING" and created.output_url is None
    newer = frozenset({"errorCode", "outputFileName"})  # newer than SDK 0.3.0
    checked = strict(Generation, recorder.last_json("/v2/generate"), newer)
    assert isinstance(checked.created_at, datetime) and checked.created_at.tzinfo is not None
    assert isinstance(checked.input[1], Audio) and checked.input[1].asset_id == voice["id"]
    assert checked.model_extra == {"errorCode": None, "outputFileName": "take_1"}

    deadline = time.monotonic() + 5
    while (got := client.generations.get(created.id)).status != "COMPLETED":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    done = strict(Generation, recorder.last_json(f"/v2/generate/{created.id}"), newer)
    assert done.id == created.id and done.output_duration == 10.0 and done.error_code is None
    assert got.output_url == done.output_url and done.output_url is not None
    assert httpx.get(done.output_url).status_code == 200

    with pytest.raises(NotFoundError):
        client.generations.get("00000000-0000-4000-8000-000000000000")


def test_assets_list_walk_and_get(client, recorder, api):
    kinds = {"a.wav": "AUDIO", "b.mp4": "VIDEO", "c.png": "IMAGE", "d.mp3": "AUDIO", "e.mov": "VIDEO"}
    made = [
        api.post("/v2/assets", json={"url": f"https://cdn.example.com/{name}", "type": kind}).json()
        for name, kind in kinds.items()
    ]
    seen: list[str] = []
    cursor = None
    while True:
        page = client.assets.list(limit=2, cursor=cursor)
        checked = strict(PaginatedAssetsResponse, recorder.last_json("/v2/assets"))
        assert checked.total_count == 5
        assert [a.id for a in checked.items] == [a.id for a in page.items]
        seen += [a.id for a in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [a["id"] for a in reversed(made)]

    audio = client.assets.list(types=["AUDIO"], sort_by="nameDesc")  # sent as repeated keys
    assert [a.name for a in audio.items] == ["d.mp3", "a.wav"]
    for item in strict(PaginatedAssetsResponse, recorder.last_json("/v2/assets")).items:
        assert item.type == "AUDIO" and item.input_type == "URL" and item.duration_seconds == 10.0
    assert [a.name for a in client.assets.list(search_query="B.MP", types=["VIDEO", "IMAGE"]).items] == [
        "b.mp4"
    ]

    got = client.assets.get(made[2]["id"])
    asset = strict(Asset, recorder.last_json(f"/v2/assets/{made[2]['id']}"))
    assert asset.type in ASSET_TYPES and asset.visibility in {"USER", "ORGANIZATION"}
    assert (asset.type, asset.format, asset.width, asset.height, asset.duration_seconds) == (
        "IMAGE",
        "png",
        1280,
        720,
        None,
    )
    assert isinstance(asset.created_at, datetime) and asset.updated_at == asset.created_at
    assert got.id == asset.id and got.name == "c.png"
    with pytest.raises(NotFoundError):
        client.assets.get("00000000-0000-4000-8000-000000000000")


def test_batch_dry_run_create_get_and_list(client, recorder, configure):
    with pytest.raises(PaymentRequiredError):
        client.batch.create(input=("batch.jsonl", jsonl(20), "application/jsonl"))
    assert strict_error(recorder.last_json("/v2/batch")).model_extra["errorCode"] == "batch_plan_required"
    configure(plan="scale", batch_pending_s=0.05)

    validated = client.batch.create(input=("batch.jsonl", jsonl(20), "application/jsonl"), dry_run=True)
    assert isinstance(validated, ValidationResponse) and validated.status == "VALIDATED"
    assert strict(ValidationResponse, recorder.last_json("/v2/batch")).status == "VALIDATED"

    with pytest.raises(BadRequestError) as refused:
        client.batch.create(input=("batch.jsonl", jsonl(19), "application/jsonl"))
    assert refused.value.status_code == 400
    error = strict_error(recorder.last_json("/v2/batch"))
    assert error.model_extra["errorCode"] == "batch_insufficient_records"
    assert error.message == ["the input file has 19 records; a batch needs at least 20"]

    before = datetime.now(UTC) - timedelta(seconds=1)
    created = client.batch.create(input=("batch.jsonl", jsonl(20), "application/jsonl"), dry_run=False)
    assert isinstance(created, BatchResponse)
    batch = strict(BatchResponse, recorder.last_json("/v2/batch"))
    assert isinstance(batch.created_at, datetime) and batch.created_at >= before
    assert batch.status == "PENDING" and batch.id == created.id
    metrics = batch.metrics
    assert (
        metrics.total_generations,
        metrics.pending_count,
        metrics.success_count,
        metrics.failed_count,
    ) == (
        20,
        20,
        0,
        0,
    )
    assert batch.output_url.endswith(f"/v2/batch/{batch.id}/output") and batch.webhook_url is None

    with pytest.raises(TooManyRequestsError):
        client.batch.create(input=("batch.jsonl", jsonl(20), "application/jsonl"))
    assert (
        strict_error(recorder.last_json("/v2/batch")).model_extra["errorCode"] == "concurrency_limit_reached"
    )

    deadline = time.monotonic() + 5
    while client.batch.get(batch.id).status != "COMPLETED":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    done = strict(BatchResponse, recorder.last_json(f"/v2/batch/{batch.id}"))
    assert (done.metrics.success_count, done.metrics.pending_count) == (20, 0)

    listed = client.batch.list(status="COMPLETED", created_after=before)
    assert [b.id for b in listed] == [batch.id]
    (checked,) = strict(typing.List[BatchResponse], recorder.last_json("/v2/batch"))  # noqa: UP006
    assert checked.status == "COMPLETED" and checked.created_at == batch.created_at
    assert client.batch.list(created_before=before) == []
    with pytest.raises(NotFoundError):
        client.batch.get("batch_000000000000000000000000")
