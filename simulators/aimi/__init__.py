"""The Aimi Sync simulator (reference section 1): the flat "Surface A" routes plus `/_sim/aimi/...`.

Every `POST /sync_*` needs `Authorization: Bearer <api_key>` (else 401) and answers errors as
`{"message"}` [INF]. Response bodies are unpublished except `sync_generate`'s `{"plan"}` and
`sync_status`'s, so every other shape here is [INF]:

    POST /sync_upload_init      {file_name, file_size, file_type} -> {taskid, max_chunk_bytes}
    POST /sync_upload_chunk     raw bytes; X-Upload-Id, X-Chunk-Index -> {taskid, chunk_index, received}
    POST /sync_upload_complete  {taskid, total_chunks} -> {taskid, status: "uploaded", size, sha256}
    POST /sync_video_analysis   {taskid} -> {taskid, analysis}
    POST /sync_audio_analysis   {taskid} -> {taskid, audio_analysis}
    POST /sync_generate         multipart analysis, [audio_analysis], payload -> {plan}
    POST /sync_execute          {taskid, plan} -> {execid}
    POST /sync_status           {execid} -> {status, url, message[, queryurl]} or {status, videourl, message}

The status URLs point at unauthenticated `/_sim/aimi/outputs/<execid>.mp4|.zip` and
`/_sim/aimi/reports/<execid>-results.json|-failed.json`.
"""

from simulators.aimi.config import OPTIONS, AimiSimConfig
from simulators.aimi.demo import DEMO
from simulators.aimi.provider import AimiProvider
from simulators.spec import SimSpec

SPEC = SimSpec(
    name="aimi",
    title="Aimi Sync",
    config=AimiSimConfig,
    provider=AimiProvider,
    options=OPTIONS,
    demo=DEMO,
    settings=(("GENQ_AIMI__API_KEY", "api_key"),),
)
