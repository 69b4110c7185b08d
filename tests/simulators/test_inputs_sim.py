"""What each provider job was given (`GET /_sim/<provider>/inputs`), over real loopback HTTP: sync.so
generations (multipart parts, assets, URLs, TTS; outputs made from their inputs), Aimi executions (the
assembled upload) and AI Studios projects (outputs distinct per project), and a whole avatar -> lipsync
-> music chain traced by digests."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from simulators.aimi.config import AimiSimConfig
from simulators.aistudios.config import AIStudiosSimConfig
from tests.simulators.test_syncso_sim import expected_output, url_line

VIDEO_URL, AUDIO_URL = "https://cdn.example.com/talk.mp4", "https://cdn.example.com/voice.wav"
TERMINAL = {"COMPLETED", "FAILED", "REJECTED"}
AI_API, APP_ID, USER_KEY = "/api/odin/v3", "test-app", "test-user-key"
AIMI_KEY, AIMI_CHUNK = "test-aimi-key", 16 * 1024
FAST_AI: dict[str, Any] = {
    "app_id": APP_ID,
    "user_key": USER_KEY,
    "render_s": 0.2,
    "render_jitter": 0.0,
    "seed": 7,
}
FAST_AIMI: dict[str, Any] = {
    "api_key": AIMI_KEY,
    "max_chunk_bytes": AIMI_CHUNK,
    "analysis_s": 0.0,
    "execution_s": 0.2,
    "execution_per_video_s": 0.0,
    "status_cooldown_s": 0.0,
    "output_bytes": 4096,
    "seed": 5,
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def until(condition: Callable[[], Any], timeout_s: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
    return found


# sync.so helpers


def inputs_of(control: httpx.Client, provider: str = "syncso", **params: Any) -> dict[str, Any]:
    response = control.get(f"/_sim/{provider}/inputs", params=params)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def lipsync(api: httpx.Client, items: list[dict[str, Any]], files: dict[str, Any] | None = None) -> str:
    """Create a generation (multipart when `files`), return its id."""
    if files:
        data = {"model": "lipsync-2", "input": json.dumps(items)}
        response = api.post("/v2/generate", files=files, data=data)
    else:
        response = api.post("/v2/generate", json={"model": "lipsync-2", "input": items})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def ended(api: httpx.Client, gen_id: str) -> dict[str, Any]:
    response = api.get(f"/v2/generate/{gen_id}", params={"wait": "true", "timeout": "5"})
    assert response.status_code == 200 and response.json()["status"] in TERMINAL, response.text
    generation: dict[str, Any] = response.json()
    return generation


def download(url: str) -> bytes:
    response = httpx.get(url, timeout=15)  # signed or unauthenticated URLs: no key
    assert response.status_code == 200, response.text
    return response.content


def uploaded_asset(api: httpx.Client, name: str, content: bytes, kind: str = "AUDIO") -> dict[str, Any]:
    """An asset whose bytes were PUT to its upload URL; its `url` is that upload's."""
    content_type = {"AUDIO": "audio/wav", "VIDEO": "video/mp4", "IMAGE": "image/png"}[kind]
    ticket = api.post(
        "/v2/assets/upload", json={"fileName": name, "contentType": content_type, "size": len(content)}
    ).json()
    put = httpx.put(ticket["uploadUrl"], content=content, headers={"content-type": content_type})
    assert put.status_code == 200, put.text
    created = api.post("/v2/assets", json={"url": ticket["url"], "type": kind})
    assert created.status_code == 201, created.text
    return {**created.json(), "uploadUrl": ticket["uploadUrl"], "contentType": content_type}


# sync.so: what each generation was given


def test_multipart_parts_assets_and_urls_are_recorded_per_generation(api, control):
    video, voice = b"\x00video-part-bytes", b"RIFF-voice-asset-bytes"
    asset = uploaded_asset(api, "voice fr.wav", voice)
    files = {"video": ("talk.mp4", video, "video/mp4")}
    from_file = lipsync(api, [{"type": "audio", "assetId": asset["id"]}], files)
    by_url = lipsync(api, [{"type": "video", "url": VIDEO_URL}, {"type": "audio", "url": AUDIO_URL}])
    # The asset's own URL (an upload of the simulator's) is known by its bytes too.
    by_asset_url = lipsync(api, [{"type": "video", "url": VIDEO_URL}, {"type": "audio", "url": asset["url"]}])

    recorded = inputs_of(control)
    assert list(recorded) == [from_file, by_url, by_asset_url]
    assert recorded[from_file]["inputs"] == {
        "video": {
            "sha256": sha(video),
            "bytes": len(video),
            "source": "file",
            "file_name": "talk.mp4",
            "name": "talk.mp4",
            "url": recorded[from_file]["inputs"]["video"]["url"],
            "ref": recorded[from_file]["inputs"]["video"]["ref"],
        },
        "audio": {
            "sha256": sha(voice),
            "bytes": len(voice),
            "source": "asset",
            "ref": asset["id"],
            "name": "voice fr.wav",
            "file_name": "voice fr.wav",
            "url": asset["url"],
        },
    }
    assert recorded[by_url]["inputs"] == {
        "video": {"sha256": None, "bytes": None, "source": "url", "url": VIDEO_URL},  # not fetched
        "audio": {"sha256": None, "bytes": None, "source": "url", "url": AUDIO_URL},
    }
    audio = recorded[by_asset_url]["inputs"]["audio"]
    assert (audio["source"], audio["sha256"], audio["bytes"]) == ("url", sha(voice), len(voice))
    assert recorded[by_url]["status"] == "PENDING" and recorded[by_url]["output"] is None


