"""The execution side of genq. ``celery -A worker ...`` finds the Celery app as ``worker.app``."""

from worker.app import app

__all__ = ["app"]
