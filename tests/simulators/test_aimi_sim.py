"""The Aimi Sync simulator over real loopback HTTP (server fixtures in conftest.py)."""

from __future__ import annotations

import hashlib
import io
import json
import random
import time
import uuid
import wave
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from typing import Any

import httpx
import pytest

from simulators.__main__ import build_parser, config_from_args
from simulators.aimi.config import AimiSimConfig
from simulators.config import SimConfig

KEY = "test-aimi-key"
CHUNK = 16 * 1024
# Small chunks, instant analyses, 0.3 s executions, no poll cooldown, 10 kB per second of video.
FAST_AIMI: dict[str, Any] = {
    "api_key": KEY,
    "max_chunk_bytes": CHUNK,
    "analysis_s": 0.0,
    "execution_s": 0.3,
    "status_cooldown_s": 0.0,
    "bytes_per_second": 10_000,
    "output_bytes": 4096,
    "seed": 5,
}


@pytest.fixture
def aimi_control(control: httpx.Client) -> httpx.Client:
    """The control client with the Aimi section at its fast baseline (state already reset)."""
    baseline = AimiSimConfig(**FAST_AIMI).model_dump(mode="json")
    assert control.post("/_sim/config", json={"aimi": baseline}).status_code == 200
    return control


@pytest.fixture
def configure_aimi(aimi_control: httpx.Client) -> Callable[..., dict[str, Any]]:
    def _configure(**fields: Any) -> dict[str, Any]:
        response = aimi_control.post("/_sim/config", json={"aimi": fields})
        assert response.status_code == 200, response.text
        return response.json()["aimi"]

    return _configure


@pytest.fixture
def aimi(sim_server, aimi_control) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=sim_server.base_url, headers=headers, timeout=15) as client:
        yield client


def stats(control: httpx.Client) -> dict[str, Any]:
    return control.get("/_sim/stats").json()["aimi"]


