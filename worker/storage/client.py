"""Upload rendered files to Supabase Storage (S3 protocol), hand back their URLs, clean up."""

from __future__ import annotations

import functools
import hashlib
import mimetypes
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, TypeVar
from urllib.parse import quote

import boto3
import httpx
from botocore.config import Config
from botocore.exceptions import ClientError
from loguru import logger
from pydantic import BaseModel

from worker.errors import JobError, PermanentError
from worker.observe import metrics
from worker.storage.quirks import (
    ObjectNotFound,
    classify,
    error_code,
    public_error_code,
    register_hooks,
)
from worker.storage.settings import StorageSettings

T = TypeVar("T")
CONTENT_TYPES = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "opus": "audio/ogg",
    "m4a": "audio/mp4",
    "aac": "audio/aac",
    "json": "application/json",
}
_JOB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_EXT_RE = re.compile(r"^[a-z0-9]{1,10}$")
_MAX_DELAY_S = 30.0


def content_type_for(path_or_ext: str | Path) -> str:
    """audio/wav, audio/flac, audio/mpeg ... by extension; application/octet-stream if unknown."""
    ext = str(path_or_ext).rsplit(".", 1)[-1].lower()
    return CONTENT_TYPES.get(ext) or mimetypes.guess_type(f"x.{ext}")[0] or "application/octet-stream"


class StoredObject(BaseModel):
    """One uploaded file: where it is, how big, its sha256 (hex) and a URL to fetch it."""

    bucket: str
    key: str
    size: int
    sha256: str
    content_type: str
    url: str


class IncompleteUpload(NamedTuple):
    """A multipart upload begun and neither completed nor aborted. ``initiated`` is when it began,
    as the server says (None if it does not say)."""

    key: str
    upload_id: str
    initiated: datetime | None


