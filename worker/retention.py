"""How long outputs are kept (``GENQ_OUTPUTS__RETENTION_DAYS``), and incomplete uploads aborted.

When a worker starts, ``OutputRetention`` asks the store to keep its own expiry: an S3 bucket takes a
lifecycle rule for genq's prefix (objects expire after the retention, incomplete multipart uploads are
aborted after ``abort_incomplete_days``), and nothing more is needed. Where the store takes none (a file
store, or an S3 server or credentials without lifecycle rules), this loop sweeps it every
``sweep_every_s``: one worker at a time per store, the holder of a lease in Redis (a file store's lease is
per host, since each host sweeps its own disk).
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from schemas import layout as L
from storage import OutputStore, StoreError

log = logging.getLogger(__name__)


class OutputRetention:
    def __init__(self, client: redis.Redis, store: OutputStore, *, every_s: float) -> None:
        self.redis, self.store, self.every_s = client, store, every_s
        self.stopped = threading.Event()
        self.sweeps = 0

    def run(self) -> None:
        try:
            if self.store.ensure_retention():
                return
        except StoreError as exc:
            log.warning("output store %s: retention not set up (%s); sweeping it instead", self.store.name,
                        exc.message)  # fmt: skip
        while not self.stopped.is_set():
            try:
                self.sweep_if_due()
            except (redis.RedisError, StoreError, OSError) as exc:
                log.warning("output store %s: sweep failed (%s)", self.store.name, exc)
            self.stopped.wait(self.every_s)

    def sweep_if_due(self) -> int | None:
        """Sweep unless another worker swept this store within ``every_s``."""
        if not self.redis.set(
            L.output_sweep_key(self.store.name), "1", nx=True, px=round(self.every_s * 1000)
        ):
            return None
        removed = self.store.sweep(time.time())
        self.sweeps += 1
        if removed:
            log.info("output store %s: %d expired outputs or incomplete uploads removed", self.store.name,
                     removed)  # fmt: skip
        return removed

    def stop(self) -> None:
        self.stopped.set()
