"""Real Celery workers: one in-process worker (threads pool) for the session, consuming the session
Redis; tests that kill or scale workers start subprocess workers on a Redis of their own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker

from producers import Producer
from tests.conftest import Services


@pytest.fixture(scope="session")
def celery_worker(services: Services) -> Iterator[Any]:
    # Imported here, not at the top: `pytest tests/integration` loads this file before pytest_configure
    # has started the session Redis, and the app reads its settings at import.
    from worker.app import TASK_MODULES, app  # noqa: PLC0415

    for module in TASK_MODULES:
        __import__(module)
    with start_worker(
        app,
        pool="threads",
        concurrency=8,
        perform_ping_check=False,
        loglevel="WARNING",
        queues=["default", "syncso"],
        shutdown_timeout=10,
    ) as worker:
        yield worker


@pytest.fixture
def producer(services: Services, celery_worker: Any) -> Iterator[Producer]:
    p = Producer(services.redis.url)
    yield p
    p.close()
