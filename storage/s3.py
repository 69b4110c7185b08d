"""The S3 store: outputs in a bucket of any S3-compatible server, ``<prefix>/<job id>/<name>``, reachable
from every host; readers get a presigned GET URL and need no credentials.

Streamed, verified, once:
- an output arrives in parts of ``part_bytes`` (8 MiB): each is sent as it fills (a multipart upload), so
  a worker holds about one part per output it streams, never the output; one under a part is a single PUT;
- the object appears only when the upload completes, with ``If-None-Match: *``: an object already at the
  key is never replaced. After it completes its size is read back and compared with what streamed
  (botocore also sends each part's CRC32, which the server checks);
- a download stage run again after its worker died first looks for the object (``stored``): if the first
  run completed it, it is read back to check its SHA-256 and nothing is uploaded; if not, the dead run's
  unfinished uploads of that key are aborted before a new one starts;
- a failed upload is aborted at once; one left by a killed worker is aborted by the bucket's lifecycle
  rule after ``abort_incomplete_days`` (or by genq's sweep where the store takes no lifecycle rule).

Error statuses become ``StoreError``s (credentials refused, a missing bucket: ``StoreRefused``; a 5xx, a
timeout, a refused connection: ``StoreUnavailable``). botocore retries a failed request twice in place
(its "standard" mode); slower recovery is the stage's retry.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, unquote, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from storage.base import CHUNK_BYTES, OutputStore, Sink, Stored, StoreError, StoreRefused, StoreUnavailable
from storage.base import content_type as content_type_of
from storage.settings import OutputSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, LifecycleRuleOutputTypeDef

log = logging.getLogger(__name__)

MAX_PARTS: Final = 10_000
RULE_ID: Final = "genq-outputs"
_AUTH_CODES: Final = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
     "InvalidClientTokenId", "AuthorizationHeaderMalformed"}
)  # fmt: skip
_MISSING_BUCKET: Final = frozenset({"NoSuchBucket"})
_LIFECYCLE_REFUSED: Final = frozenset({"NotImplemented", "MalformedXML", "InvalidRequest", "AccessDenied"})


def s3_client(settings: OutputSettings) -> S3Client:
    """A boto3 S3 client for the settings: SigV4, bounded timeouts, two in-place retries."""
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": settings.addressing_style},
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=5,
        read_timeout=60,
        # Checksums only where the operation needs one: every part then carries none botocore would have
        # to read twice; size and SHA-256 are genq's own checks.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )

    def secret(value: Any) -> str | None:
        return value.get_secret_value() if value is not None else None

    session = boto3.session.Session()
    client: S3Client = session.client(
        "s3",
        endpoint_url=settings.endpoint_url,
        region_name=settings.region,
        aws_access_key_id=secret(settings.access_key_id),
        aws_secret_access_key=secret(settings.secret_access_key),
        aws_session_token=secret(settings.session_token),
        config=config,
    )
    return client


class S3Store(OutputStore):
    scheme = "s3"

    def __init__(self, settings: OutputSettings, *, bucket: str | None = None, client: Any = None) -> None:
        self.settings = settings
        self.bucket = bucket or settings.bucket
        self.prefix = settings.prefix if bucket is None else ""
        self.client: S3Client = client if client is not None else s3_client(settings)
        self._bucket_checked = False
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def object_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def store_url(self, object_key: str) -> str:
        return f"s3://{self.bucket}/{quote(object_key)}"

    def check_bucket(self) -> None:
        """Once per store: the bucket exists and the credentials open it (a HEAD of a missing object
        could not tell a missing bucket from a missing object)."""
        with self._lock:
            if self._bucket_checked:
                return
            with _translated(f"HEAD bucket {self.bucket!r}", bucket=self.bucket):
                self.client.head_bucket(Bucket=self.bucket)
            self._bucket_checked = True

    def stored(self, key: str) -> Stored | None:
        self.check_bucket()
        object_key = self.object_key(key)
        with _translated(f"HEAD {object_key}", bucket=self.bucket):
            try:
                head = self.client.head_object(Bucket=self.bucket, Key=object_key)
            except ClientError as exc:
                if _status(exc) == 404:
                    return None
                raise
        digest, count = hashlib.sha256(), 0
        for chunk in self._chunks(self.bucket, object_key):
            digest.update(chunk)
            count += len(chunk)
        if count != head["ContentLength"]:
            raise StoreUnavailable(f"{object_key}: read {count} of its {head['ContentLength']} bytes")
        return self._stored(object_key, count, digest.hexdigest())

    def _stored(self, object_key: str, count: int, sha256: str) -> Stored:
        return Stored(path=object_key, store_url=self.store_url(object_key), bytes=count, sha256=sha256,
                      content_type=content_type_of(object_key))  # fmt: skip

    def sink(self, key: str) -> Sink[Stored]:
        self.check_bucket()
        return _Upload(self, key)

    def presign(self, store_url: str) -> str | None:
        bucket, object_key = parse_s3_url(store_url)
        with _translated("presign", bucket=bucket):
            url: str = self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": bucket, "Key": object_key},
                ExpiresIn=self.settings.presign_expires_s,
            )
        return url

    def read(self, store_url: str) -> Iterator[bytes]:
        bucket, object_key = parse_s3_url(store_url)
        return self._chunks(bucket, object_key)

    def _chunks(self, bucket: str, object_key: str) -> Iterator[bytes]:
        with _translated(f"GET {object_key}", bucket=bucket):
            body = self.client.get_object(Bucket=bucket, Key=object_key)["Body"]
            try:
                yield from body.iter_chunks(CHUNK_BYTES)
            finally:
                body.close()

    def abort_unfinished(self, object_key: str) -> int:
        """Abort every incomplete multipart upload of ``object_key`` (a dead run's)."""
        aborted = 0
        with _translated(f"list uploads of {object_key}", bucket=self.bucket):
            found = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=object_key)
            for upload in found.get("Uploads", []):
                if upload.get("Key") == object_key and "UploadId" in upload:
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=object_key, UploadId=upload["UploadId"]
                    )
                    aborted += 1
        return aborted

    # --- retention -------------------------------------------------------------------------------

    def _rule(self) -> LifecycleRuleOutputTypeDef:
        rule: LifecycleRuleOutputTypeDef = {
            "ID": f"{RULE_ID}-{self.prefix}" if self.prefix else RULE_ID,
            "Filter": {"Prefix": self._key_prefix},
            "Status": "Enabled",
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": self.settings.abort_incomplete_days},
        }
        if self.settings.retention_days:
            rule["Expiration"] = {"Days": self.settings.retention_days}
        return rule

    def ensure_retention(self) -> bool:
        """Put genq's lifecycle rule (expiry after ``retention_days``, incomplete uploads aborted after
        ``abort_incomplete_days``) on the bucket, for the prefix, keeping every other rule. False when the
        store takes none (or these credentials may not set one): genq's sweep does the same then."""
        rule = self._rule()
        try:
            try:
                rules = self.client.get_bucket_lifecycle_configuration(Bucket=self.bucket)["Rules"]
            except ClientError as exc:
                if _code(exc) != "NoSuchLifecycleConfiguration":
                    raise
                rules = []
            if any(r == rule for r in rules):
                return True
            kept = [r for r in rules if r.get("ID") != rule["ID"]]
            self.client.put_bucket_lifecycle_configuration(
                Bucket=self.bucket,
                LifecycleConfiguration={"Rules": [*kept, rule]},
            )
            return True
        except ClientError as exc:
            if _code(exc) in _LIFECYCLE_REFUSED or _status(exc) in (400, 403, 501):
                log.warning("output store %s takes no lifecycle rule (%s): genq sweeps it itself",
                            self.name, _code(exc))  # fmt: skip
                return False
            raise _error(exc, "put the lifecycle rule", bucket=self.bucket) from None
        except BotoCoreError as exc:
            raise _error(exc, "put the lifecycle rule", bucket=self.bucket) from None

    def sweep(self, now_s: float) -> int:
        """Delete objects under the prefix stored more than ``retention_days`` ago and abort uploads begun
        more than ``abort_incomplete_days`` ago: what the lifecycle rule does, for a store without one."""
        now = datetime.fromtimestamp(now_s, UTC)
        with _translated("sweep", bucket=self.bucket):
            removed = self._abort_uploads(now - timedelta(days=self.settings.abort_incomplete_days))
            if self.settings.retention_days:
                removed += self._delete_objects(now - timedelta(days=self.settings.retention_days))
        return removed

    def _delete_objects(self, before: datetime) -> int:
        removed = 0
        listing = self.client.get_paginator("list_objects_v2")
        for page in listing.paginate(Bucket=self.bucket, Prefix=self._key_prefix):
            old = [o["Key"] for o in page.get("Contents", []) if o["LastModified"] < before]
            if old:
                objects: Any = [{"Key": key} for key in old]
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
                removed += len(old)
        return removed

    def _abort_uploads(self, before: datetime) -> int:
        removed = 0
        listing = self.client.get_paginator("list_multipart_uploads")
        for page in listing.paginate(Bucket=self.bucket, Prefix=self._key_prefix):
            for upload in page.get("Uploads", []):
                if upload["Initiated"] < before:
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    removed += 1
        return removed

    @property
    def _key_prefix(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""


class _Upload:
    """One output streamed into the bucket: a single PUT if it fits in one part, else a multipart upload
    whose parts are sent as they fill. Nothing is visible at the key until ``commit``."""

    def __init__(self, store: S3Store, key: str) -> None:
        self.store, self.relative_key, self.key = store, key, store.object_key(key)
        self.client, self.bucket = store.client, store.bucket
        self.part_bytes = store.settings.part_bytes
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[CompletedPartTypeDef] = []

    def start(self, declared_bytes: int | None) -> None:
        if declared_bytes is not None and declared_bytes > self.part_bytes * MAX_PARTS:
            self.part_bytes = math.ceil(declared_bytes / MAX_PARTS)

    def write(self, chunk: bytes) -> None:
        self.buffer += chunk
        while len(self.buffer) >= self.part_bytes:
            part = bytes(self.buffer[: self.part_bytes])
            del self.buffer[: self.part_bytes]
            self._send_part(part)

    def _send_part(self, body: bytes) -> None:
        with _translated(f"upload a part of {self.key}", bucket=self.bucket):
            if self.upload_id is None:
                self.store.abort_unfinished(self.key)
                created = self.client.create_multipart_upload(
                    Bucket=self.bucket, Key=self.key, ContentType=content_type_of(self.key)
                )
                self.upload_id = created["UploadId"]
            number = len(self.parts) + 1
            sent = self.client.upload_part(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=body
            )
            self.parts.append({"PartNumber": number, "ETag": sent["ETag"]})

    def commit(self, count_bytes: int, sha256: str) -> Stored:
        try:
            with _translated(f"store {self.key}", bucket=self.bucket):
                if self.upload_id is None:
                    self.client.put_object(
                        Bucket=self.bucket, Key=self.key, Body=bytes(self.buffer), IfNoneMatch="*",
                        ContentType=content_type_of(self.key),
                    )  # fmt: skip
                else:
                    if self.buffer:
                        self._send_part(bytes(self.buffer))
                    self.client.complete_multipart_upload(
                        Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, IfNoneMatch="*",
                        MultipartUpload={"Parts": self.parts},
                    )  # fmt: skip
                    self.upload_id = None
                self.buffer.clear()
        except _AlreadyThere:
            self.abort()
            return self._existing(sha256)
        with _translated(f"HEAD {self.key}", bucket=self.bucket):
            size = self.client.head_object(Bucket=self.bucket, Key=self.key)["ContentLength"]
        if size != count_bytes:
            raise StoreUnavailable(f"the store holds {size} bytes of {self.key}; {count_bytes} were sent")
        return self.store._stored(self.key, count_bytes, sha256)

    def _existing(self, sha256: str) -> Stored:
        """Another run stored the key first (If-None-Match refused this one): it must be the same bytes."""
        found = self.store.stored(self.relative_key)
        if found is None or found.sha256 != sha256:
            raise StoreRefused(f"{self.key} already holds another output", code="output_conflict")
        return found

    def abort(self) -> None:
        self.buffer = bytearray()
        if self.upload_id is None:
            return
        upload_id, self.upload_id = self.upload_id, None
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=upload_id)
        except (ClientError, BotoCoreError) as exc:  # the lifecycle rule or the sweep aborts it later
            log.warning("could not abort the upload of %s: %s", self.key, type(exc).__name__)


