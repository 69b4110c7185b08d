"""Local input files of a lipsync job: which go with the create call as multipart parts and which are
uploaded to the account's media library first (``POST /v2/assets/upload``, a PUT of the bytes to the
signed URL it returns, ``POST /v2/assets``) and referenced by ``assetId``.

A file goes to the library when it is over the direct-upload limit, when it is one of several named
tracks (a multipart body has one ``audio`` part), or when the job has a cost cap (sync.so estimates
from the media it can reach, so every input must have an asset id before the estimate).

Each uploaded asset is named ``genq-<job id>-<field>`` and recorded in the job (``data:assets``) as soon
as it exists; the steps before it (the PUT done, the registration sent) are recorded too
(``data:uploads``). A run that died after sending the registration finds the asset by that name on its
next run instead of uploading it again; a run re-queued for a rate turn resumes where it was.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Final

from schemas import JobRecord, LipsyncRequest
from schemas import layout as L
from worker.inputs import open_local
from worker.limits import Gate
from worker.providers.syncso.account import SyncSo
from worker.providers.syncso.resources import Asset
from worker.store import JobStore

ASSETS: Final = "assets"  # the job data field: {field path: asset id}
UPLOADS: Final = "uploads"  # the job data field: {field path: {"url", "registering"}} (see Steps)
_ASSET_TYPES: Final = {"video": "VIDEO", "image": "IMAGE", "audio": "AUDIO"}


def library_fields(request: LipsyncRequest, max_direct_bytes: int) -> dict[str, Path]:
    """The local inputs (by field path) that go through the media library rather than the create call."""
    chosen = {}
    for field, path in request.local_files().items():
        if (
            field.startswith("tracks.")
            or request.max_cost_usd is not None
            or _size(Path(path)) > max_direct_bytes
        ):
            chosen[field] = Path(path)
    return chosen


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # unreadable: the stage that reads it says so


def asset_name(job_id: str, field: str) -> str:
    return f"genq-{job_id}-{field.replace('.', '-')}"


def asset_type(field: str) -> str:
    """``VIDEO``/``IMAGE``/``AUDIO`` for a field path (``tracks.2.audio`` is audio)."""
    return _ASSET_TYPES[field.rsplit(".", 1)[-1]]


def upload_inputs(job: JobRecord, store: JobStore, sync: SyncSo, gate: Gate) -> dict[str, str]:
    """Upload every input that goes through the library and has no asset yet; return all asset ids."""
    assert isinstance(job.request, LipsyncRequest)
    recorded: dict[str, str] = dict(job.data.get(ASSETS, {}))
    steps: dict[str, dict[str, str]] = dict(job.data.get(UPLOADS, {}))
    for field, path in library_fields(job.request, sync.settings.max_upload_bytes).items():
        if field in recorded:
            continue
        roots = sync.roots.of(job, field)
        recorded[field] = upload_file(path, roots, sync, gate, Steps(store, job.id, steps, field)).id
        store.set_data(job.id, ASSETS, recorded)
    return recorded


class Steps:
    """Where one file's upload got to, kept in the job (``data:uploads``): its bytes are ``put`` at
    ``url``, and it may be ``registering``. A run re-queued for a rate turn resumes from there instead of
    starting over (and spending another turn on what is done)."""

    def __init__(self, store: JobStore, job_id: str, steps: dict[str, dict[str, str]], field: str) -> None:
        self.store, self.job_id, self.steps, self.field = store, job_id, steps, field

    @property
    def state(self) -> dict[str, str]:
        return self.steps.get(self.field, {})

    def record(self, **state: str) -> None:
        self.steps[self.field] = {**self.state, **state}
        self.store.set_data(self.job_id, UPLOADS, self.steps)


def upload_file(path: Path, roots: Sequence[Path], sync: SyncSo, gate: Gate, steps: Steps) -> Asset:
    """One file into the media library, under its job's name for it: the upload ticket and the PUT,
    then the registration. A registration that may have reached sync.so (a run died after sending it)
    is looked up by name before it is sent again. The file is opened once, under the input roots
    (``open_local``), and what is sent is what was opened."""
    with open_local(path, roots, field=steps.field) as file:
        return _upload(file, path, sync, gate, steps)


def _upload(file: IO[bytes], path: Path, sync: SyncSo, gate: Gate, steps: Steps) -> Asset:
    field = steps.field
    size = os.fstat(file.fileno()).st_size
    name = asset_name(steps.job_id, field)
    if steps.state.get("registering"):
        with gate.calling(sync.other_rate):
            page = sync.client.list_assets(search=name, limit=10)
        found = next((a for a in page.items if a.name == name and a.size in (None, size)), None)
        if found is not None:
            return found
    url = steps.state.get("url")
    if url is None:
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        with gate.calling(sync.upload_rate):
            ticket = sync.client.start_upload(name + path.suffix.lower(), content_type, size)
        sync.client.put_upload(ticket, file, content_type)
        url = ticket.url
        steps.record(url=url)
    with gate.calling(sync.other_rate):
        steps.record(registering=L.now_iso())  # after the turn, right before the call
        return sync.client.create_asset(url, asset_type(field), name)


def direct_fields(request: LipsyncRequest, assets: Mapping[str, str]) -> list[str]:
    """The local inputs sent as multipart parts of the create call: those without an asset."""
    return [field for field in request.local_files() if field not in assets]
