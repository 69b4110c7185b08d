"""Settings of the output store (``GENQ_OUTPUTS__...``): where finished outputs go and how long they stay.

``url`` picks the store: unset, outputs land under ``GENQ_ARTIFACT_DIR`` on the worker's own disk, as they
always did; ``file:///dir`` names another directory; ``s3://bucket/prefix`` puts them in an S3-compatible
bucket under that prefix, reached at ``endpoint_url`` (unset: AWS) with the credentials below (unset:
boto3's own chain, e.g. an instance role). The credentials are ``SecretStr``: never in a record, a log
line, an error message or Flower."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class OutputSettings(BaseModel):
    # Unset: file:// under GENQ_ARTIFACT_DIR.
    url: str | None = None
    # An S3-compatible server (SeaweedFS, MinIO, R2 …); unset: AWS S3 for the region.
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    # "path" for most self-hosted servers (http://host:8333/bucket/key), "virtual" for bucket.host.
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    # How long a presigned GET URL that `genq status --json`, `genq get` and Producer hand out works.
    presign_expires_s: int = Field(900, gt=0, le=7 * 24 * 3600)
    # The part size of a multipart upload (S3 takes 5 MiB at least): a worker holds about one part of each
    # output it streams. Grown for an output whose declared size would need more than 10,000 parts.
    part_bytes: int = Field(8 * 1024 * 1024, ge=5 * 1024 * 1024, le=5 * 1024**3)
    # Outputs are deleted this many days after they were stored; 0 keeps them. S3: a lifecycle rule on the
    # prefix (put by the workers when they start), or genq's own sweep where the store takes none.
    retention_days: int = Field(7, ge=0)
    # A multipart upload left incomplete (its worker died) is aborted this many days after it began.
    abort_incomplete_days: int = Field(1, ge=1)
    # How often the sweep runs, where one is needed (a file store, or an S3 store without lifecycle rules).
    sweep_every_s: float = Field(3600.0, gt=0)

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value)
        if parts.scheme == "file":
            if not parts.path.startswith("/") or parts.netloc not in ("", "localhost"):
                raise ValueError("a file:// URL names an absolute directory: file:///srv/genq/outputs")
        elif parts.scheme == "s3":
            if not parts.netloc:
                raise ValueError("an s3:// URL names a bucket: s3://bucket/prefix")
        else:
            raise ValueError(f"unknown output store {parts.scheme!r}: use file:///dir or s3://bucket/prefix")
        return value

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme if self.url else "file"

    @property
    def bucket(self) -> str:
        return urlsplit(self.url or "").netloc

    @property
    def prefix(self) -> str:
        """The key prefix, without slashes at either end ("" for the bucket's root)."""
        return unquote(urlsplit(self.url or "").path).strip("/")

    @property
    def directory(self) -> str | None:
        """A file store's directory, if ``url`` names one (else GENQ_ARTIFACT_DIR)."""
        return unquote(urlsplit(self.url).path) if self.url and self.scheme == "file" else None

    @classmethod
    def from_env(cls) -> tuple[OutputSettings, Path]:
        """The output settings and GENQ_ARTIFACT_DIR as the workers read them from the environment, for a
        process that reads outputs without the workers' settings (Producer, `genq get`)."""
        env = _Env()
        return env.outputs, env.artifact_dir


class _Env(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENQ_", env_nested_delimiter="__", extra="ignore")

    outputs: OutputSettings = OutputSettings()
    artifact_dir: Path = Path("artifacts")