def test_an_asset_gives_the_bytes_last_put_before_the_generation_was_created(api, control):
    first, second = b"first take", b"other take"  # a second PUT of the ticket replaces the first
    asset = uploaded_asset(api, "line.wav", first)
    items = [{"type": "video", "url": VIDEO_URL}, {"type": "audio", "assetId": asset["id"]}]
    before = lipsync(api, items)
    put = httpx.put(asset["uploadUrl"], content=second, headers={"content-type": asset["contentType"]})
    assert put.status_code == 200
    after = lipsync(api, items)
    recorded = inputs_of(control)
    assert recorded[before]["inputs"]["audio"]["sha256"] == sha(first)
    assert recorded[after]["inputs"]["audio"]["sha256"] == sha(second)


def test_tracks_are_named_by_ref_id_and_tts_by_its_script(api, control):
    fr, de = b"bonjour", b"hallo"
    fr_asset, de_asset = uploaded_asset(api, "fr.wav", fr), uploaded_asset(api, "de.wav", de)
    items = [
        {"type": "video", "url": VIDEO_URL},
        {"type": "audio", "assetId": fr_asset["id"], "refId": "fr"},
        {"type": "audio", "assetId": de_asset["id"], "refId": "de"},
    ]
    segments = [
        {"startTime": 0, "endTime": 1, "audioInput": {"refId": "fr"}},
        {"startTime": 1, "endTime": 2, "audioInput": {"refId": "de"}},
    ]
    response = api.post("/v2/generate", json={"model": "lipsync-2", "input": items, "segments": segments})
    assert response.status_code == 201, response.text
    tracks = inputs_of(control)[response.json()["id"]]["inputs"]
    assert list(tracks) == ["video", "audio:fr", "audio:de"]
    assert (tracks["audio:fr"]["sha256"], tracks["audio:de"]["sha256"]) == (sha(fr), sha(de))

    script = "Hello from genq."
    tts = {"type": "text", "provider": {"name": "elevenlabs", "voiceId": "v-1", "script": script}}
    spoken = lipsync(api, [{"type": "video", "url": VIDEO_URL}, tts])
    text = inputs_of(control, ids=spoken)[spoken]["inputs"]["text"]
    assert text == {"sha256": sha(script.encode()), "bytes": len(script), "source": "tts", "name": "v-1"}


def test_output_bytes_are_made_from_the_inputs_and_their_digest_is_reported(api, control, configure):
    configure(output_bytes=150_000)
    video = b"\x00the same video"
    takes = {
        lang: lipsync(api, [{"type": "audio", "url": f"https://cdn.example.com/{lang}.wav"}], files)
        for lang, files in (
            ("en", {"video": ("v.mp4", video, "video/mp4")}),
            ("fr", {"video": ("v.mp4", video, "video/mp4")}),
        )
    }
    outputs = {lang: download(ended(api, gen_id)["outputUrl"]) for lang, gen_id in takes.items()}
    recorded = inputs_of(control)
    for lang, gen_id in takes.items():
        lines = [  # in `input` order: the file part's item was appended
            url_line("audio", f"https://cdn.example.com/{lang}.wav"),
            f"video sha256={sha(video)} bytes={len(video)}",
        ]
        assert outputs[lang] == expected_output(gen_id, 150_000, lines)
        assert recorded[gen_id]["status"] == "COMPLETED"
        assert recorded[gen_id]["output"] == {
            "sha256": sha(outputs[lang]),
            "bytes": 150_000,
            "path": f"/_sim/syncso/outputs/{gen_id}.mp4",
        }
        assert f"video sha256={sha(video)}".encode() in outputs[lang][:1024]  # the manifest is readable
    assert outputs["en"] != outputs["fr"]

    configure(output_bytes=1000)  # the digest is of what a download serves now
    smaller = inputs_of(control, ids=takes["en"])
    assert list(smaller) == [takes["en"]]
    assert smaller[takes["en"]]["output"]["bytes"] == 1000
    assert smaller[takes["en"]]["output"]["sha256"] == sha(outputs["en"][:1000])
    assert control.post("/_sim/reset").status_code == 200
    assert inputs_of(control) == {}


