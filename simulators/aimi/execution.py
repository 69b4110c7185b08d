"""One plan execution: its status as a function of time (fixed when it starts), and its files.

Nothing runs in the background. An execution is pending for its first `PENDING_SHARE` [INF], then
processing, and at `ended_at` finished or error, as drawn at start. The files the status URLs name
(reference 1.5) are served unauthenticated under `/_sim/aimi/`: `outputs/<execid>.mp4` (an ftyp box,
then deterministic bytes), or with the plan option `multitrack` `outputs/<execid>.zip` holding
`video.mp4`, `stems/music.wav` and `stems/voiceover.wav`; `reports/<execid>-results.json` and
`reports/<execid>-failed.json`.
"""

from __future__ import annotations

import hashlib
import io
import wave
import zipfile
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

PENDING_SHARE = 0.1
# A minimal ISO BMFF `ftyp` box (24 bytes: size, "ftyp", major brand, minor version, two compatible brands).
FTYP_BOX = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isommp42"
STEMS = ("music", "voiceover")
STEM_RATE_HZ, STEM_FRAMES = 8000, 2000  # a quarter second of 16-bit mono per stem
ZIP_TIME = (2024, 1, 1, 0, 0, 0)  # fixed, so an archive's bytes depend on its execid only
# [INF] Failure reasons written to the error report.
FAILURE_REASONS = ("render worker was lost", "soundset unavailable", "audio mixdown failed")
MESSAGES = {
    "pending": "Plan submitted and waiting to be executed.",
    "processing": "Plan is being executed; check again in a few minutes.",
    "finished": "Execution finished; the output is ready for download.",
    "error": "There was an error generating the video; see the error report.",
    "inactive": "No active execution found for this execid.",
}


class ExecStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    FINISHED = "finished"
    ERROR = "error"


TERMINAL = frozenset({ExecStatus.FINISHED, ExecStatus.ERROR})


@dataclass
class Execution:
    execid: str
    taskid: str
    plan: dict[str, Any]
    multitrack: bool
    started_at: float  # unix s, like every execution time
    ended_at: float
    outcome: ExecStatus  # FINISHED or ERROR, reached at ended_at
    reason: str | None
    last_polled_at: float | None = None
    polls: int = 0

    @property
    def processing_at(self) -> float:
        return self.started_at + (self.ended_at - self.started_at) * PENDING_SHARE

    def status_at(self, now: float) -> ExecStatus:
        if now >= self.ended_at:
            return self.outcome
        return ExecStatus.PROCESSING if now >= self.processing_at else ExecStatus.PENDING

    @property
    def output_name(self) -> str:
        return f"{self.execid}.zip" if self.multitrack else f"{self.execid}.mp4"

    def status_body(self, now: float, base_url: str) -> dict[str, Any]:
        """The `sync_status` answer; `base_url` ends in "/"."""
        status = self.status_at(now)
        body: dict[str, Any] = {"status": status.value, "url": None, "message": MESSAGES[status.value]}
        if status is ExecStatus.FINISHED:
            body["url"] = f"{base_url}_sim/aimi/outputs/{self.output_name}"
            body["queryurl"] = f"{base_url}_sim/aimi/reports/{self.execid}-results.json"
        elif status is ExecStatus.ERROR:
            body["url"] = f"{base_url}_sim/aimi/reports/{self.execid}-failed.json"
        return body

    def results_report(self) -> dict[str, Any]:
        """[INF] The `queryurl` JSON of a finished execution."""
        return {
            "execid": self.execid,
            "taskid": self.taskid,
            "status": ExecStatus.FINISHED.value,
            "plan_id": self.plan.get("id"),
            "sections": len(self.plan["sections"]),
            "files": [self.output_name],
            "finished_at": self.ended_at,
        }

    def failed_report(self) -> dict[str, Any]:
        """[INF] The error report of a failed execution."""
        return {
            "execid": self.execid,
            "taskid": self.taskid,
            "status": ExecStatus.ERROR.value,
            "error": self.reason,
            "failed_at": self.ended_at,
        }

    def view(self, now: float) -> dict[str, Any]:
        """The control view (`GET /_sim/aimi/executions`)."""
        return {
            "taskid": self.taskid,
            "status": self.status_at(now).value,
            "outcome": self.outcome.value,
            "started_at": self.started_at,
            "processing_at": self.processing_at,
            "ended_at": self.ended_at,
            "multitrack": self.multitrack,
            "polls": self.polls,
            "plan": self.plan,
        }


def mp4_bytes(execid: str, size: int) -> bytes:
    """`size` deterministic bytes: an `ftyp` box, then shake_256 of the execid."""
    return (FTYP_BOX + hashlib.shake_256(execid.encode()).digest(size))[:size]


def stem_wav(execid: str, stem: str) -> bytes:
    """A short deterministic 16-bit mono WAV."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(STEM_RATE_HZ)
        out.writeframes(hashlib.shake_256(f"{execid}:{stem}".encode()).digest(STEM_FRAMES * 2))
    return buffer.getvalue()


def zip_bytes(execid: str, video_size: int) -> bytes:
    """The multitrack archive: `video.mp4` and one WAV per stem under `stems/`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo("video.mp4", ZIP_TIME), mp4_bytes(execid, video_size))
        for stem in STEMS:
            archive.writestr(zipfile.ZipInfo(f"stems/{stem}.wav", ZIP_TIME), stem_wav(execid, stem))
    return buffer.getvalue()
