"""Deterministic video and audio analyses of an uploaded video [INF: the vendor's schema is unpublished].

Both are drawn from a random source seeded by the video's sha256, so one video always gives the same
analysis (the vendor says both analyses are deterministic, reference 1.3). The duration is estimated
from the file size at the configured `bytes_per_second`.

Video: `{"duration", "cut_points": [s, ...], "scenes": [{"index", "start", "end", "energy", "motion"}],
"video": {"file_name", "file_type", "size", "sha256"}}`; each cut point is where the music changes, so
the plan has one section per interval between 0, the cut points and the duration.
Audio: `{"duration", "has_speech", "loudness_lufs", "speech_segments": [{"start", "end", "confidence"}]}`.
"""

from __future__ import annotations

import random
from itertools import pairwise
from typing import Any

from simulators.aimi.upload import Upload

# [INF] Seconds between cut points, and the shortest a closing section may be.
CUT_SPACING_S = (4.0, 12.0)
MIN_TAIL_S = 2.0
# [INF] Speech segment lengths and the silences between them, in seconds.
SPEECH_S = (1.0, 4.0)
SILENCE_S = (2.0, 8.0)


def _rng(upload: Upload, salt: str) -> random.Random:
    return random.Random(f"{upload.sha256}:{salt}")


def estimated_duration(size: int, bytes_per_second: int) -> float:
    """Seconds of video in `size` bytes, rounded to ms, never 0."""
    return max(round(size / bytes_per_second, 3), 0.001)


def video_analysis(upload: Upload, bytes_per_second: int) -> dict[str, Any]:
    """The analysis of a completed upload."""
    rng = _rng(upload, "video")
    duration = estimated_duration(upload.file_size, bytes_per_second)
    cuts: list[float] = []
    t = rng.uniform(*CUT_SPACING_S)
    while t < duration - MIN_TAIL_S:
        cuts.append(round(t, 3))
        t += rng.uniform(*CUT_SPACING_S)
    bounds = [0.0, *cuts, duration]
    scenes = [
        {
            "index": i,
            "start": start,
            "end": end,
            "energy": round(rng.random(), 2),
            "motion": rng.choice(("low", "medium", "high")),
        }
        for i, (start, end) in enumerate(pairwise(bounds))
    ]
    video = {
        "file_name": upload.file_name,
        "file_type": upload.file_type,
        "size": upload.file_size,
        "sha256": upload.sha256,
    }
    return {"duration": duration, "cut_points": cuts, "scenes": scenes, "video": video}


def audio_analysis(upload: Upload, duration: float) -> dict[str, Any]:
    """The audio analysis of an upload whose video analysis found `duration` seconds."""
    rng = _rng(upload, "audio")
    segments = []
    t = rng.uniform(0.0, SILENCE_S[0])
    while t < duration:
        end = min(t + rng.uniform(*SPEECH_S), duration)
        segments.append({"start": round(t, 3), "end": round(end, 3), "confidence": round(rng.random(), 2)})
        t = end + rng.uniform(*SILENCE_S)
    return {
        "duration": duration,
        "has_speech": bool(segments),
        "loudness_lufs": round(rng.uniform(-30.0, -14.0), 1),
        "speech_segments": segments,
    }
