"""Where finished outputs go: a directory (``file://``, the default) or an S3-compatible bucket
(``s3://``), chosen by ``GENQ_OUTPUTS__URL``. Both the workers (which store outputs) and whoever reads
them (Producer, ``genq get``) build a store from the same settings; nothing here imports Celery."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from storage.base import OutputStore, Sink, Stored, StoreError, StoreRefused, StoreUnavailable
from storage.files import FileStore
from storage.settings import OutputSettings

__all__ = [
    "FileStore",
    "OutputSettings",
    "OutputStore",
    "Sink",
    "StoreError",
    "StoreRefused",
    "StoreUnavailable",
    "Stored",
    "output_store",
    "store_for",
]


def output_store(settings: OutputSettings, artifact_dir: Path) -> OutputStore:
    """The store the settings name: ``GENQ_OUTPUTS__URL``, else the directory ``GENQ_ARTIFACT_DIR``."""
    if settings.scheme == "s3":
        from storage.s3 import S3Store  # boto3 only where an S3 store is used

        return S3Store(settings)
    directory = Path(settings.directory) if settings.directory else artifact_dir
    return FileStore(directory, retention_days=settings.retention_days,
                     abort_incomplete_days=settings.abort_incomplete_days)  # fmt: skip


def store_for(store_url: str, settings: OutputSettings, artifact_dir: Path) -> OutputStore:
    """A store that reads ``store_url``: an ``s3://`` URL with the settings' endpoint and credentials
    (whatever bucket it names), a ``file://`` URL from this host's disk."""
    if urlsplit(store_url).scheme == "s3":
        from storage.s3 import S3Store, parse_s3_url

        bucket, _ = parse_s3_url(store_url)
        return S3Store(settings, bucket=bucket)
    return output_store(settings.model_copy(update={"url": None}), artifact_dir)