def test_batch_generations_record_their_inputs(api, control, configure):
    configure(plan="scale", batch_pending_s=0.0)
    asset = uploaded_asset(api, "batch.wav", b"batch voice")
    payload = {
        "model": "lipsync-2",
        "input": [{"type": "video", "url": VIDEO_URL}, {"type": "audio", "assetId": asset["id"]}],
    }
    lines = b"".join(
        json.dumps({"request_id": f"r-{i}", "endpoint": "/v2/generate", "payload": payload}).encode() + b"\n"
        for i in range(20)
    )
    created = api.post("/v2/batch", files={"input": ("batch.jsonl", lines, "application/jsonl")})
    assert created.status_code == 201, created.text
    recorded = until(lambda: len(found := inputs_of(control)) == 20 and found)
    assert {r["inputs"]["audio"]["sha256"] for r in recorded.values()} == {sha(b"batch voice")}


# Aimi: the assembled upload each execution was given


def aimi_client(server_url: str) -> httpx.Client:
    return httpx.Client(base_url=server_url, headers={"Authorization": f"Bearer {AIMI_KEY}"}, timeout=15)


@pytest.fixture
def aimi(sim_server, control) -> Iterator[httpx.Client]:
    baseline = AimiSimConfig(**FAST_AIMI).model_dump(mode="json")
    assert control.post("/_sim/config", json={"aimi": baseline}).status_code == 200
    with aimi_client(sim_server.base_url) as client:
        yield client


def aimi_upload(aimi: httpx.Client, data: bytes, order: Callable[[list[int]], list[int]] = list) -> str:
    """A completed upload of `data`, its chunks sent in `order`."""
    init = {"file_name": "clip.mp4", "file_size": len(data), "file_type": "video/mp4"}
    taskid = str(aimi.post("/sync_upload_init", json=init).json()["taskid"])
    chunks = [data[start : start + AIMI_CHUNK] for start in range(0, len(data), AIMI_CHUNK)]
    for index in order(list(range(len(chunks)))):
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Upload-Id": taskid,
            "X-Chunk-Index": str(index),
        }
        assert aimi.post("/sync_upload_chunk", content=chunks[index], headers=headers).status_code == 200
    done = aimi.post("/sync_upload_complete", json={"taskid": taskid, "total_chunks": len(chunks)})
    assert done.status_code == 200, done.text
    return taskid


def aimi_execute(aimi: httpx.Client, taskid: str, **options: Any) -> str:
    analysis = aimi.post("/sync_video_analysis", json={"taskid": taskid}).json()["analysis"]
    files: dict[str, Any] = {
        "analysis": ("analysis.json", json.dumps(analysis), "application/json"),
        "payload": (None, json.dumps({"taskid": taskid})),
    }
    plan = aimi.post("/sync_generate", files=files).json()["plan"]
    if options:
        plan["options"] = options
    response = aimi.post("/sync_execute", json={"taskid": taskid, "plan": plan})
    assert response.status_code == 200, response.text
    return str(response.json()["execid"])


def aimi_finished(aimi: httpx.Client, execid: str) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        body: dict[str, Any] = aimi.post("/sync_status", json={"execid": execid}).json()
        return body if body["status"] in {"finished", "error"} else None

    found: dict[str, Any] = until(finished)
    return found


def test_aimi_executions_record_the_assembled_upload_and_their_output(aimi, control):
    data = bytes(range(256)) * 200  # 51,200 bytes: four chunks, sent backwards
    taskid = aimi_upload(aimi, data, order=lambda indices: indices[::-1])
    plain = aimi_execute(aimi, taskid)
    stems = aimi_execute(aimi, taskid, multitrack=True)
    early = inputs_of(control, "aimi")
    assert early[plain]["output"] is None and early[plain]["status"] in {"pending", "processing"}

    files = {execid: download(aimi_finished(aimi, execid)["url"]) for execid in (plain, stems)}
    recorded = inputs_of(control, "aimi")
    assert list(recorded) == [plain, stems]
    for execid, content in files.items():
        assert recorded[execid]["taskid"] == taskid and recorded[execid]["status"] == "finished"
        assert recorded[execid]["inputs"] == {
            "video": {
                "sha256": sha(data),
                "bytes": len(data),
                "source": "upload",
                "file_name": "clip.mp4",
                "ref": taskid,
            }
        }
        assert recorded[execid]["output"]["sha256"] == sha(content)
        assert recorded[execid]["output"]["bytes"] == len(content)
    assert recorded[stems]["output"]["path"] == f"/_sim/aimi/outputs/{stems}.zip"
    upload = control.get("/_sim/aimi/uploads").json()[taskid]
    assert (upload["sha256"], upload["file_size"], upload["executions"]) == (
        sha(data),
        len(data),
        [plain, stems],
    )
    assert list(inputs_of(control, "aimi", ids=f"{stems},unknown")) == [stems]


