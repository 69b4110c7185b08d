"""The workers' side of the output store (``storage``): each output is stored once, and a store's
failure is a job error or a retry like a provider's.

``store_output`` first asks the store for the output at its key: a download stage run again after its
worker died finds what the first run stored (read back, its SHA-256 checked) and fetches nothing. Else it
streams the provider's output into the store through ``fetch``. Store errors become ``ProviderError``s of
provider ``store``: ``OutputStoreUnavailable`` (retried with backoff) or ``OutputStoreFailed`` (the job
fails with the store's message, which names no credential).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from storage import OutputStore, Sink, Stored, StoreError
from worker.providers.errors import STORE, OutputStoreFailed, OutputStoreUnavailable, ProviderError
from worker.providers.http import ByteBudget


def store_error(exc: StoreError) -> ProviderError:
    kind = OutputStoreUnavailable if exc.retryable else OutputStoreFailed
    return kind(exc.message, provider=STORE, code=exc.code, status_code=exc.status_code)


@contextmanager
def store_errors() -> Iterator[None]:
    try:
        yield
    except StoreError as exc:
        raise store_error(exc) from None


class _Translated:
    """A store's sink whose failures are ``ProviderError``s, for ``worker.providers.http.stream_into``."""

    def __init__(self, sink: Sink[Stored]) -> None:
        self.sink = sink

    def start(self, declared_bytes: int | None) -> None:
        with store_errors():
            self.sink.start(declared_bytes)

    def write(self, chunk: bytes) -> None:
        with store_errors():
            self.sink.write(chunk)

    def commit(self, count_bytes: int, sha256: str) -> Stored:
        with store_errors():
            return self.sink.commit(count_bytes, sha256)

    def abort(self) -> None:
        with store_errors():
            self.sink.abort()


def store_output(
    store: OutputStore, key: str, fetch: Callable[[Sink[Stored]], Stored], *, budget: ByteBudget | None
) -> Stored:
    """The output at ``key``: the one stored before, or ``fetch`` streams it into the store now. One
    found is counted in the job's output ``budget`` as a download of its size would be."""
    with store_errors():
        found = store.stored(key)
        sink = None if found is not None else store.sink(key)
    if found is not None:
        if budget is not None:
            budget(found.bytes)
        return found
    assert sink is not None
    return fetch(_Translated(sink))
