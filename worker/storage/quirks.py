"""What Supabase's S3 endpoint needs that botocore does not do by itself, and error classification.

- Supabase answers errors with ``<Error xmlns="http://s3.amazonaws.com/doc/2006-03-01/">``;
  botocore only recognises a bare ``<Error>`` root, so codes would arrive empty. A ``before-parse``
  hook strips the namespace; the classifier also falls back to the HTTP status.
- DeleteObjects and CompleteMultipartUpload bodies are not read unless sent with
  ``Content-Type: application/xml`` (DeleteObjects is then a 400 InvalidRequest, Complete assembles
  every uploaded part, not the list sent); botocore sends none, so a ``before-sign`` hook sets it.
"""

from __future__ import annotations

import re
from typing import Any

from botocore.exceptions import ClientError, HTTPClientError, NoCredentialsError, ParamValidationError
from botocore.exceptions import ConnectionError as BotoConnectionError

from worker.errors import JobError, PermanentError, RetryableError

_NAMESPACED_ROOT = re.compile(rb"<Error\s[^>]*>")
XML_BODY_OPERATIONS = ("DeleteObjects", "CompleteMultipartUpload")
RETRYABLE_CODES = {
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeTooSkewed",
}
DENIED_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidSignature"}


def strip_error_namespace(response_dict: dict[str, Any], **_: Any) -> None:
    """``before-parse.s3`` hook: turn a namespaced ``<Error>`` root into a bare one."""
    body = response_dict.get("body")
    if response_dict.get("status_code", 200) >= 300 and isinstance(body, bytes):
        response_dict["body"] = _NAMESPACED_ROOT.sub(b"<Error>", body, count=1)


def set_xml_content_type(request: Any, **_: Any) -> None:
    """``before-sign.s3.<op>`` hook: send XML bodies with ``Content-Type: application/xml``."""
    if request.body and "Content-Type" not in request.headers:
        request.headers["Content-Type"] = "application/xml"


def register_hooks(client: Any) -> None:
    """Install the Supabase hooks on a boto3 S3 client."""
    events = client.meta.events
    events.register("before-parse.s3", strip_error_namespace)
    for operation in XML_BODY_OPERATIONS:
        events.register(f"before-sign.s3.{operation}", set_xml_content_type)


def error_code(exc: ClientError) -> tuple[str, int]:
    """(code, HTTP status) of a ClientError; code may be '' or a bare status from a proxy."""
    error = exc.response.get("Error", {})
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return str(error.get("Code") or ""), status


# Supabase's limit for one request's body (UPLOAD_FILE_SIZE_LIMIT_STANDARD): larger files must go
# multipart, so STORAGE_MULTIPART_THRESHOLD_MB may not exceed it.
SINGLE_UPLOAD_LIMIT_MB = 50

_SMALLER = {  # what makes a refused file smaller, by extension
    "wav": "render the master as flac (master.format) or at 16-bit (master.bit_depth)",
    "flac": "render the master at 16-bit (master.bit_depth) if it is 24-bit, or shorten the job",
    "mp3": "lower the preview bitrate (preview.bitrate_kbps) or shorten the job",
}


class ObjectNotFound(PermanentError):
    """The object asked for does not exist."""


def too_large_message(size: int | None, key: str | None = None) -> str:
    """A 413: the file is over the file size limit of the bucket or the project (single uploads
    are at most SINGLE_UPLOAD_LIMIT_MB, larger ones go multipart, so the plan's limit is the cause)."""
    what = f"the file ({size / 1e6:.1f} MB)" if size is not None else "the file"
    ext = (key or "").rsplit(".", 1)[-1].lower() if key and "." in key else ""
    hint = _SMALLER.get(ext, "make the file smaller")
    return (
        f"storage refused {what}: entity too large (over the file size limit of the bucket or of "
        f"the project). {hint[0].upper()}{hint[1:]}, or raise the limit in Supabase (Storage -> "
        "Settings -> Upload file size limit, and the bucket's own limit)"
    )


def public_error_code(response: Any) -> str:
    """The error code of an answer from Supabase's public object route: its JSON body carries
    ``code`` (``NoSuchKey``, ``NoSuchBucket``) and ``error`` ("Bucket not found", "not_found")
    under HTTP 400; '' when there is none."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    code, error = str(body.get("code") or ""), str(body.get("error") or body.get("message") or "")
    if code:
        return code
    return {"Bucket not found": "NoSuchBucket", "not_found": "NoSuchKey"}.get(error, "")


def classify(
    exc: BaseException, *, action: str, bucket: str, size: int | None = None, key: str | None = None
) -> JobError:
    """Map a boto/botocore failure to the worker's taxonomy with a message that says what to do.

    Messages carry the bucket, the S3 error code and status; never credentials. ``key``: the
    request addressed that object, so a bare 404 (HEAD has no body) means the object is missing,
    not the bucket.
    """
    if isinstance(exc, JobError):
        return exc
    if isinstance(exc, (HTTPClientError, BotoConnectionError)):
        return RetryableError(f"storage unreachable while trying to {action}: {type(exc).__name__}")
    if isinstance(exc, (ParamValidationError, NoCredentialsError)):
        return PermanentError(f"storage request invalid while trying to {action}: {type(exc).__name__}")
    if not isinstance(exc, ClientError):
        return RetryableError(f"storage failed while trying to {action}: {type(exc).__name__}")
    code, status = error_code(exc)
    label = f"{code or 'no code'}, HTTP {status}"
    if code == "EntityTooLarge" or status == 413:
        return PermanentError(too_large_message(size, key))
    if code == "InvalidMimeType" or status == 415:
        return PermanentError(
            f"storage bucket {bucket!r} refused the file's type ({label}): add audio/wav, "
            "audio/flac and audio/mpeg to the bucket's allowed MIME types in Supabase, or clear them"
        )
    if code in DENIED_CODES or status in {401, 403}:
        return PermanentError(
            f"storage access denied ({label}) while trying to {action} in bucket {bucket!r}: check "
            "STORAGE_S3_ACCESS_KEY_ID, STORAGE_S3_SECRET_ACCESS_KEY and STORAGE_S3_REGION "
            "(Supabase Dashboard -> Storage -> S3 Connection)"
        )
    if key is not None and (code == "NoSuchKey" or (status == 404 and code in {"", "404", "NotFound"})):
        return ObjectNotFound(f"no object {key!r} in bucket {bucket!r} ({label})")
    if code == "NoSuchBucket" or (status == 404 and code in {"", "404", "NotFound"}):
        return PermanentError(
            f"storage bucket {bucket!r} does not exist ({label}): create it in Supabase or fix "
            "SUPABASE_STORAGE_BUCKET / STORAGE_PREVIEW_BUCKET"
        )
    if code in RETRYABLE_CODES or status >= 500 or status in {408, 429}:
        return RetryableError(f"storage failed while trying to {action} ({label})")
    return PermanentError(f"storage refused to {action} in bucket {bucket!r} ({label})")