# AI Studios: outputs distinct per project


@pytest.fixture
def ai(sim_server, control) -> Iterator[httpx.Client]:
    baseline = AIStudiosSimConfig(**FAST_AI).model_dump(mode="json")
    assert control.post("/_sim/config", json={"aistudios": baseline}).status_code == 200
    with httpx.Client(base_url=sim_server.base_url, timeout=15) as client:
        token = client.post(f"{AI_API}/auth/token", json={"appId": APP_ID, "userKey": USER_KEY}).json()
        client.headers["Authorization"] = token["data"]["token"]
        yield client


def avatar_project(ai: httpx.Client, script: str = "Hello from genq.") -> str:
    model = {"ai_name": "M000045058", "emotion": "BG00002320", "language": "en"}
    scene = {
        "sceneIdx": 0,
        "background": {"id": "background", "type": "background", "source_type": "image"},
        "clips": [{"id": "aiModel-1", "type": "aiModel", "layer": 1, "model": model}],
        "scripts": [
            {"org": script, "isTTS": False, "tts": None, "modelId": "M000045058", "clothId": "BG00002320"}
        ],
    }
    response = ai.post(f"{AI_API}/editor/project", json={"name": "Avatar", "scenes": [scene]})
    assert response.status_code == 200 and response.json()["success"], response.text
    return str(response.json()["data"]["projectId"])


def avatar_video(ai: httpx.Client, project_id: str) -> bytes:
    def url() -> str | None:
        data: dict[str, Any] = ai.get(f"{AI_API}/editor/progress/{project_id}").json()["data"]
        return str(data["downloadUrl"]) if "downloadUrl" in data else None

    return download(until(url))


def test_aistudios_outputs_differ_per_project_and_their_digests_are_reported(ai, control):
    first, second = avatar_project(ai), avatar_project(ai)
    pending = inputs_of(control, "aistudios")
    assert pending[first] == {"state": "exporting", "inputs": {}, "output": None}
    videos = {project_id: avatar_video(ai, project_id) for project_id in (first, second)}
    assert videos[first] != videos[second]
    recorded = inputs_of(control, "aistudios")
    for project_id, content in videos.items():
        assert recorded[project_id] == {
            "state": "exported",
            "inputs": {},
            "output": {
                "sha256": sha(content),
                "bytes": len(content),
                "path": f"/_sim/aistudios/outputs/{project_id}.mp4",
            },
        }


# The pipeline: avatar video -> lipsync onto dubbed tracks -> music on each result


def test_a_chain_of_jobs_is_traced_by_digests(api, ai, aimi, control):
    avatar_id = avatar_project(ai)
    avatar = avatar_video(ai, avatar_id)
    tracks = {lang: f"{lang}-dub".encode() * 100 for lang in ("en", "fr", "de")}
    # The French branch fails while the rule stands, then passes once it is gone.
    rule = {"route": "syncso.input", "contains": "fr.wav"}
    assert control.post("/_sim/faults", json=rule).status_code == 201

    def lipsync_onto(lang: str) -> dict[str, Any]:
        files = {
            "video": ("avatar.mp4", avatar, "video/mp4"),
            "audio": (f"{lang}.wav", tracks[lang], "audio/wav"),
        }
        return ended(api, lipsync(api, [], files))

    first = {lang: lipsync_onto(lang) for lang in tracks}
    assert {lang: g["status"] for lang, g in first.items()} == {
        "en": "COMPLETED",
        "fr": "FAILED",
        "de": "COMPLETED",
    }
    assert control.delete("/_sim/faults").status_code == 200
    generations = {**first, "fr": lipsync_onto("fr")}
    assert generations["fr"]["status"] == "COMPLETED"

    execids = {
        lang: aimi_execute(aimi, aimi_upload(aimi, download(g["outputUrl"])))
        for lang, g in generations.items()
    }
    avatar_sha = inputs_of(control, "aistudios")[avatar_id]["output"]["sha256"]
    syncso, music = inputs_of(control), inputs_of(control, "aimi")
    for lang, generation in generations.items():
        given = syncso[generation["id"]]
        assert given["inputs"]["video"]["sha256"] == avatar_sha == sha(avatar)
        assert given["inputs"]["audio"]["sha256"] == sha(tracks[lang])
        assert music[execids[lang]]["inputs"]["video"]["sha256"] == given["output"]["sha256"]
    failed = syncso[first["fr"]["id"]]
    assert failed["status"] == "FAILED" and failed["output"] is None
    assert failed["inputs"] == syncso[generations["fr"]["id"]]["inputs"]  # the replay was given the same