class _AlreadyThere(StoreError):
    """412 on a create-only write: an object is at the key already."""


def parse_s3_url(store_url: str) -> tuple[str, str]:
    parts = urlsplit(store_url)
    if parts.scheme != "s3" or not parts.netloc:
        raise StoreRefused(f"not an s3:// URL: {store_url}", code="bad_store_url")
    return parts.netloc, unquote(parts.path.lstrip("/"))


class _translated:
    """Turns botocore's exceptions raised in the block into ``StoreError``s."""

    def __init__(self, action: str, *, bucket: str) -> None:
        self.action, self.bucket = action, bucket

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, ClientError) and _status(exc) == 412:
            raise _AlreadyThere(f"{self.action}: an object is there already", code="PreconditionFailed")
        if isinstance(exc, ClientError | BotoCoreError):
            raise _error(exc, self.action, bucket=self.bucket) from None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int | None:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


def _error(exc: ClientError | BotoCoreError, action: str, *, bucket: str) -> StoreError:
    """The ``StoreError`` for a botocore failure: its code and status, the server's message, and what to
    check; never a credential (botocore's messages carry none)."""
    if isinstance(exc, NoCredentialsError):
        return StoreRefused(
            f"no credentials for the output store ({action}): set GENQ_OUTPUTS__ACCESS_KEY_ID and "
            "GENQ_OUTPUTS__SECRET_ACCESS_KEY",
            code="no_credentials",
        )
    if isinstance(exc, BotoCoreError):
        return StoreUnavailable(f"output store unreachable ({action}): {type(exc).__name__}: {exc}")
    code, status = _code(exc), _status(exc)
    message = str(exc.response.get("Error", {}).get("Message", "")) or code
    if code in _MISSING_BUCKET or (status == 404 and action.startswith("HEAD bucket")):
        return StoreRefused(f"the output store has no bucket {bucket!r} (GENQ_OUTPUTS__URL)",
                            code=code or "NoSuchBucket", status_code=status)  # fmt: skip
    if code in _AUTH_CODES or status in (401, 403):
        return StoreRefused(
            f"the output store refused genq's credentials ({action}: {code or status}: {message}); check "
            "GENQ_OUTPUTS__ACCESS_KEY_ID, GENQ_OUTPUTS__SECRET_ACCESS_KEY and the bucket's policy",
            code=code or "AccessDenied",
            status_code=status,
        )
    if status is None or status >= 500 or status in (408, 429) or code in ("SlowDown", "RequestTimeout"):
        return StoreUnavailable(f"output store unavailable ({action}): {code or status}: {message}",
                                code=code or None, status_code=status)  # fmt: skip
    return StoreRefused(f"the output store refused {action}: {code or status}: {message}",
                        code=code or None, status_code=status)  # fmt: skip
