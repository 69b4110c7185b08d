"""sync.so generations failed by what they were given (an input-keyed rule queued through `/_sim/faults`,
or the config's `fail_input_contains` / `fail_input_sha256`), and URL inputs fetched to be hashed
(`fetch_input_urls`), over real loopback HTTP."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import pytest

from simulators.__main__ import build_parser, config_from_args
from simulators.syncso.config import SyncSoSimConfig
from tests.simulators.test_inputs_sim import ended, inputs_of, lipsync, uploaded_asset

VIDEO = {"type": "video", "url": "https://cdn.example.com/talk.mp4"}
DUBS = {lang: f"https://cdn.example.com/dubs/{lang}.wav" for lang in ("en", "fr", "de")}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dub(api: httpx.Client, lang: str) -> dict[str, Any]:
    """The ended generation lip-syncing the talk onto the `lang` dub."""
    return ended(api, lipsync(api, [VIDEO, {"type": "audio", "url": DUBS[lang]}]))


def statuses(api: httpx.Client) -> dict[str, str]:
    return {lang: dub(api, lang)["status"] for lang in DUBS}


def fault(control: httpx.Client, **rule: Any) -> httpx.Response:
    return control.post("/_sim/faults", json={"route": "syncso.input", **rule})


def test_a_rule_fails_the_matching_branch_until_the_faults_are_cleared(api, control, configure):
    configure(concurrency=10)
    assert fault(control, contains="/fr.wav").status_code == 201
    assert control.get("/_sim/faults").json()["syncso"]["syncso.input"] == [
        {
            "route": "syncso.input",
            "contains": "/fr.wav",
            "sha256": None,
            "input": None,
            "status": "FAILED",
            "error_code": None,
            "error": None,
            "times": None,
            "remaining": None,
        }
    ]
    assert statuses(api) == {"en": "COMPLETED", "fr": "FAILED", "de": "COMPLETED"}
    failed = dub(api, "fr")  # not times-limited: a replay fails too
    assert failed["status"] == "FAILED"
    assert failed["errorCode"] == failed["error_code"] == "generation_pipeline_failed"
    assert failed["error"] == "Generation pipeline failed."
    assert failed["outputUrl"] is None

    assert control.delete("/_sim/faults").status_code == 200
    assert control.get("/_sim/faults").json()["syncso"] == {}
    assert statuses(api) == {"en": "COMPLETED", "fr": "COMPLETED", "de": "COMPLETED"}


def test_a_times_limited_rule_on_a_digest_with_its_own_outcome(api, control):
    bad, good = b"undecodable audio", b"fine audio"
    rule = {
        "sha256": sha(bad).upper(),  # either case
        "status": "REJECTED",
        "error_code": "generation_input_audio_invalid",
        "times": 1,
    }
    assert fault(control, **rule).status_code == 201

    def take(content: bytes) -> dict[str, Any]:
        files = {"audio": ("take.wav", content, "audio/wav")}
        return ended(api, lipsync(api, [VIDEO], files))

    assert take(good)["status"] == "COMPLETED"  # no match: the rule keeps its use
    rejected = take(bad)
    assert (rejected["status"], rejected["errorCode"]) == ("REJECTED", "generation_input_audio_invalid")
    assert rejected["error"] == "The audio input could not be decoded."
    assert control.get("/_sim/faults").json()["syncso"] == {}  # used up
    assert take(bad)["status"] == "COMPLETED"


def test_a_rule_can_name_the_input_field_a_track_by_ref_id(api, control):
    assert fault(control, input="audio:fr", error="French track refused").status_code == 201
    items = [VIDEO] + [{"type": "audio", "url": DUBS[lang], "refId": lang} for lang in ("en", "fr")]
    segments = [
        {"startTime": 0, "endTime": 1, "audioInput": {"refId": "en"}},
        {"startTime": 1, "endTime": 2, "audioInput": {"refId": "fr"}},
    ]
    body = {"model": "lipsync-2", "input": items, "segments": segments}
    generation = ended(api, api.post("/v2/generate", json=body).json()["id"])
    assert (generation["status"], generation["error"]) == ("FAILED", "French track refused")
    assert dub(api, "fr")["status"] == "COMPLETED"  # field "audio" here, not "audio:fr"


def test_a_rule_needs_all_it_names_on_one_input(api, control, configure):
    configure(concurrency=10)
    assert fault(control, input="video", contains="fr.wav").status_code == 201
    assert statuses(api) == {"en": "COMPLETED", "fr": "COMPLETED", "de": "COMPLETED"}


def test_contains_skips_the_random_token_of_the_simulators_own_upload_urls(api, control):
    asset = uploaded_asset(api, "fr.wav", b"bonjour")
    token = asset["url"].split("/_sim/syncso/files/", 1)[1].split("/", 1)[0]
    assert fault(control, contains=token).status_code == 201
    items = [VIDEO, {"type": "audio", "assetId": asset["id"]}]
    assert ended(api, lipsync(api, items))["status"] == "COMPLETED"
    assert fault(control, contains="fr.wav").status_code == 201  # its file name is searched
    assert ended(api, lipsync(api, items))["status"] == "FAILED"


def test_an_input_rule_goes_before_a_queued_outcome_fault_and_leaves_it(api, control, configure):
    configure(concurrency=10)
    assert fault(control, contains="de.wav", times=1).status_code == 201
    assert (
        control.post("/_sim/faults", json={"route": "syncso.outcome", "status": "REJECTED"}).status_code
        == 201
    )
    assert dub(api, "de")["errorCode"] == "generation_pipeline_failed"
    assert dub(api, "en")["status"] == "REJECTED"  # the outcome fault was still queued
    assert dub(api, "en")["status"] == "COMPLETED"


@pytest.mark.parametrize(
    "rule",
    [
        {},  # names no input
        {"contains": ""},
        {"sha256": "abc"},
        {"contains": "x", "status": "COMPLETED"},
        {"contains": "x", "times": 0},
        {"contains": "x", "other": 1},
    ],
)
def test_malformed_rules_are_refused(control, rule):
    response = fault(control, **rule)
    assert response.status_code == 400, response.text
    assert control.get("/_sim/faults").json()["syncso"] == {}


def test_the_config_fails_matching_generations_until_set_back(api, configure):
    configure(concurrency=10, fail_input_contains=["/de."])
    assert statuses(api) == {"en": "COMPLETED", "fr": "COMPLETED", "de": "FAILED"}
    files = {"audio": ("a.wav", b"voice", "audio/wav")}
    configure(fail_input_contains=[], fail_input_sha256=[sha(b"voice")])
    failed = ended(api, lipsync(api, [VIDEO], files))
    assert (failed["status"], failed["errorCode"]) == ("FAILED", "generation_pipeline_failed")
    assert dub(api, "de")["status"] == "COMPLETED"
    configure(fail_input_sha256=[])
    assert ended(api, lipsync(api, [VIDEO], files))["status"] == "COMPLETED"


def test_the_config_refuses_malformed_input_failures(control):
    for patch in ({"fail_input_sha256": ["nope"]}, {"fail_input_contains": [""]}):
        assert control.post("/_sim/config", json={"syncso": patch}).status_code == 400


def test_cli_flags_for_input_failures_and_fetching():
    digest = sha(b"x")
    flags = ["--syncso-fail-input-contains", "fr.wav, de.wav", "--syncso-fail-input-sha256", digest]
    config = config_from_args(build_parser().parse_args([*flags, "--syncso-fetch-input-urls", "yes"]))
    assert config.syncso == SyncSoSimConfig(
        fail_input_contains=("fr.wav", "de.wav"), fail_input_sha256=(digest,), fetch_input_urls=True
    )


# Fetched URL inputs


def test_fetched_url_inputs_are_hashed_and_unreachable_ones_reject(api, control, configure, sim_server):
    configure(output_bytes=5000)
    upstream = ended(api, lipsync(api, [VIDEO, {"type": "audio", "url": DUBS["en"]}]))
    upstream_bytes = httpx.get(upstream["outputUrl"]).content
    configure(fetch_input_urls=True)
    # The upstream output's signed URL as the next generation's video; a URL that answers 404.
    missing = f"{sim_server.base_url}/_sim/syncso/outputs/unknown.mp4"
    chained = ended(
        api,
        lipsync(api, [{"type": "video", "url": upstream["outputUrl"]}, {"type": "audio", "url": missing}]),
    )
    assert (chained["status"], chained["errorCode"]) == ("REJECTED", "generation_input_audio_inaccessible")
    recorded = inputs_of(control)[chained["id"]]["inputs"]
    assert recorded["video"] == {
        "sha256": sha(upstream_bytes),
        "bytes": 5000,
        "source": "url",
        "url": upstream["outputUrl"],
    }
    assert recorded["audio"] == {
        "sha256": None,
        "bytes": None,
        "source": "url",
        "url": missing,
        "error": "HTTP 403",
    }

    refused = ended(
        api,
        lipsync(
            api,
            [
                {"type": "video", "url": "http://127.0.0.1:9/v.mp4"},
                {"type": "audio", "url": upstream["outputUrl"]},
            ],
        ),
    )
    assert (refused["status"], refused["errorCode"]) == ("REJECTED", "generation_input_video_inaccessible")
    assert inputs_of(control)[refused["id"]]["inputs"]["video"]["error"] == "ConnectError"

    # A rule may key on the fetched bytes.
    assert (
        control.post(
            "/_sim/faults", json={"route": "syncso.input", "sha256": sha(upstream_bytes)}
        ).status_code
        == 201
    )
    again = ended(
        api,
        lipsync(
            api,
            [
                {"type": "video", "url": upstream["outputUrl"]},
                {"type": "audio", "url": upstream["outputUrl"]},
            ],
        ),
    )
    assert again["status"] == "FAILED"


def test_fetching_is_capped_at_the_plan_file_size(api, control, configure):
    configure(output_bytes=5000)
    upstream = ended(api, lipsync(api, [VIDEO, {"type": "audio", "url": DUBS["en"]}]))
    configure(fetch_input_urls=True, asset_max_bytes=4999)
    items = [{"type": "video", "url": upstream["outputUrl"]}, {"type": "audio", "url": DUBS["fr"]}]
    generation = ended(api, lipsync(api, items))
    assert generation["errorCode"] == "generation_input_video_inaccessible"
    assert inputs_of(control)[generation["id"]]["inputs"]["video"]["error"] == "larger than 4999 bytes"


def test_without_fetching_nothing_is_requested(api, control, sim_server):
    # The simulator's own output route would count a fetch as a download request.
    generation = ended(
        api,
        lipsync(api, [VIDEO, {"type": "audio", "url": f"{sim_server.base_url}/_sim/syncso/outputs/x.mp4"}]),
    )
    assert generation["status"] == "COMPLETED"
    assert control.get("/_sim/stats").json()["syncso"]["requests"]["download"] == 0
    assert json.dumps(inputs_of(control)[generation["id"]]["inputs"]["audio"]).count("null") == 2