def video(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def init(aimi: httpx.Client, size: int) -> str:
    body = {"file_name": "clip.mp4", "file_size": size, "file_type": "video/mp4"}
    response = aimi.post("/sync_upload_init", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["max_chunk_bytes"] == CHUNK
    return str(uuid.UUID(response.json()["taskid"]))


def send_chunk(aimi: httpx.Client, taskid: str, index: int, data: bytes, **kwargs: Any) -> httpx.Response:
    headers = {
        "Content-Type": "application/octet-stream",
        "X-Upload-Id": taskid,
        "X-Chunk-Index": str(index),
    }
    return aimi.post("/sync_upload_chunk", content=data, headers=headers, **kwargs)


def split(data: bytes, size: int = CHUNK) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]


def complete(aimi: httpx.Client, taskid: str, total: int) -> httpx.Response:
    return aimi.post("/sync_upload_complete", json={"taskid": taskid, "total_chunks": total})


def uploaded(aimi: httpx.Client, data: bytes) -> str:
    """A completed upload of `data`, chunks sent in order."""
    taskid = init(aimi, len(data))
    chunks = split(data)
    for index, chunk in enumerate(chunks):
        assert send_chunk(aimi, taskid, index, chunk).status_code == 200
    assert complete(aimi, taskid, len(chunks)).status_code == 200
    return taskid


def analysed(aimi: httpx.Client, size: int = 150_000, audio: bool = False) -> tuple[str, dict[str, Any]]:
    """(taskid, video analysis) of a completed upload; with `audio` the audio analysis ran too."""
    taskid = uploaded(aimi, video(size))
    response = aimi.post("/sync_video_analysis", json={"taskid": taskid})
    assert response.status_code == 200, response.text
    if audio:
        assert aimi.post("/sync_audio_analysis", json={"taskid": taskid}).status_code == 200
    return taskid, response.json()["analysis"]


def generate(
    aimi: httpx.Client, analysis: dict[str, Any], payload: dict[str, Any], audio: dict[str, Any] | None = None
) -> httpx.Response:
    files: dict[str, Any] = {
        "analysis": ("analysis.json", json.dumps(analysis), "application/json"),
        "payload": (None, json.dumps(payload)),
    }
    if audio is not None:
        files["audio_analysis"] = ("audio.json", json.dumps(audio), "application/json")
    return aimi.post("/sync_generate", files=files)


def planned(aimi: httpx.Client, **options: Any) -> tuple[str, dict[str, Any]]:
    taskid, analysis = analysed(aimi)
    response = generate(aimi, analysis, {"taskid": taskid, **options})
    assert response.status_code == 200, response.text
    return taskid, response.json()["plan"]


def execute(aimi: httpx.Client, taskid: str, plan: dict[str, Any]) -> httpx.Response:
    return aimi.post("/sync_execute", json={"taskid": taskid, "plan": plan})


def started(aimi: httpx.Client, **options: Any) -> str:
    taskid, plan = planned(aimi, **options)
    response = execute(aimi, taskid, plan)
    assert response.status_code == 200, response.text
    return str(uuid.UUID(response.json()["execid"]))


def status(aimi: httpx.Client, execid: str) -> httpx.Response:
    return aimi.post("/sync_status", json={"execid": execid})


def poll_until_done(aimi: httpx.Client, execid: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 5
    while not seen or seen[-1]["status"] not in {"finished", "error"}:
        assert time.monotonic() < deadline, seen[-3:]
        response = status(aimi, execid)
        assert response.status_code == 200, response.text
        seen.append(response.json())
        time.sleep(0.02)
    return seen


# Auth


@pytest.mark.parametrize("header", [None, "", "Bearer wrong", KEY, f"Basic {KEY}"])
def test_requests_without_the_bearer_key_get_401(sim_server, aimi_control, header):
    headers = {} if header is None else {"Authorization": header}
    with httpx.Client(base_url=sim_server.base_url, headers=headers) as other:
        body = {"file_name": "a.mp4", "file_size": 10, "file_type": "video/mp4"}
        for response in (other.post("/sync_upload_init", json=body), status(other, "x")):
            assert response.status_code == 401
            assert set(response.json()) == {"message"}
    counters = stats(aimi_control)
    assert (counters["unauthorized"], counters["uploads"]) == (2, 0)


def test_bearer_scheme_is_case_insensitive(aimi):
    assert status(aimi, "x").status_code == 200
    aimi.headers["Authorization"] = f"bearer {KEY}"
    assert status(aimi, "x").status_code == 200


# Upload


def test_parallel_out_of_order_chunks_overlap_and_reassemble(aimi, aimi_control, configure_aimi):
    configure_aimi(chunk_delay_s=0.2)
    data = video(7 * CHUNK + 123)
    taskid = init(aimi, len(data))
    chunks = list(enumerate(split(data)))
    random.Random(3).shuffle(chunks)
    with ThreadPoolExecutor(max_workers=len(chunks)) as pool:
        responses = list(pool.map(lambda item: send_chunk(aimi, taskid, *item), chunks))
    for (index, chunk), response in zip(chunks, responses, strict=True):
        assert response.status_code == 200
        assert response.json() == {"taskid": taskid, "chunk_index": index, "received": len(chunk)}
    done = complete(aimi, taskid, len(chunks))
    assert done.status_code == 200
    assert done.json() == {
        "taskid": taskid,
        "status": "uploaded",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    view = aimi_control.get("/_sim/aimi/uploads").json()[taskid]
    assert (view["file_size"], view["completed"], view["sha256"]) == (len(data), True, done.json()["sha256"])
    requests = sorted(view["chunks"], key=lambda c: c["started_at"])
    assert {c["outcome"] for c in requests} == {"acked"}
    assert sorted(c["index"] for c in requests) == list(range(len(chunks)))
    assert any(later["started_at"] < earlier["ended_at"] for earlier, later in pairwise(requests))
    counters = stats(aimi_control)
    assert counters["max_parallel_chunks"] >= 2
    assert (counters["uploads"], counters["chunks_received"], counters["chunks_resent"]) == (1, 8, 0)
    assert counters["bytes_received"] == len(data)


def test_chunks_in_reverse_order_reassemble(aimi):
    data = video(3 * CHUNK)
    taskid = init(aimi, len(data))
    for index, chunk in reversed(list(enumerate(split(data)))):
        assert send_chunk(aimi, taskid, index, chunk).status_code == 200
    assert complete(aimi, taskid, 3).json()["sha256"] == hashlib.sha256(data).hexdigest()


def test_chunk_over_the_cap_is_refused_with_413(aimi, aimi_control):
    taskid = init(aimi, CHUNK + 1)
    refused = send_chunk(aimi, taskid, 0, video(CHUNK + 1))
    assert refused.status_code == 413
    assert str(CHUNK) in refused.json()["message"]
    assert send_chunk(aimi, taskid, 0, video(CHUNK)).status_code == 200  # exactly the cap is fine
    assert send_chunk(aimi, taskid, 1, b"x").status_code == 200
    assert complete(aimi, taskid, 2).status_code == 200
    outcomes = [c["outcome"] for c in aimi_control.get("/_sim/aimi/uploads").json()[taskid]["chunks"]]
    assert outcomes == ["too_large", "acked", "acked"]
    counters = stats(aimi_control)
    assert (counters["chunks_received"], counters["bytes_received"]) == (2, CHUNK + 1)
    assert counters["responses"]["413"] == 1


def test_complete_names_missing_chunks_and_size_mismatch(aimi):
    taskid = init(aimi, 3 * CHUNK)
    send_chunk(aimi, taskid, 0, video(CHUNK))
    send_chunk(aimi, taskid, 2, video(CHUNK))
    missing = complete(aimi, taskid, 3)
    assert missing.status_code == 400
    assert "missing chunk indices: [1]" in missing.json()["message"]
    send_chunk(aimi, taskid, 1, video(10))
    short = complete(aimi, taskid, 3)
    assert short.status_code == 400
    assert short.json()["message"] == (
        f"size mismatch: chunks hold {2 * CHUNK + 10} bytes, file_size is {3 * CHUNK}"
    )
    assert "beyond total_chunks" in complete(aimi, taskid, 2).json()["message"]
    send_chunk(aimi, taskid, 1, video(CHUNK))  # the new copy replaces the short one
    assert complete(aimi, taskid, 3).status_code == 200


def test_upload_requests_that_are_refused(aimi):
    assert (
        aimi.post("/sync_upload_init", json={"file_name": "a", "file_size": 0, "file_type": "v"}).status_code
        == 400
    )
    assert aimi.post("/sync_upload_init", content=b"nope").status_code == 400
    assert send_chunk(aimi, "unknown", 0, b"abc").status_code == 400
    taskid = init(aimi, 3)
    bad_index = aimi.post(
        "/sync_upload_chunk", content=b"abc", headers={"X-Upload-Id": taskid, "X-Chunk-Index": "-1"}
    )
    assert bad_index.status_code == 400
    assert complete(aimi, "unknown", 1).status_code == 400
    assert complete(aimi, taskid, 0).status_code == 400
    assert send_chunk(aimi, taskid, 0, b"abc").status_code == 200
    first = complete(aimi, taskid, 1)
    assert complete(aimi, taskid, 1).json() == first.json()  # repeating complete answers the same
    assert complete(aimi, taskid, 2).status_code == 400
    late = send_chunk(aimi, taskid, 1, b"abc")
    assert late.status_code == 400 and "already complete" in late.json()["message"]


def test_chunk_sent_again_after_its_ack_counts_as_resent(aimi, aimi_control, configure_aimi):
    taskid = init(aimi, 6)
    assert send_chunk(aimi, taskid, 0, b"abc").status_code == 200
    assert send_chunk(aimi, taskid, 0, b"abc").status_code == 200
    assert stats(aimi_control)["chunks_resent"] == 1
    # A chunk whose answer never reached its sender: sending it again is a retry, not a resend.
    configure_aimi(chunk_delay_s=0.4)
    with pytest.raises(httpx.ReadTimeout):
        send_chunk(aimi, taskid, 1, b"def", timeout=httpx.Timeout(5, read=0.1))
    deadline = time.monotonic() + 3
    while (chunk := aimi_control.get("/_sim/aimi/uploads").json()[taskid]["chunks"][-1])["ended_at"] is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert chunk["outcome"] == "unanswered" and chunk["size"] == 3
    configure_aimi(chunk_delay_s=0.0)
    assert send_chunk(aimi, taskid, 1, b"def").status_code == 200
    assert complete(aimi, taskid, 2).status_code == 200
    counters = stats(aimi_control)
    assert (counters["chunks_received"], counters["chunks_resent"]) == (4, 1)


# Analyses


def test_video_analysis_needs_a_complete_upload_and_is_deterministic(aimi):
    data = video(150_000)
    taskid = init(aimi, len(data))
    early = aimi.post("/sync_video_analysis", json={"taskid": taskid})
    assert early.status_code == 400 and "not complete" in early.json()["message"]
    assert aimi.post("/sync_video_analysis", json={"taskid": "nope"}).status_code == 400
    for index, chunk in enumerate(split(data)):
        send_chunk(aimi, taskid, index, chunk)
    complete(aimi, taskid, len(split(data)))
    first = aimi.post("/sync_video_analysis", json={"taskid": taskid}).json()
    assert first["taskid"] == taskid
    analysis = first["analysis"]
    assert analysis["duration"] == 15.0  # 150 kB at 10 kB/s
    assert analysis["cut_points"] == sorted(analysis["cut_points"]) and analysis["cut_points"]
    assert all(0 < cut < 15 for cut in analysis["cut_points"])
    assert len(analysis["scenes"]) == len(analysis["cut_points"]) + 1
    assert analysis["video"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert aimi.post("/sync_video_analysis", json={"taskid": taskid}).json() == first
    # The same video uploaded again gets the same analysis.
    again = uploaded(aimi, data)
    assert aimi.post("/sync_video_analysis", json={"taskid": again}).json()["analysis"] == analysis


def test_audio_analysis_needs_the_video_analysis_first(aimi):
    taskid = uploaded(aimi, video(150_000))
    early = aimi.post("/sync_audio_analysis", json={"taskid": taskid})
    assert early.status_code == 400 and "video analysis" in early.json()["message"]
    aimi.post("/sync_video_analysis", json={"taskid": taskid})
    response = aimi.post("/sync_audio_analysis", json={"taskid": taskid})
    assert response.status_code == 200
    audio = response.json()["audio_analysis"]
    assert audio["duration"] == 15.0 and audio["has_speech"] is True
    assert all(0 <= s["start"] < s["end"] <= 15 for s in audio["speech_segments"])


def test_analysis_waits_analysis_s(aimi, configure_aimi):
    taskid = uploaded(aimi, video(1000))
    configure_aimi(analysis_s=0.3)
    began = time.monotonic()
    assert aimi.post("/sync_video_analysis", json={"taskid": taskid}).status_code == 200
    assert time.monotonic() - began >= 0.3


# Plans


def test_generate_gives_one_section_per_cut_interval(aimi):
    taskid, analysis = analysed(aimi)
    response = generate(aimi, analysis, {"taskid": taskid, "genre": "house", "with_instrument": "harp"})
    assert response.status_code == 200, response.text
    plan = response.json()["plan"]
    uuid.UUID(plan["id"])
    assert (plan["fxstyle"], plan["masterGain"]) == ("chill", 70)
    assert plan["parameterPresets"][0] == {"id": 0, "trackname": "musictracks", "value": 0}
    bounds = [0.0, *analysis["cut_points"], analysis["duration"]]
    assert [(s["start"], s["end"]) for s in plan["sections"]] == list(pairwise(bounds))
    first = plan["sections"][0]
    assert (first["tempo"], first["key"], first["voiceover"]) == (120, "C", None)
    assert first["instruments"]["bass"] == "house-bass" and first["instruments"]["lead"] == "harp"
    assert plan["options"] == {
        "with_vocals": False,
        "with_voiceover": False,
        "with_instrument": "harp",
        "genre": "house",
        "original_audio": False,
        "original_audio_voiceover": False,
        "no_ducking": False,
        "multitrack": False,
    }


@pytest.mark.parametrize("option", ["original_audio", "original_audio_voiceover"])
def test_original_audio_needs_an_audio_analysis(aimi, option):
    taskid, analysis = analysed(aimi)
    refused = generate(aimi, analysis, {"taskid": taskid, option: True})
    assert refused.status_code == 400 and "audio analysis" in refused.json()["message"]
    audio = aimi.post("/sync_audio_analysis", json={"taskid": taskid}).json()["audio_analysis"]
    response = generate(aimi, analysis, {"taskid": taskid, option: True, "no_ducking": True}, audio)
    assert response.status_code == 200, response.text
    assert response.json()["plan"]["options"][option] is True


def test_original_audio_voiceover_places_the_speech_segments(aimi):
    taskid, analysis = analysed(aimi, audio=True)
    payload = {"taskid": taskid, "original_audio_voiceover": True}
    sections = generate(aimi, analysis, payload).json()["plan"]["sections"]
    voiceovers = [s["voiceover"] for s in sections]
    assert all(v["source"] == "original_audio" and v["ducking"] is True for v in voiceovers)
    assert sum(len(v["segments"]) for v in voiceovers) >= 1


@pytest.mark.parametrize(
    "parts",
    [
        {"analysis": ("a.json", "{not json", "application/json"), "payload": (None, '{"taskid": "TASK"}')},
        {"analysis": ("a.json", "[]", "application/json"), "payload": (None, '{"taskid": "TASK"}')},
        {"analysis": ("a.json", b"\xff\xfe", "application/json"), "payload": (None, '{"taskid": "TASK"}')},
        {"analysis": ("a.json", "{}", "application/json"), "payload": (None, '{"taskid": "TASK"}')},
        {"analysis": ("a.json", "{}", "application/json"), "payload": (None, "not json")},
        {"analysis": ("a.json", "{}", "application/json"), "payload": (None, "{}")},
        {"analysis": ("a.json", "{}", "application/json")},
        {"payload": (None, '{"taskid": "TASK"}')},
    ],
)
def test_generate_refuses_unreadable_parts(aimi, parts):
    taskid, _ = analysed(aimi, size=1000)
    filled = {
        name: (file, content.replace("TASK", taskid) if isinstance(content, str) else content, *rest)
        for name, (file, content, *rest) in parts.items()
    }
    response = aimi.post("/sync_generate", files=filled)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"message"}


def test_generate_refuses_wrong_option_types_and_non_multipart(aimi):
    taskid, analysis = analysed(aimi, size=1000)
    assert generate(aimi, analysis, {"taskid": taskid, "multitrack": "yes"}).status_code == 400
    assert generate(aimi, analysis, {"taskid": "unknown"}).status_code == 400
    assert aimi.post("/sync_generate", json={"taskid": taskid}).status_code == 400
    unanalysed = uploaded(aimi, video(1000, seed=2))
    assert generate(aimi, analysis, {"taskid": unanalysed}).status_code == 400


# Executions


@pytest.mark.parametrize("plan", [None, {}, {"sections": []}, {"sections": {}}, [1], "plan"])
def test_execute_validates_the_plan(aimi, plan):
    taskid, _ = planned(aimi)
    refused = execute(aimi, taskid, plan)
    assert refused.status_code == 400
    assert refused.json() == {"message": "plan.sections must be a non-empty array"}


def test_execute_needs_a_known_task(aimi):
    _, plan = planned(aimi)
    assert execute(aimi, "unknown", plan).status_code == 400


def test_status_lifecycle_to_a_downloadable_mp4(aimi, aimi_control, configure_aimi):
    configure_aimi(execution_s=1.0)
    execid = started(aimi)
    seen = poll_until_done(aimi, execid)
    statuses = [body["status"] for body in seen]
    assert statuses[0] == "pending" and "processing" in statuses and statuses[-1] == "finished"
    assert all(body["url"] is None and body["message"] for body in seen[:-1])
    done = seen[-1]
    assert done["url"] == f"{aimi.base_url}/_sim/aimi/outputs/{execid}.mp4"
    assert done["queryurl"] == f"{aimi.base_url}/_sim/aimi/reports/{execid}-results.json"
    output = httpx.get(done["url"])  # no Authorization
    assert output.status_code == 200 and output.headers["content-type"] == "video/mp4"
    assert len(output.content) == 4096 and output.content[4:8] == b"ftyp"
    assert httpx.get(done["url"]).content == output.content
    results = httpx.get(done["queryurl"]).json()
    assert (results["execid"], results["status"]) == (execid, "finished")
    assert httpx.get(f"{aimi.base_url}/_sim/aimi/outputs/{execid}.zip").status_code == 404
    counters = stats(aimi_control)
    assert (counters["executions_started"], counters["executions_finished"], counters["running"]) == (1, 1, 0)
    view = aimi_control.get("/_sim/aimi/executions").json()[execid]
    assert view["status"] == "finished" and view["plan"]["sections"]
    assert view["started_at"] < view["processing_at"] < view["ended_at"]


def test_execution_not_finished_has_no_download(aimi, configure_aimi):
    configure_aimi(execution_s=5.0)
    execid = started(aimi)
    assert httpx.get(f"{aimi.base_url}/_sim/aimi/outputs/{execid}.mp4").status_code == 404
    assert httpx.get(f"{aimi.base_url}/_sim/aimi/reports/{execid}-failed.json").status_code == 404


def test_execution_time_grows_with_the_video(aimi, aimi_control, configure_aimi):
    configure_aimi(execution_s=1.0, execution_per_video_s=2.0)
    execid = started(aimi)  # a 15 s video
    view = aimi_control.get("/_sim/aimi/executions").json()[execid]
    assert view["ended_at"] - view["started_at"] == pytest.approx(31.0)


def test_multitrack_download_is_a_zip_with_stems(aimi):
    execid = started(aimi, multitrack=True)
    done = poll_until_done(aimi, execid)[-1]
    assert done["url"] == f"{aimi.base_url}/_sim/aimi/outputs/{execid}.zip"
    response = httpx.get(done["url"])
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert sorted(archive.namelist()) == ["stems/music.wav", "stems/voiceover.wav", "video.mp4"]
        assert archive.read("video.mp4")[4:8] == b"ftyp"
        with wave.open(io.BytesIO(archive.read("stems/music.wav"))) as stem:
            assert stem.getnframes() > 0
    assert httpx.get(f"{aimi.base_url}/_sim/aimi/outputs/{execid}.mp4").status_code == 404


def test_fail_share_ends_in_error_with_a_report(aimi, aimi_control, configure_aimi):
    configure_aimi(fail_share=1.0)
    execid = started(aimi)
    failed = poll_until_done(aimi, execid)[-1]
    assert failed["status"] == "error" and "queryurl" not in failed
    assert failed["url"] == f"{aimi.base_url}/_sim/aimi/reports/{execid}-failed.json"
    report = httpx.get(failed["url"]).json()
    assert report["execid"] == execid and report["error"]
    assert httpx.get(f"{aimi.base_url}/_sim/aimi/outputs/{execid}.mp4").status_code == 404
    counters = stats(aimi_control)
    assert (counters["executions_failed"], counters["executions_finished"]) == (1, 0)


def test_at_most_ten_executions_run_at_once(aimi, aimi_control, configure_aimi):
    configure_aimi(execution_s=0.6)
    taskid, plan = planned(aimi)
    for _ in range(10):
        assert execute(aimi, taskid, plan).status_code == 200
    refused = execute(aimi, taskid, plan)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1" and "10" in refused.json()["message"]
    counters = stats(aimi_control)
    assert (counters["running"], counters["peak_running"]) == (10, 10)
    assert counters["throttled"] == {"concurrency": 1, "cooldown": 0}
    time.sleep(0.65)
    assert execute(aimi, taskid, plan).status_code == 200  # finishing freed the slots
    counters = stats(aimi_control)
    assert counters["executions_started"] == 11 and counters["executions_by_task"] == {taskid: 11}


def test_polling_faster_than_the_cooldown_gets_429(aimi, aimi_control, configure_aimi):
    configure_aimi(status_cooldown_s=5.0)
    execid = started(aimi)
    assert status(aimi, execid).status_code == 200
    refused = status(aimi, execid)
    assert refused.status_code == 429
    assert refused.json() == {"message": "cooldown"}
    assert refused.headers["Retry-After"] == "5"
    assert status(aimi, "other").status_code == 200  # unknown ids have no cooldown
    configure_aimi(status_cooldown_s=0.2)
    time.sleep(0.25)
    assert status(aimi, execid).status_code == 200
    assert stats(aimi_control)["throttled"]["cooldown"] == 1


def test_unknown_execid_is_inactive(aimi):
    response = status(aimi, "no-such-exec")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["videourl"]) == ("inactive", None) and body["message"]
    assert aimi.post("/sync_status", json={}).status_code == 400


# Faults, stats, config


def test_injected_faults(aimi, aimi_control):
    fault = {"route": "aimi.upload_chunk", "status": 503, "times": 2}
    assert aimi_control.post("/_sim/faults", json=fault).status_code == 201
    taskid = init(aimi, 3)
    for _ in range(2):
        response = send_chunk(aimi, taskid, 0, b"abc")
        assert response.status_code == 503 and response.json() == {"message": "Service Unavailable"}
    assert send_chunk(aimi, taskid, 0, b"abc").status_code == 200
    custom = {"route": "aimi.status", "status": 500, "body": {"message": "boom"}}
    aimi_control.post("/_sim/faults", json=custom)
    assert status(aimi, "x").json() == {"message": "boom"}
    assert aimi_control.post("/_sim/faults", json={"route": "aimi.nope", "status": 500}).status_code == 400
    counters = stats(aimi_control)
    assert counters["responses"]["503"] == 2 and counters["chunks_received"] == 1


def test_download_fault_and_outcome_fault(aimi, aimi_control):
    aimi_control.post("/_sim/faults", json={"route": "aimi.outcome", "outcome": "error", "reason": "no GPU"})
    failed = poll_until_done(aimi, started(aimi))[-1]
    assert httpx.get(failed["url"]).json()["error"] == "no GPU"
    done = poll_until_done(aimi, started(aimi))[-1]
    aimi_control.post("/_sim/faults", json={"route": "aimi.download", "status": 502})
    assert httpx.get(done["url"]).status_code == 502
    assert httpx.get(done["url"]).status_code == 200


def test_stats_keys(aimi, aimi_control):
    poll_until_done(aimi, started(aimi))
    counters = stats(aimi_control)
    assert set(counters) == {
        "requests", "responses", "unauthorized", "uploads", "chunks_received", "chunks_resent",
        "bytes_received", "max_parallel_chunks", "executions_started", "executions_by_task", "running",
        "peak_running", "throttled", "executions_finished", "executions_failed",
    }  # fmt: skip
    requests = counters["requests"]
    assert requests["upload_init"] == requests["upload_complete"] == requests["video_analysis"] == 1
    assert requests["generate"] == requests["execute"] == 1 and requests["status"] >= 2
    assert requests["upload_chunk"] == 10  # 150 kB in 16 KiB chunks


def test_reset_forgets_uploads_and_executions(aimi, aimi_control):
    execid = started(aimi)
    aimi_control.post("/_sim/reset")
    assert status(aimi, execid).json()["status"] == "inactive"
    assert aimi_control.get("/_sim/aimi/uploads").json() == {}
    assert aimi_control.get("/_sim/aimi/executions").json() == {}


def test_config_defaults_and_cli_flags():
    defaults = SimConfig().model_dump()["aimi"]
    assert (defaults["api_key"], defaults["max_chunk_bytes"]) == ("sim-aimi-key", 30 * 1024 * 1024)
    assert (defaults["max_executions"], defaults["status_cooldown_s"]) == (10, 5.0)
    args = build_parser().parse_args(["--aimi-api-key", "K", "--aimi-max-executions", "3"])
    assert config_from_args(args).aimi == AimiSimConfig(api_key="K", max_executions=3)
