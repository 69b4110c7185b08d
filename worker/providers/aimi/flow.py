"""The canvas of a music job. Its width comes from the request (executions) and, for the upload, from
the video's size, known only when ``upload_init`` runs: it replaces itself with a chord of chunk uploads
joined by ``upload_complete``.

    upload_init ⇒ chord(upload_chunk[0..c-1]) → upload_complete
    → analyze_video → [analyze_audio] → generate_plan
    → chord(execute[n] → wait[n] → download[n], n < K) → collect
"""

from __future__ import annotations

from celery import chain, chord
from celery.canvas import Signature

from schemas import JobRecord
from schemas.music import MusicRequest
from worker.providers.aimi import stages


def build(job: JobRecord) -> Signature:
    assert isinstance(job.request, MusicRequest)
    steps: list[Signature] = [stages.upload_init.si(job.id), stages.analyze_video.si(job.id)]
    if job.request.keep_original_audio:
        steps.append(stages.analyze_audio.si(job.id))
    steps.append(stages.generate_plan.si(job.id))
    executions = [
        chain(stages.execute.si(job.id, n), stages.wait.si(job.id, n), stages.download.si(job.id, n))
        for n in range(job.request.executions)
    ]
    steps.append(chord(executions, stages.collect.si(job.id)))
    return chain(*steps)
