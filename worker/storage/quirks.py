"""What Supabase's S3 endpoint needs that botocore does not do by itself, and error classification.

- Supabase answers errors with ``<Error xmlns="http://s3.amazonaws.com/doc/2006-03-01/">``;
  botocore only recognises a bare ``<Error>`` root, so codes would arrive empty. A ``before-parse``
  hook strips the namespace; the classifier also falls back to the HTTP status.
- DeleteObjects and CompleteMultipartUpload bodies are ignored unless sent with
  ``Content-Type: application/xml``; botocore sends none, so a ``before-sign`` hook sets it.
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


def too_large_message(size: int | None) -> str:
    what = f"the file ({size / 1e6:.1f} MB)" if size is not None else "the file"
    return (
        f"storage refused {what}: entity too large (over the storage plan's file size limit). "
        "Render as flac or 16-bit to make it smaller, or raise the file size limit in Supabase "
        "(Storage settings)"
    )


def classify(exc: BaseException, *, action: str, bucket: str, size: int | None = None) -> JobError:
    """Map a boto/botocore failure to the worker's taxonomy with a message that says what to do.

    Messages carry the bucket, the S3 error code and status; never credentials.
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
        return PermanentError(too_large_message(size))
    if code in DENIED_CODES or status in {401, 403}:
        return PermanentError(
            f"storage access denied ({label}) while trying to {action} in bucket {bucket!r}: check "
            "STORAGE_S3_ACCESS_KEY_ID, STORAGE_S3_SECRET_ACCESS_KEY and STORAGE_S3_REGION "
            "(Supabase Dashboard -> Storage -> S3 Connection)"
        )
    if code == "NoSuchBucket" or (status == 404 and code in {"", "404", "NotFound"}):
        return PermanentError(
            f"storage bucket {bucket!r} does not exist ({label}): create it in Supabase or fix "
            "SUPABASE_STORAGE_BUCKET / STORAGE_PREVIEW_BUCKET"
        )
    if code in RETRYABLE_CODES or status >= 500 or status in {408, 429}:
        return RetryableError(f"storage failed while trying to {action} ({label})")
    return PermanentError(f"storage refused to {action} in bucket {bucket!r} ({label})")
