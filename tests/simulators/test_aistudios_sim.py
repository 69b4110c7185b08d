"""The AI Studios v3 simulator over real loopback HTTP (server fixtures in conftest.py)."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from simulators.__main__ import build_parser, config_from_args
from simulators.aistudios.config import AIStudiosSimConfig
from simulators.aistudios.validate import validate_create
from simulators.config import SimConfig, section
from simulators.registry import SIMULATORS
from simulators.syncso.config import SyncSoSimConfig

API = "/api/odin/v3"
APP_ID, USER_KEY = "test-app", "test-user-key"
# Jitter-free 0.3 s renders with a fixed seed.
FAST_AI: dict[str, Any] = {
    "app_id": APP_ID,
    "user_key": USER_KEY,
    "render_s": 0.3,
    "render_jitter": 0.0,
    "seed": 7,
}
AVATAR, CLOTHES = "M000045058", "BG00002320"
OBJECT_ID = re.compile(r"[0-9a-f]{24}")


def avatar_clip(**overrides: Any) -> dict[str, Any]:
    return {
        "id": "aiModel-1",
        "type": "aiModel",
        "layer": 1,
        "model": {"ai_name": AVATAR, "emotion": CLOTHES, "language": "en"},
        "opacity": 100,
        **overrides,
    }


def scene(**overrides: Any) -> dict[str, Any]:
    return {
        "sceneIdx": 0,
        "background": {"id": "background", "type": "background", "source_type": "image"},
        "clips": [avatar_clip()],
        "scripts": [{"org": "<p>Hello from genq.</p>", "isTTS": False, "tts": None,
                     "modelId": AVATAR, "clothId": CLOTHES}],
        **overrides,
    }  # fmt: skip


def project(**overrides: Any) -> dict[str, Any]:
    return {"name": "Test Project", "orientation": "landscape", "scenes": [scene()], **overrides}


@pytest.fixture
def ai_control(control: httpx.Client) -> httpx.Client:
    """The control client with the AI Studios section at its fast baseline (state already reset)."""
    baseline = AIStudiosSimConfig(**FAST_AI).model_dump(mode="json")
    assert control.post("/_sim/config", json={"aistudios": baseline}).status_code == 200
    return control


@pytest.fixture
def configure_ai(ai_control: httpx.Client) -> Callable[..., dict[str, Any]]:
    def _configure(**fields: Any) -> dict[str, Any]:
        response = ai_control.post("/_sim/config", json={"aistudios": fields})
        assert response.status_code == 200, response.text
        return response.json()["aistudios"]

    return _configure


def issue_token(client: httpx.Client) -> str:
    response = client.post(f"{API}/auth/token", json={"appId": APP_ID, "userKey": USER_KEY})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    return str(body["data"]["token"])


@pytest.fixture
def ai(sim_server, ai_control) -> Iterator[httpx.Client]:
    """A client carrying a fresh token as its raw `Authorization` header."""
    with httpx.Client(base_url=sim_server.base_url, timeout=15) as client:
        client.headers["Authorization"] = issue_token(client)
        yield client


def stats(control: httpx.Client) -> dict[str, Any]:
    return control.get("/_sim/stats").json()["aistudios"]


def create(ai: httpx.Client, payload: dict[str, Any] | None = None) -> str:
    response = ai.post(f"{API}/editor/project", json=payload or project())
    assert response.status_code == 200, response.text
    assert response.json()["success"] is True, response.text
    project_id = response.json()["data"]["projectId"]
    assert OBJECT_ID.fullmatch(project_id)
    return str(project_id)


def progress(ai: httpx.Client, project_id: str) -> httpx.Response:
    return ai.get(f"{API}/editor/progress/{project_id}")


def poll_until(ai: httpx.Client, project_id: str, done: Callable[[dict[str, Any]], bool]) -> list[Any]:
    """Poll progress every 10 ms until `done(body)`; return every body seen."""
    seen: list[Any] = []
    deadline = time.monotonic() + 5
    while not seen or not done(seen[-1]):
        assert time.monotonic() < deadline, seen[-3:]
        response = progress(ai, project_id)
        assert response.status_code == 200
        seen.append(response.json())
        time.sleep(0.01)
    return seen


def expected_output(project_id: str, size: int) -> bytes:
    blocks = range(0, size, 64 * 1024)
    data = b"".join(
        hashlib.shake_256(f"{project_id}:{i}".encode()).digest(min(64 * 1024, size - start))
        for i, start in enumerate(blocks)
    )
    header = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isommp42"
    return (header + data[len(header) :])[:size]


# Tokens and auth


def test_token_is_issued_for_the_right_credentials_only(sim_server, ai_control):
    with httpx.Client(base_url=sim_server.base_url) as client:
        assert issue_token(client) != issue_token(client)
        for body in (
            {"appId": APP_ID, "userKey": "wrong"},
            {"appId": "wrong", "userKey": USER_KEY},
            {"appId": APP_ID},
            {},
        ):
            refused = client.post(f"{API}/auth/token", json=body)
            assert refused.status_code == 401
            assert refused.json()["success"] is False
            assert refused.json()["error"]["code"] == "INVALID_CREDENTIALS"
        assert client.post(f"{API}/auth/token", content=b"not json").status_code == 401
    counters = stats(ai_control)
    assert (counters["tokens_issued"], counters["tokens_refused"]) == (2, 5)
    assert counters["requests"]["token"] == 7


def test_token_check_route(ai):
    assert ai.get(f"{API}/auth").json() == {"success": True, "data": {"isAuthenticated": True}}


@pytest.mark.parametrize("header", [None, "Bearer {token}", "nonsense", ""])
def test_requests_without_the_raw_token_get_401(sim_server, ai, ai_control, header):
    token = ai.headers["Authorization"]
    headers = {} if header is None else {"Authorization": header.format(token=token)}
    with httpx.Client(base_url=sim_server.base_url, headers=headers) as other:
        for response in (other.get(f"{API}/auth"), other.post(f"{API}/editor/project", json=project())):
            assert response.status_code == 401
            assert response.json()["success"] is False
            assert response.json()["error"]["code"] == "UNAUTHORIZED"
    counters = stats(ai_control)
    assert counters["unauthorized"] == 2 and counters["projects_created"] == 0


def test_token_expires_after_its_ttl(ai, configure_ai):
    configure_ai(token_ttl_s=0.3)
    ai.headers["Authorization"] = issue_token(ai)
    assert ai.get(f"{API}/auth").status_code == 200
    time.sleep(0.35)
    expired = ai.get(f"{API}/auth")
    assert expired.status_code == 401
    assert expired.json()["error"] == {"code": "UNAUTHORIZED", "msg": "Token expired"}


def test_expire_tokens_route_ends_every_token_early(ai, ai_control):
    assert ai_control.post("/_sim/aistudios/expire-tokens").json() == {"expired": 1}
    assert ai.get(f"{API}/auth").status_code == 401
    ai.headers["Authorization"] = issue_token(ai)  # a new token works again
    assert ai.get(f"{API}/auth").status_code == 200
    assert stats(ai_control)["requests"]["auth"] == 2


def test_reset_forgets_tokens(ai, ai_control):
    ai_control.post("/_sim/reset")
    assert ai.get(f"{API}/auth").json()["error"]["msg"] == "Invalid token"


# Projects and renders


def test_create_without_export_makes_a_draft(ai, ai_control):
    project_id = create(ai, project(isExport=False))
    assert progress(ai, project_id).json() == {"success": True, "data": {"progress": 0, "state": "draft"}}
    got = ai.get(f"{API}/editor/project/{project_id}").json()["data"]["project"]
    assert (got["state"], got["download_url"], got["backendTaskId"]) == ("draft", None, None)
    assert ai.get(f"{API}/editor/project").json() == {"success": True, "data": []}
    counters = stats(ai_control)
    assert (counters["projects_created"], counters["exports"], counters["in_flight"]) == (1, 0, 0)


def test_render_progress_rises_to_100_then_gives_the_download_url(ai, ai_control):
    project_id = create(ai)
    seen = poll_until(ai, project_id, lambda body: body["data"]["progress"] >= 100)
    values = [body["data"]["progress"] for body in seen]
    assert values == sorted(values) and len(set(values)) >= 3
    assert all(
        body["data"]["state"] == "exporting" and "downloadUrl" not in body["data"] for body in seen[:-1]
    )
    done = seen[-1]["data"]
    assert done["state"] == "exported"
    assert done["downloadUrl"] == f"{ai.base_url}/_sim/aistudios/outputs/{project_id}.mp4"
    counters = stats(ai_control)
    assert (counters["renders_completed"], counters["in_flight"], counters["peak_in_flight"]) == (1, 0, 1)


def test_project_object_and_list(ai):
    project_id = create(ai, project(resolution="720", workspaceId="ws-1", dictionary={"genq": "gen queue"}))
    poll_until(ai, project_id, lambda body: body["data"]["state"] == "exported")
    got = ai.get(f"{API}/editor/project/{project_id}").json()["data"]["project"]
    assert got["_id"] == project_id and got["name"] == "Test Project"
    assert got["scenes"] == project()["scenes"] and got["dictionary"] == {"genq": "gen queue"}
    assert (got["state"], got["progress"], got["creditSubstracted"]) == ("exported", 100, True)
    assert got["download_url"].endswith(f"/_sim/aistudios/outputs/{project_id}.mp4")
    assert re.fullmatch(r"[0-9a-f]{32}", got["backendTaskId"])
    assert got["exportType"] == "720" and got["workspaceId"] == "ws-1"
    assert got["createdAt"] <= got["updatedAt"]
    listed = ai.get(f"{API}/editor/project").json()["data"]
    assert listed == [
        {"id": project_id, "name": "Test Project", "state": "exported", "download_url": got["download_url"]}
    ]


def test_download_streams_deterministic_mp4_bytes(ai, configure_ai):
    configure_ai(output_bytes=100_000)
    project_id = create(ai)
    assert ai.get(f"/_sim/aistudios/outputs/{project_id}.mp4").status_code == 404  # not rendered yet
    url = poll_until(ai, project_id, lambda body: body["data"]["progress"] >= 100)[-1]["data"]["downloadUrl"]
    response = httpx.get(url)  # no Authorization
    assert response.status_code == 200
    assert response.headers["content-length"] == "100000"
    assert response.content[4:8] == b"ftyp"
    assert response.content == expected_output(project_id, 100_000)


def test_legacy_1_4_form_with_the_script_on_the_clip_is_accepted(ai):
    legacy = scene(clips=[avatar_clip(script={"org": "<p>Hello, this is test video using Api.</p>"})])
    del legacy["scripts"]
    project_id = create(ai, project(scenes=[legacy]))
    poll_until(ai, project_id, lambda body: body["data"]["state"] == "exported")


def test_failed_render_stops_below_100_and_reports_render_failed(ai, ai_control, configure_ai):
    configure_ai(fail_share=1.0)
    project_id = create(ai)
    seen = poll_until(ai, project_id, lambda body: body["success"] is False)
    assert seen[-1]["error"]["code"] == "RENDER_FAILED"
    assert seen[-1]["error"]["msg"].startswith("Rendering failed: ")
    assert all(body["data"]["progress"] < 100 for body in seen[:-1])
    got = ai.get(f"{API}/editor/project/{project_id}").json()["data"]["project"]
    assert got["state"] == "failed" and got["progress"] < 100 and got["download_url"] is None
    counters = stats(ai_control)
    assert (counters["renders_failed"], counters["renders_completed"], counters["in_flight"]) == (1, 0, 0)


def test_stalled_render_never_moves_again(ai, ai_control, configure_ai):
    configure_ai(stall_share=1.0)
    project_id = create(ai)
    time.sleep(0.45)  # past the render time
    first = progress(ai, project_id).json()["data"]
    time.sleep(0.2)
    assert progress(ai, project_id).json()["data"] == first
    assert first["state"] == "exporting" and first["progress"] < 100
    assert stats(ai_control)["in_flight"] == 1
    [listed] = ai_control.get("/_sim/aistudios/projects").json()
    assert listed["exports"][0]["outcome"] == "stalled" and listed["exports"][0]["ended_at"] is None


def test_every_export_is_a_new_render_and_counted(ai, ai_control):
    project_id = create(ai, project(isExport=False))
    for _ in range(2):
        exported = ai.post(f"{API}/editor/project/export", json={"projectId": project_id})
        assert exported.json() == {"success": True, "data": {"projectId": project_id}}
    counters = stats(ai_control)
    assert counters["exports"] == 2 and counters["exports_by_project"] == {project_id: 2}
    assert counters["peak_in_flight"] == 2
    [listed] = ai_control.get("/_sim/aistudios/projects").json()
    assert len(listed["exports"]) == 2 and listed["state"] == "exporting"
    assert stats(ai_control)["requests"]["export"] == 2  # the control route is not counted


def test_export_of_unknown_or_missing_project(ai):
    unknown = ai.post(f"{API}/editor/project/export", json={"projectId": "0" * 24})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "NOT_FOUND"
    missing = ai.post(f"{API}/editor/project/export", json={"resolution": "720"})
    assert missing.status_code == 200
    assert missing.json()["error"] == {"code": "INVALID_REQUEST", "msg": "projectId is required"}
    for path in (f"{API}/editor/progress/{'0' * 24}", f"{API}/editor/project/{'0' * 24}"):
        response = ai.get(path)
        assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND"


def test_delete_projects(ai):
    first, second = create(ai, project(isExport=False)), create(ai, project(isExport=False))
    deleted = ai.request("DELETE", f"{API}/editor/project", json={"ids": [first, "0" * 24]})
    assert deleted.json() == {"success": True, "data": {"deletedCount": 1}}
    assert ai.get(f"{API}/editor/project/{first}").status_code == 404
    assert ai.get(f"{API}/editor/project/{second}").status_code == 200
    bad = ai.request("DELETE", f"{API}/editor/project", json={"ids": "x"})
    assert bad.json()["error"]["code"] == "INVALID_REQUEST"


def test_model_catalogue(ai):
    models = ai.get(f"{API}/model").json()["data"]["models"]
    by_id = {model["id"]: model for model in models}
    assert len(models) >= 3
    assert CLOTHES in {clothes["id"] for clothes in by_id[AVATAR]["clothes"]}
    assert set(by_id[AVATAR]["label"]) == {"ko", "en"} and by_id[AVATAR]["thumbnail"].startswith("https://")
    dropdown = ai.get(f"{API}/dropdown/models").json()["data"]
    assert [entry["id"] for entry in dropdown] == list(by_id)
    assert all(set(entry) == {"id", "label", "avatarType"} for entry in dropdown)


# Validation


def _without_scripts(s: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in s.items() if key != "scripts"}


def _clip(kind: str, **fields: Any) -> dict[str, Any]:
    return {"id": f"{kind}-1", "type": kind, **fields}


def _with_clip(clip: dict[str, Any]) -> dict[str, Any]:
    return project(scenes=[scene(clips=[avatar_clip(), clip])])


def _script(**fields: Any) -> dict[str, Any]:
    entry = {"org": "Hi", "modelId": AVATAR, "clothId": CLOTHES, **fields}
    return project(scenes=[scene(scripts=[entry])])


ONE_SCRIPT = "scenes[0].scripts must have exactly one entry"
PERCENT = "must be a number from 1 to 100"
INVALID: list[tuple[str, Any, str]] = [
    ("not an object", [1], "body must be a JSON object"),
    ("no scenes", project(scenes=None), "scenes must be a non-empty array"),
    ("empty scenes", project(scenes=[]), "scenes must be a non-empty array"),
    ("scene not object", project(scenes=["x"]), "scenes[0] must be an object"),
    ("sceneIdx", project(scenes=[scene(sceneIdx="0")]), "scenes[0].sceneIdx must be an integer"),
    ("background", project(scenes=[scene(background=None)]), "scenes[0].background must be an object"),
    ("clips", project(scenes=[scene(clips={})]), "scenes[0].clips must be an array"),
    ("clip type", _with_clip(_clip("video")), "scenes[0].clips[1].type must be one of aiModel"),
    ("no avatar", project(scenes=[scene(clips=[])]), "must have exactly one aiModel clip (found 0)"),
    ("two avatars", _with_clip(avatar_clip()), "must have exactly one aiModel clip (found 2)"),
    ("two scripts", project(scenes=[scene(scripts=[{}, {}])]), ONE_SCRIPT),
    ("no script", project(scenes=[_without_scripts(scene())]), f"{ONE_SCRIPT} (or, in the 1.4.x form"),
    ("empty org", _script(org="<p> </p>"), "scenes[0].scripts[0].org must be a non-empty string"),
    ("modelId", _script(modelId="M000004017"), "scenes[0].scripts[0].modelId must equal scenes[0].clips[0]"),
    ("clothId", _script(clothId="BG00002321"), "scenes[0].scripts[0].clothId must equal"),
    ("avatar", project(scenes=[scene(clips=[avatar_clip(model={"ai_name": "M1", "emotion": CLOTHES})])]),
     "scenes[0].clips[0].model.ai_name 'M1' is not a known avatar"),
    ("clothes", project(scenes=[scene(clips=[avatar_clip(model={"ai_name": AVATAR, "emotion": "BG1"})])]),
     "model.emotion 'BG1' is not a clothes id of avatar M000045058"),
    ("orientation", project(orientation="square"), "orientation must be one of landscape, portrait"),
    ("resolution", project(resolution="2k"), "resolution must be one of 4k, 1080, 720, 480"),
    ("isExport", project(isExport="yes"), "isExport must be a boolean"),
    ("webhookUrl", project(webhookUrl="ftp://x"), "webhookUrl must be an http(s) URL"),
    ("shape opacity", _with_clip(_clip("shape", opacity=0)), f"clips[1].opacity {PERCENT}"),
    ("image opacity", _with_clip(_clip("image", opacity=101)), f"clips[1].opacity {PERCENT}"),
    ("video volume", _with_clip(_clip("videoImage", volume=0)), f"clips[1].volume {PERCENT}"),
    ("audio volume", _with_clip(_clip("audio", volume="9")), f"clips[1].volume {PERCENT}"),
    ("duration", _with_clip(_clip("image", animation={"type": "fade-in", "duration": 31})),
     "clips[1].animation.duration must be a number from 1 to 30"),
    ("delay", _with_clip(_clip("image", animation={"delay": -1})),
     "clips[1].animation.delay must be a number from 0 to 30"),
    ("blur", _with_clip(_clip("shape", shadow={"blur": 11})),
     "clips[1].shadow.blur must be a number from 0 to 10"),
    ("fontSize", _with_clip(_clip("textImage", text="Hi")), "clips[1].fontSize is required for a textImage"),
]  # fmt: skip


@pytest.mark.parametrize(("payload", "message"), [case[1:] for case in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_project_is_refused_with_its_place(ai, ai_control, payload, message):
    response = ai.post(f"{API}/editor/project", json=payload)
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == "INVALID_PROJECT"
    assert message in body["error"]["msg"]
    assert stats(ai_control)["projects_created"] == 0


def test_valid_optional_clips_pass():
    clips = [
        _clip("shape", opacity=1, shadow={"blur": 10}, animation={"duration": 30, "delay": 0}),
        _clip("textImage", text="Hi", fontSize=48),
        _clip("videoImage", video_url="https://x.test/v.mp4", volume=100, opacity=100),
        _clip("audio", source_url="https://x.test/a.mp3", volume=1),
    ]  # fmt: skip
    payload = project(scenes=[scene(clips=[avatar_clip(), *clips])], isExport=False, resolution="4k")
    request = validate_create(copy.deepcopy(payload))
    assert request.is_export is False and request.options.resolution == "4k"
    assert "isExport" not in request.document and request.document["scenes"] == payload["scenes"]


# Webhooks


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class Receiver:
    """A loopback HTTP server that records every POST and answers `status`."""

    def __init__(self) -> None:
        self.status = 200
        self.deliveries: list[Delivery] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {name.lower(): value for name, value in self.headers.items()}
                receiver.deliveries.append(Delivery(self.path, headers, json.loads(raw)))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


def wait_webhooks(control: httpx.Client, total: int) -> dict[str, int]:
    """Wait until `total` deliveries ended (delivered, failed or lost); return the counters."""
    deadline = time.monotonic() + 5
    counters: dict[str, int] = stats(control)["webhooks"]
    while sum(counters.values()) < total:
        assert time.monotonic() < deadline, counters
        time.sleep(0.02)
        counters = stats(control)["webhooks"]
    return counters


def test_webhook_posts_the_result_to_the_exact_url(ai, ai_control, receiver):
    url = f"{receiver.url}/hooks/aistudios?job=j-42&sig=a%2Fb"
    project_id = create(ai, project(webhookUrl=url))
    assert wait_webhooks(ai_control, 1) == {"delivered": 1, "failed": 0, "lost": 0}
    [delivery] = receiver.deliveries
    assert delivery.path == "/hooks/aistudios?job=j-42&sig=a%2Fb"
    assert delivery.headers["content-type"] == "application/json"
    assert not any("signature" in name for name in delivery.headers)
    task_id = ai.get(f"{API}/editor/project/{project_id}").json()["data"]["project"]["backendTaskId"]
    assert delivery.body == {
        "progress": 100,
        "credit": 1,
        "backendTaskId": task_id,
        "download_url": f"{ai.base_url}/_sim/aistudios/outputs/{project_id}.mp4",
    }
    events = ai_control.get("/_sim/events").json()
    assert [e["route"] for e in events if e["route"] == "aistudios.webhook"] == ["aistudios.webhook"]


def test_webhook_progress_steps_failures_and_losses(ai, ai_control, configure_ai, receiver):
    configure_ai(webhook_progress=True)
    create(ai, project(webhookUrl=f"{receiver.url}/p"))
    deadline = time.monotonic() + 5
    while not any(d.body["progress"] == 100 for d in receiver.deliveries):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.1)  # every intermediate step was due before the final one
    # Deliveries run on several connections, so steps due close together may arrive out of order.
    by_progress = sorted(receiver.deliveries, key=lambda d: d.body["progress"])
    values = [d.body["progress"] for d in by_progress]
    assert values[-1] == 100 and len(set(values)) == len(values) >= 5
    assert all(set(d.body) == {"progress", "backendTaskId"} for d in by_progress[:-1])
    assert set(by_progress[-1].body) == {"progress", "credit", "backendTaskId", "download_url"}
    counters = stats(ai_control)["webhooks"]
    assert counters["delivered"] == len(values)
    assert counters["failed"] == counters["lost"] == 0

    ai_control.post("/_sim/reset")
    ai.headers["Authorization"] = issue_token(ai)
    configure_ai(webhook_progress=False)
    receiver.status = 500
    create(ai, project(webhookUrl=f"{receiver.url}/p"))
    assert wait_webhooks(ai_control, 1) == {"delivered": 0, "failed": 1, "lost": 0}
    configure_ai(webhook_loss_share=1.0)
    create(ai, project(webhookUrl=f"{receiver.url}/p"))
    assert wait_webhooks(ai_control, 2) == {"delivered": 0, "failed": 1, "lost": 1}


def test_failed_render_sends_no_final_webhook(ai, ai_control, configure_ai, receiver):
    configure_ai(fail_share=1.0)
    project_id = create(ai, project(webhookUrl=f"{receiver.url}/p"))
    poll_until(ai, project_id, lambda body: body["success"] is False)
    time.sleep(0.1)
    assert receiver.deliveries == [] and sum(stats(ai_control)["webhooks"].values()) == 0


# Faults, limits, stats


def test_injected_faults_answer_with_the_envelope(ai, ai_control):
    queued = ai_control.post("/_sim/faults", json={"route": "aistudios.create", "status": 503, "times": 2})
    assert queued.status_code == 201
    for _ in range(2):
        response = ai.post(f"{API}/editor/project", json=project())
        assert response.status_code == 503
        assert response.json()["error"] == {"code": "SERVICE_UNAVAILABLE", "msg": "Service Unavailable"}
    create(ai)
    ai_control.post("/_sim/faults", json={"route": "aistudios.token", "status": 500})
    assert ai.post(f"{API}/auth/token", json={"appId": APP_ID, "userKey": USER_KEY}).status_code == 500
    body = {"success": False, "error": {"code": "X", "msg": "custom"}}
    ai_control.post("/_sim/faults", json={"route": "aistudios.models", "status": 200, "body": body})
    assert ai.get(f"{API}/model").json() == body
    assert ai_control.post("/_sim/faults", json={"route": "aistudios.nope", "status": 500}).status_code == 400
    assert stats(ai_control)["responses"]["503"] == 2


def test_outcome_fault_forces_how_the_next_render_ends(ai, ai_control):
    fault = {"route": "aistudios.outcome", "outcome": "failed", "reason": "no GPU"}
    assert ai_control.post("/_sim/faults", json=fault).status_code == 201
    project_id = create(ai)
    failed = poll_until(ai, project_id, lambda body: body["success"] is False)[-1]
    assert failed["error"]["msg"] == "Rendering failed: no GPU"


def test_max_renders_refuses_with_429(ai, ai_control, configure_ai):
    configure_ai(max_renders=1, render_s=5.0)
    create(ai)
    refused = ai.post(f"{API}/editor/project", json=project())
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "TOO_MANY_REQUESTS"
    draft = create(ai, project(isExport=False))  # no render, so no limit
    assert ai.post(f"{API}/editor/project/export", json={"projectId": draft}).status_code == 429
    counters = stats(ai_control)
    assert (counters["projects_created"], counters["throttled"], counters["in_flight"]) == (2, 2, 1)


def test_stats_keys(ai, ai_control):
    counters = stats(ai_control)
    assert set(counters) == {
        "requests", "responses", "unauthorized", "tokens_issued", "tokens_refused", "projects_created",
        "exports", "exports_by_project", "renders_completed", "renders_failed", "in_flight",
        "peak_in_flight", "throttled", "webhooks",
    }  # fmt: skip
    assert set(counters["requests"]) >= {"token", "create", "export", "progress", "project", "download"}
    assert set(ai_control.get("/_sim/stats").json()) == {spec.name for spec in SIMULATORS} | {"storm"}


# Config and CLI


def test_config_sections_and_typed_access():
    config = SimConfig(syncso=SyncSoSimConfig(plan="scale"), aistudios=AIStudiosSimConfig(render_s=1))
    assert section(config, "aistudios", AIStudiosSimConfig).render_s == 1
    assert SimConfig.model_validate(config.model_dump()) == config
    assert SimConfig().model_dump()["aistudios"]["app_id"] == "sim-aistudios-app"
    with pytest.raises(TypeError):
        section(config, "syncso", AIStudiosSimConfig)
    with pytest.raises(ValueError, match="stall_share"):
        AIStudiosSimConfig(fail_share=0.6, stall_share=0.6)


def test_cli_builds_both_sections():
    parser = build_parser()
    assert [g.title for g in parser._action_groups][-2:] == ["sync.so", "AI Studios"]
    flags = ["--syncso-api-key", "K", "--aistudios-render-s", "0.5", "--aistudios-app-id", "A"]
    flags += ["--aistudios-webhook-progress", "true", "--aistudios-max-renders", "3"]
    args = parser.parse_args(flags)
    config = config_from_args(args)
    assert config.syncso == SyncSoSimConfig(api_key="K")
    assert config.aistudios == AIStudiosSimConfig(
        render_s=0.5, app_id="A", webhook_progress=True, max_renders=3
    )
