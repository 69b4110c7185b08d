"""A sync.so batch: 20 to 500 lipsync jobs sent as one JSONL file (reference 3.8), each mapped back to
its own job. The batch is a record of its own (kind ``lipsync_batch``) with three stages:

- ``create``: the jobs' batch file, validated with ``dry_run``, then created once under a slot of
  ``syncso.batches``. sync.so takes no idempotency key for batches, so the create is recorded as
  ``requested`` (after the rate turn, right before the POST) and the batch id as soon as it comes back,
  claimed (``CLAIMED_KEY``) in the same Redis step. A run that finds ``requested`` without an id died in
  between: it looks for the batch among those created since (same number of generations, not claimed by
  a genq record) and adopts it, and only creates one if there is none. A 429 means nothing was created,
  so it clears ``requested``.
- ``wait``: parked like any wait, in its own namespace (``syncso.batch``), checked by the batch sweep.
- ``collect``: reads the results file and ends each job: a completed row records the job's generation
  and its end (as the generation sweep would) and queues the job's own ``download`` stage; a failed row
  fails the job with the row's error. The batch record then succeeds.

If the batch record fails (a refusal, retries run out, the wait's deadline), every job still open
fails with its error. A job cancelled before the batch ends keeps its place in the batch (the file is
fixed) and its result is dropped; if every job was cancelled before the create, no batch is made.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from schemas import JobError, JobRecord, JobStatus, LipsyncBatchRequest, LipsyncRequest, StageStatus
from schemas import layout as L
from schemas.lipsync_wire import batch_file
from worker.follow import Followed, followed_end
from worker.limits import Gate
from worker.outcomes import Stop
from worker.providers.errors import JobRejected, NotFound, Throttled
from worker.providers.syncso.account import SyncSo
from worker.providers.syncso.resources import Batch, BatchRow, BatchStatus, BatchValidated
from worker.providers.syncso.spec import BATCH_WAITS, SPEC
from worker.providers.syncso.watch import batch_ended
from worker.store import JobStore
from worker.waits import WaitResult, Waits

PROVIDER: Final = SPEC.name
BATCH: Final = "batch"  # the provider id's name in the batch record, and the jobs' stage name
VALIDATED: Final = "batch_validated"  # when sync.so validated the file (dry_run)
REQUESTED: Final = "batch_requested"  # when the create was sent (ISO time), until its id is recorded
GENERATION: Final = "generation"  # a job's generation id (as a single lipsync job records it)
# How far before ``requested`` a search for the batch looks (clocks of genq and sync.so differ).
ADOPT_SKEW: Final = timedelta(minutes=5)


def members(batch: JobRecord, store: JobStore) -> list[tuple[str, JobRecord | None]]:
    """(request_id, job record or None if it is gone) of each job, in batch-file order."""
    assert isinstance(batch.request, LipsyncBatchRequest)
    return list(zip(batch.request.request_ids, store.get_many(batch.request.jobs), strict=True))


def start_batch(batch: JobRecord, store: JobStore, sync: SyncSo, gate: Gate) -> str:
    """Create the batch once; return its sync.so id."""
    recorded = batch.provider_ids.get(BATCH)
    if recorded:
        return recorded
    rows = members(batch, store)
    if all(job is None or job.is_terminal for _, job in rows):
        raise Stop("every job of the batch was cancelled before it was created; no batch was made")
    _mark_running(batch, rows, store)
    jsonl = batch_file([(rid, _lipsync(job)) for rid, job in rows if job is not None])
    gate.hold(sync.batches)
    requested = batch.provider_ids.get(REQUESTED)
    if requested:
        adopted = _adopt(
            batch, len(rows), datetime.fromisoformat(requested), store=store, sync=sync, gate=gate
        )
        if adopted:
            return adopted
    elif VALIDATED not in batch.provider_ids:
        with gate.calling(sync.other_rate):
            checked = sync.client.create_batch(jsonl, dry_run=True)
        if not isinstance(checked, BatchValidated) or checked.status != "VALIDATED":
            raise JobRejected(f"sync.so did not validate the batch file: {checked.status}", provider=PROVIDER)
        # Recorded: a run re-queued for the create's rate turn must not spend its turn validating again.
        store.set_provider_id(batch.id, VALIDATED, L.now_iso())
    with gate.calling(sync.other_rate, sync.batches):
        store.set_provider_id(batch.id, REQUESTED, L.now_iso())
        try:
            created = sync.client.create_batch(jsonl, dry_run=False, webhook_url=None)
        except Throttled:
            store.clear_provider_id(batch.id, REQUESTED)  # a 429: nothing was created
            raise
    if not isinstance(created, Batch):
        raise JobRejected(f"sync.so answered a batch create with {created.status}", provider=PROVIDER)
    recorded = store.claim(BATCH_WAITS, created.id, job_id=batch.id, name=BATCH)
    if recorded is None:  # another record's search took it since the create answered: follow it too
        return store.record_provider_id(batch.id, BATCH, created.id)
    return recorded


def _lipsync(job: JobRecord) -> LipsyncRequest:
    assert isinstance(job.request, LipsyncRequest)
    return job.request


def _mark_running(batch: JobRecord, rows: list[tuple[str, JobRecord | None]], store: JobStore) -> None:
    detail = f"in batch {batch.id}"
    for _, job in rows:
        if job is not None and not job.is_terminal and BATCH not in job.stages:
            store.transition(job.id, JobStatus.RUNNING)
            store.update_stage(
                job.id, BATCH, StageStatus.WAITING, detail=detail, started_at=datetime.now(UTC)
            )


def _adopt(
    batch: JobRecord, size: int, requested: datetime, *, store: JobStore, sync: SyncSo, gate: Gate
) -> str | None:
    """The batch an earlier run created and did not record, if sync.so has it: created since
    ``requested`` (less the skew), with this many generations, and not owned by another record."""
    with gate.calling(sync.other_rate):
        recent = sync.client.list_batches(created_after=requested - ADOPT_SKEW)
    candidates = [b for b in recent if b.metrics.total_generations == size]
    for candidate in sorted(candidates, key=lambda b: b.created_at or requested):
        adopted = store.claim(BATCH_WAITS, candidate.id, job_id=batch.id, name=BATCH)
        if adopted:
            return adopted
    return None


def follow_batch(batch: JobRecord, sync: SyncSo, waits: Waits, gate: Gate) -> Batch:
    """The batch once it has ended (parked until then); its slot is given back then."""
    batch_id = batch.provider_ids[BATCH]
    created = batch.stages["create"].finished_at if "create" in batch.stages else None
    followed = Followed(
        BATCH_WAITS,
        sync.account,
        batch_id,
        f"batch {batch_id}",
        sync.batches,
        sync.settings.batch_check_interval_s,
        sync.settings.batch_max_wait_s,
        "GENQ_SYNCSO__BATCH_MAX_WAIT_S",
        created or batch.created_at,
    )

    def ask() -> WaitResult | str:
        with gate.calling(sync.other_rate):
            asked = sync.client.get_batch(batch_id)  # a 404 fails the batch
        return batch_ended(asked) if asked.is_terminal else f"batch {asked.status}"

    return Batch.model_validate(followed_end(followed, waits, gate, ask).body)


def collect_batch(batch: JobRecord, store: JobStore, sync: SyncSo, waits: Waits, gate: Gate) -> list[str]:
    """End every job of the ended batch from its results row; return the jobs whose download is due."""
    batch_id = batch.provider_ids[BATCH]
    result = waits.result(BATCH_WAITS, batch_id)
    ended = Batch.model_validate(result.body) if result and result.state == "ended" else None
    if ended is None:
        with gate.calling(sync.other_rate):
            ended = sync.client.get_batch(batch_id)
        # Kept, so a run re-queued for the results' rate turn does not ask for the batch again.
        waits.resolve(BATCH_WAITS, batch_id, batch_ended(ended))
    try:
        with gate.calling(sync.other_rate):  # the API call; the signed file it redirects to is not one
            rows = {row.request_id: row for row in sync.client.batch_results(ended)}
    except NotFound:
        if ended.status != BatchStatus.FAILED:
            raise
        m = ended.metrics
        raise JobRejected(  # fails every open job of the batch with it
            f"batch {batch_id} FAILED without a results file ({m.failed_count} of {m.total_generations} "
            "generations failed)",
            provider=PROVIDER,
            code="genq_batch_failed",
        ) from None
    downloads = []
    for request_id, job in members(batch, store):
        if job is None or job.is_terminal:
            continue
        row = rows.get(request_id)
        if row is None:
            message = f"batch {batch_id} ({ended.status}) has no result for request_id {request_id}"
            error = JobError(stage=BATCH, message=message, provider=PROVIDER, code="genq_batch_row_missing")
            store.fail_at(job.id, BATCH, error)
            continue
        if row.generation_id:
            store.record_provider_id(job.id, GENERATION, row.generation_id)
        if row.status == "COMPLETED" and row.generation_id:
            waits.resolve(PROVIDER, row.generation_id, _ended(row))
            store.update_stage(job.id, BATCH, StageStatus.DONE, detail=f"generation {row.generation_id} "
                               "COMPLETED", finished_at=datetime.now(UTC))  # fmt: skip
            downloads.append(job.id)
        else:
            message = row.error or f"generation ended {row.status}"
            error = JobError(
                stage=BATCH, message=message, provider=PROVIDER, code=row.error_code or row.status
            )
            store.fail_at(job.id, BATCH, error)
    return downloads


def _ended(row: BatchRow) -> WaitResult:
    return WaitResult(state="ended", body=row.generation(), source="batch")


def fail_members(batch: JobRecord, store: JobStore, error: JobError) -> None:
    """The batch failed: so does every job of it still open, with the batch's error."""
    for _, job in members(batch, store):
        if job is not None and not job.is_terminal:
            store.fail_at(
                job.id, BATCH, error.model_copy(update={"stage": BATCH}), dead_letter=error.retryable
            )