class _HashingReader:
    """File wrapper that hashes what botocore reads while it sends the body (one pass)."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self.digest = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self.digest.update(data)
        self.count += len(data)
        return data


class _FileSlice:
    """``length`` bytes of a file from ``offset``, read on demand: a seekable upload body."""

    def __init__(self, path: Path, offset: int, length: int) -> None:
        self._file = path.open("rb")
        self._offset, self._length, self._pos = offset, length, 0
        self.short = False  # the file ended before the slice did
        self._file.seek(offset)

    def read(self, size: int = -1) -> bytes:
        left = self._length - self._pos
        data = self._file.read(left if size is None or size < 0 else min(size, left))
        self._pos += len(data)
        if not data and left > 0:
            self.short = True
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._length}[whence]
        self._pos = max(0, min(self._length, base + offset))
        self._file.seek(self._offset + self._pos)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> _FileSlice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sha256_of(path: Path, block: int = 1024 * 1024) -> tuple[str, int]:
    """(hex sha256, bytes read) of a file, through one reused buffer."""
    digest, buffer, total = hashlib.sha256(), bytearray(block), 0
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as file:
        while n := file.readinto(buffer):
            digest.update(view[:n])
            total += n
    return digest.hexdigest(), total


class Storage:
    """Supabase Storage through its S3 endpoint: path-style, SigV4, checksums only when required."""

    def __init__(self, settings: StorageSettings) -> None:
        self.settings = settings
        config = Config(
            region_name=settings.storage_s3_region,
            signature_version="s3v4",
            s3={"addressing_style": "path", "payload_signing_enabled": False},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"total_max_attempts": 1, "mode": "standard"},  # we retry ourselves, with backoff
            connect_timeout=settings.storage_connect_timeout_s,
            read_timeout=settings.storage_read_timeout_s,
            max_pool_connections=settings.storage_multipart_concurrency + 4,
        )
        self._s3: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=settings.endpoint,
            # always explicit (even if empty) so boto3 never picks up unrelated AWS_* credentials
            aws_access_key_id=settings.storage_s3_access_key_id,
            aws_secret_access_key=settings.storage_s3_secret_access_key.get_secret_value(),
            config=config,
        )
        register_hooks(self._s3)

    def __repr__(self) -> str:
        return f"Storage(endpoint={self.settings.endpoint!r}, bucket={self.settings.master_bucket!r})"

    # -- keys and URLs -------------------------------------------------------------------------

    def object_key(
        self, job_id: str, ext: str, *, timestamp_ms: int | None = None, variant: str | None = None
    ) -> str:
        """``{prefix}/{job_id}_{timestamp_ms}[_{variant}].{ext}``."""
        ext = ext.lower().lstrip(".")
        if not _JOB_ID_RE.match(job_id) or not _EXT_RE.match(ext):
            raise ValueError(f"unsafe object key parts: job_id={job_id!r} ext={ext!r}")
        if variant is not None and not _JOB_ID_RE.match(variant):
            raise ValueError(f"unsafe object key variant {variant!r}")
        stamp = time.time_ns() // 1_000_000 if timestamp_ms is None else timestamp_ms
        name = f"{job_id}_{stamp}{'_' + variant if variant else ''}.{ext}"
        prefix = self.settings.storage_path_prefix
        return f"{prefix}/{name}" if prefix else name

    def url_for(self, bucket: str, key: str) -> str:
        """Public object URL, or a presigned GET URL when STORAGE_URL_MODE=signed."""
        if self.settings.storage_url_mode == "public":
            return f"{self.settings.supabase_url}/storage/v1/object/public/{bucket}/{quote(key, safe='/')}"
        return str(
            self._s3.generate_presigned_url(
                "get_object",
                Params={"Bucket": bucket, "Key": key},
                ExpiresIn=self.settings.storage_signed_url_ttl_s,
            )
        )

    def signed_url(self, bucket: str, key: str, ttl_s: int) -> str:
        """A presigned GET URL valid ``ttl_s`` seconds, whatever STORAGE_URL_MODE says (the
        dashboard plays previews of private buckets with it). Computed locally: no request."""
        return str(
            self._s3.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=ttl_s
            )
        )

    # -- uploads -------------------------------------------------------------------------------

    def upload_file(
        self, path: Path, *, bucket: str, key: str, content_type: str | None = None
    ) -> StoredObject:
        """Stream ``path`` to ``bucket/key``; multipart above the threshold; retried.

        Raises RetryableError when storage stays unreachable/5xx after the configured attempts,
        PermanentError when retrying cannot help (too large, access denied, no such bucket).
        """
        path = Path(path)
        content_type = content_type or content_type_for(path)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise PermanentError(f"rendered file missing, cannot upload: {path.name}") from exc
        started = time.monotonic()
        try:
            if size > self.settings.multipart_threshold:
                digest = self._upload_multipart(path, bucket, key, content_type, size)
            else:
                digest = self._retry(
                    lambda: self._put(path, bucket, key, content_type, size),
                    action=f"upload {key}",
                    bucket=bucket,
                    size=size,
                    key=key,
                )
        except Exception:
            metrics.upload_failed()
            raise
        metrics.uploaded(bucket, size)
        logger.info(
            "stored {}/{} ({} bytes, {}) in {:.2f}s",
            bucket,
            key,
            size,
            content_type,
            time.monotonic() - started,
        )
        return StoredObject(
            bucket=bucket,
            key=key,
            size=size,
            sha256=digest,
            content_type=content_type,
            url=self.url_for(bucket, key),
        )

    def _put(self, path: Path, bucket: str, key: str, content_type: str, size: int) -> str:
        with path.open("rb") as file:
            reader = _HashingReader(file)
            self._s3.put_object(
                Bucket=bucket, Key=key, Body=reader, ContentLength=size, ContentType=content_type
            )
        if reader.count != size:
            raise PermanentError(f"rendered file changed while uploading: {path.name}")
        return reader.digest.hexdigest()

    def _upload_multipart(self, path: Path, bucket: str, key: str, content_type: str, size: int) -> str:
        action = f"upload {key}"
        upload_id: str = self._retry(
            lambda: self._s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType=content_type)[
                "UploadId"
            ],
            action=action,
            bucket=bucket,
            size=size,
            key=key,
        )
        try:
            digest, parts = self._send_parts(path, bucket, key, upload_id, size)
            self._retry(
                lambda: self._complete(bucket, key, upload_id, parts, size),
                action=action,
                bucket=bucket,
                size=size,
                key=key,
            )
        except BaseException:
            self._best_effort(
                lambda: self._s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id),
                f"abort multipart upload of {bucket}/{key}",
            )
            raise
        return digest

    def _send_parts(
        self, path: Path, bucket: str, key: str, upload_id: str, size: int
    ) -> tuple[str, list[dict[str, Any]]]:
        """Send the file's parts, up to N at a time, each streamed from disk; hash the file meanwhile.

        No part is ever held in memory: each attempt reads its slice of the file as botocore sends
        it, so the worker's memory does not grow with the file's length or the part size.
        """
        part_size = self.settings.part_size
        spans = [
            (n, offset, min(part_size, size - offset))
            for n, offset in enumerate(range(0, size, part_size), start=1)
        ]

        def send(n: int, offset: int, length: int) -> dict[str, Any]:
            def attempt() -> str:
                with _FileSlice(path, offset, length) as body:
                    etag = self._s3.upload_part(
                        Bucket=bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=n,
                        Body=body,
                        ContentLength=length,
                    )["ETag"]
                    if body.short:
                        raise PermanentError(f"rendered file changed while uploading: {path.name}")
                    return str(etag)

            return {
                "PartNumber": n,
                "ETag": self._retry(
                    attempt, action=f"upload {key} part {n}", bucket=bucket, size=size, key=key
                ),
            }

        limit = self.settings.storage_multipart_concurrency
        with ThreadPoolExecutor(limit, thread_name_prefix="s3-part") as pool:
            futures = [pool.submit(send, *span) for span in spans]
            try:
                digest, read = _sha256_of(path)  # here, while the pool sends (hashlib frees the GIL)
                parts = [future.result() for future in futures]
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        if read != size:
            raise PermanentError(f"rendered file changed while uploading: {path.name}")
        return digest, parts

    def _complete(
        self, bucket: str, key: str, upload_id: str, parts: list[dict[str, Any]], size: int
    ) -> None:
        try:
            self._s3.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except ClientError as exc:
            # A retried Complete whose first try did land answers NoSuchUpload: accept if the object is whole.
            if error_code(exc)[0] != "NoSuchUpload":
                raise
            head = self._s3.head_object(Bucket=bucket, Key=key)
            if head.get("ContentLength") != size:
                raise

    # -- cleanup -------------------------------------------------------------------------------

    def download_file(self, bucket: str, key: str, dest: Path) -> Path:
        """Stream ``bucket/key`` to ``dest``; retried like uploads.

        Raises ObjectNotFound when there is no such object, RetryableError when storage stays
        unreachable, PermanentError when retrying cannot help. ``dest`` never holds a partial file.
        """

        def get() -> None:
            try:
                self._s3.download_file(bucket, key, str(dest))
            except ClientError as exc:
                code, status = error_code(exc)
                if code in {"NoSuchKey", "404", "NotFound"} or status == 404:
                    raise ObjectNotFound(f"no object {key!r} in bucket {bucket!r}") from None
                raise

        try:
            self._retry(get, action=f"download {key}", bucket=bucket)
        except BaseException:
            Path(dest).unlink(missing_ok=True)
            raise
        return Path(dest)

    def delete_objects(self, objects: Iterable[StoredObject], *, strict: bool = False) -> None:
        """Delete objects, best effort with retries; missing objects are fine; never raises.

        ``strict=True``: every batch is still tried, then the first error is raised (a JobError), so
        a caller that must know the objects are gone (orphan cleanup) can tell."""
        by_bucket: dict[str, list[str]] = {}
        for obj in objects:
            by_bucket.setdefault(obj.bucket, []).append(obj.key)
        first_error: Exception | None = None
        for bucket, keys in by_bucket.items():
            for start in range(0, len(keys), 1000):
                batch = keys[start : start + 1000]
                if not strict:
                    self._best_effort(
                        lambda: self._delete_batch(bucket, batch),  # noqa: B023 (called at once)
                        f"delete {batch} from {bucket}",
                    )
                    continue
                try:
                    self._delete_batch(bucket, batch)
                except Exception as exc:
                    first_error = first_error or (
                        exc
                        if isinstance(exc, JobError)
                        else classify(exc, action="delete objects", bucket=bucket)
                    )
        if first_error is not None:
            raise first_error

    def purge(self, objects: Iterable[StoredObject]) -> None:
        """Leave nothing of ``objects`` behind: abort every incomplete multipart upload of their
        keys (a process killed mid-upload leaves one, holding its parts' bytes), then delete them.

        For cleanup that must be sure (the orphan sweep, a discarded attempt): tries everything,
        then raises the first error (a JobError). Upload ids are found by listing, not stored."""
        objects = list(objects)
        first_error: JobError | None = None
        for obj in objects:
            try:
                self.abort_incomplete_uploads(obj.bucket, obj.key)
            except JobError as exc:
                first_error = first_error or exc
        try:
            self.delete_objects(objects, strict=True)
        except JobError as exc:
            first_error = first_error or exc
        if first_error is not None:
            raise first_error

    def abort_incomplete_uploads(self, bucket: str, key: str) -> int:
        """Abort every incomplete multipart upload of exactly ``key`` (ListMultipartUploads with the
        key as prefix); returns how many. A missing bucket has none."""
        aborted = 0
        for upload in self.incomplete_uploads(bucket, key):
            if upload.key != key:  # the prefix also matches longer keys
                continue
            self.abort_upload(bucket, upload)
            aborted += 1
        if aborted:
            logger.info("storage: aborted {} incomplete upload(s) of {}/{}", aborted, bucket, key)
        return aborted

    def incomplete_uploads(self, bucket: str, prefix: str) -> list[IncompleteUpload]:
        """The incomplete multipart uploads of keys starting with ``prefix``, every page of them
        (Supabase answers 200 a page); retried. A missing bucket has none."""

        def listing(marker: tuple[str, str] | None) -> dict[str, Any]:
            kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
            if marker is not None:
                kwargs["KeyMarker"], kwargs["UploadIdMarker"] = marker
            try:
                return dict(self._s3.list_multipart_uploads(**kwargs))
            except ClientError as exc:
                if error_code(exc)[0] == "NoSuchBucket":
                    return {}
                raise

        found: list[IncompleteUpload] = []
        marker = None
        while True:
            page = self._retry(
                functools.partial(listing, marker), action=f"list uploads of {prefix}", bucket=bucket
            )
            for upload in page.get("Uploads", []):
                initiated = upload.get("Initiated")
                found.append(
                    IncompleteUpload(
                        key=str(upload.get("Key", "")),
                        upload_id=str(upload["UploadId"]),
                        initiated=initiated if isinstance(initiated, datetime) else None,
                    )
                )
            following = (str(page.get("NextKeyMarker", "")), str(page.get("NextUploadIdMarker", "")))
            if not page.get("IsTruncated") or following in (marker, ("", "")):  # no next page
                return found
            marker = following

    def abort_upload(self, bucket: str, upload: IncompleteUpload) -> None:
        """Abort one incomplete upload (its parts' bytes are freed); retried. One that was aborted
        or completed meanwhile is fine."""
        self._retry(
            functools.partial(self._abort, bucket, upload.key, upload.upload_id),
            action=f"abort the upload of {upload.key}",
            bucket=bucket,
        )

    def _abort(self, bucket: str, key: str, upload_id: str) -> None:
        try:
            self._s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if error_code(exc)[0] != "NoSuchUpload":  # aborted or completed meanwhile
                raise

    def _delete_batch(self, bucket: str, keys: list[str]) -> None:
        def call() -> dict[str, Any]:
            try:
                response: dict[str, Any] = self._s3.delete_objects(
                    Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
                )
                return response
            except ClientError as exc:
                code, status = error_code(exc)
                if code in {"NoSuchBucket", "NoSuchKey"} or status == 404:  # nothing left to delete
                    return {}
                raise

        response = self._retry(call, action=f"delete {len(keys)} objects", bucket=bucket)
        failed = [e for e in response.get("Errors", []) if e.get("Code") != "NoSuchKey"]
        if failed:
            raise PermanentError(
                f"storage kept {len(failed)} objects: "
                + ", ".join(f"{e.get('Key')} ({e.get('Code')})" for e in failed[:5])
            )

    # -- readiness -----------------------------------------------------------------------------

    def check(self) -> list[str]:
        """Problems that stop uploads (missing credentials or buckets, refused keys); [] when ready."""
        settings = self.settings
        if (
            not settings.storage_s3_access_key_id
            or not settings.storage_s3_secret_access_key.get_secret_value()
        ):
            return [
                "storage credentials missing: set STORAGE_S3_ACCESS_KEY_ID and STORAGE_S3_SECRET_ACCESS_KEY "
                "(Supabase Dashboard -> Storage -> S3 Connection -> Access keys)"
            ]
        problems: list[str] = []
        served = {settings.master_bucket, settings.preview_bucket}  # their URLs go into results
        buckets = [settings.master_bucket, settings.preview_bucket]
        if settings.provider_cache_shared:
            buckets.append(settings.provider_cache_bucket_name)
        for bucket in dict.fromkeys(buckets):
            try:
                self._s3.head_bucket(Bucket=bucket)
            except Exception as exc:
                problems.append(str(classify(exc, action="reach the bucket", bucket=bucket)))
                continue
            if settings.storage_url_mode == "public" and bucket in served:
                problems += self._public_problems(bucket)
        return problems

    def _public_problems(self, bucket: str) -> list[str]:
        """STORAGE_URL_MODE=public hands out URLs that only work on a public bucket. Supabase's public
        route tells them apart for a key that does not exist: NoSuchKey on a public bucket,
        NoSuchBucket ("Bucket not found") on a private one."""
        probe = self.object_key("readiness-check", "wav", variant=uuid.uuid4().hex[:12])
        url = self.url_for(bucket, probe)
        try:
            response = httpx.get(url, timeout=self.settings.storage_connect_timeout_s)
        except httpx.HTTPError as exc:
            return [
                f"cannot reach the public URL of bucket {bucket!r} ({type(exc).__name__}): check SUPABASE_URL"
            ]
        code = public_error_code(response)
        if response.status_code == 200 or code == "NoSuchKey":
            return []
        if code == "NoSuchBucket":
            return [
                f"bucket {bucket!r} is not public, but STORAGE_URL_MODE=public hands out public URLs "
                "that would answer 'Bucket not found': make the bucket public (Supabase Dashboard -> "
                "Storage -> bucket -> Edit bucket -> Public bucket) or set STORAGE_URL_MODE=signed"
            ]
        return [
            f"the public URL of bucket {bucket!r} answers HTTP {response.status_code} "
            f"({code or 'no error code'}): check SUPABASE_URL, or set STORAGE_URL_MODE=signed"
        ]

    # -- retries -------------------------------------------------------------------------------

    def _retry(
        self,
        fn: Callable[[], T],
        *,
        action: str,
        bucket: str,
        size: int | None = None,
        key: str | None = None,
    ) -> T:
        attempts = self.settings.storage_upload_attempts
        base = self.settings.storage_retry_delay_ms / 1000
        for attempt in range(1, attempts + 1):
            try:
                return fn()
            except Exception as exc:
                error = classify(exc, action=action, bucket=bucket, size=size, key=key)
                if not error.retryable or attempt == attempts:
                    if error is exc:
                        raise
                    raise error from exc
                delay = min(base * 2 ** (attempt - 1), _MAX_DELAY_S) * random.uniform(0.8, 1.2)
                logger.warning(
                    "storage: {} (attempt {}/{}), retrying in {:.2f}s", error, attempt, attempts, delay
                )
                time.sleep(delay)
        raise AssertionError("unreachable")

    @staticmethod
    def _best_effort(fn: Callable[[], object], what: str) -> None:
        try:
            fn()
        except JobError as exc:
            logger.error("storage: could not {}: {}", what, exc)
        except Exception as exc:
            logger.error("storage: could not {}: {}", what, type(exc).__name__)
