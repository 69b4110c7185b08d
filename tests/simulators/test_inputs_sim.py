"""What each provider job was given (`GET /_sim/<provider>/inputs`), over real loopback HTTP: sync.so
generations (multipart parts, assets, URLs, TTS; outputs made from their inputs)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.simulators.test_syncso_sim import expected_output, url_line

VIDEO_URL, AUDIO_URL = "https://cdn.example.com/talk.mp4", "https://cdn.example.com/voice.wav"
TERMINAL = {"COMPLETED", "FAILED", "REJECTED"}


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
