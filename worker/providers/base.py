"""What every HTTP provider shares: error classification, redaction, one streamed request.

Classification of an HTTP answer (the job's fate follows the exception class):

- 2xx with audio: success. 2xx with anything else (HTML, JSON, undecodable or truncated bytes):
  transient (retried here, then ``RetryableError``) -- a proxy or a hiccup, not the job's fault.
- 429 whose code says credits/quota are exhausted, and every other 4xx except 408/425:
  ``PermanentError`` carrying the provider's own message.
- 408, 425, 429 (rate limit), 5xx, timeouts and connection errors: transient, honouring Retry-After.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from loguru import logger

from worker.errors import PermanentError
from worker.logs import redact
from worker.observe import metrics
from worker.providers.audio import InvalidAudio, validate_audio

# Error codes that mean "no money left": retrying cannot fix them even when sent with HTTP 429.
QUOTA_CODES = frozenset(
    {
        "insufficient_quota",
        "quota_exceeded",
        "billing_hard_limit_reached",
        "payment_required",
        "insufficient_balance",
    }
)
MAX_ERROR_BODY = 64 * 1024


class TransientError(Exception):
    """One attempt failed in a way that may pass; ``retry_after`` is the server's hint in seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _masked(text: str, secrets: Iterable[str]) -> str:
    """A provider's error text without secrets (``worker.logs.redact``), capped at 500 characters."""
    text = redact(text, secrets)
    return text if len(text) <= 500 else text[:497] + "..."


def parse_retry_after(headers: httpx.Headers, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, ``retry-after`` (seconds or HTTP date); None if absent."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class ProviderFault:
    """A provider's error body reduced to its code and human message."""

    code: str
    message: str


ErrorParser = Callable[[Any], ProviderFault | None]


def classify(
    provider: str, response: httpx.Response, body: bytes, parse: ErrorParser, secrets: list[str]
) -> Exception:
    """Turn a non-2xx answer into a ``PermanentError`` or a ``TransientError``."""
    status = response.status_code
    fault: ProviderFault | None = None
    try:
        fault = parse(json.loads(body))
    except (ValueError, TypeError, AttributeError, KeyError, IndexError):
        fault = None
    if fault is None:
        snippet = body[:200].decode("utf-8", errors="replace").strip()
        fault = ProviderFault(code=response.reason_phrase or "error", message=snippet or "(empty body)")
    text = _masked(f"{provider}: HTTP {status} {fault.code}: {fault.message}", secrets)
    if status == 429 and fault.code.lower() not in QUOTA_CODES:
        return TransientError(text, parse_retry_after(response.headers))
    if status in (408, 425) or status >= 500:
        return TransientError(text, parse_retry_after(response.headers))
    return PermanentError(text)


AUDIO_TYPES = ("audio/", "application/octet-stream", "binary/octet-stream")


async def stream_audio(
    client: httpx.AsyncClient,
    request: httpx.Request,
    *,
    provider: str,
    dest: Path,
    parse_error: ErrorParser,
    secrets: list[str],
    check: Callable[[httpx.Response], None] | None = None,
    total_timeout: float | None = None,
) -> httpx.Headers:
    """Send ``request``; stream a 2xx audio body to ``dest`` (atomically) and prove it decodes.

    Raises ``PermanentError`` or ``TransientError`` per the module rules; httpx transport errors
    propagate for the retry loop to classify. ``check`` may inspect a 2xx response's headers.
    ``total_timeout`` bounds the whole exchange (a server trickling bytes cannot hold us forever).
    """
    started = time.monotonic()
    kind: str | None = "other"
    try:
        async with asyncio.timeout(total_timeout):
            headers = await _stream_audio(
                client,
                request,
                provider=provider,
                dest=dest,
                parse_error=parse_error,
                secrets=secrets,
                check=check,
            )
        kind = None
        return headers
    except TimeoutError:
        kind = "timeout"
        raise TransientError(f"{provider}: timed out after {total_timeout:g}s in total") from None
    except PermanentError:
        kind = "permanent"
        raise
    except TransientError:
        kind = "transient"
        raise
    except httpx.TimeoutException:
        kind = "timeout"
        raise
    except httpx.TransportError:
        kind = "network"
        raise
    except asyncio.CancelledError:
        kind = "cancelled"
        raise
    finally:
        if kind != "cancelled":
            metrics.provider_request(provider, time.monotonic() - started, kind)


async def _stream_audio(
    client: httpx.AsyncClient,
    request: httpx.Request,
    *,
    provider: str,
    dest: Path,
    parse_error: ErrorParser,
    secrets: list[str],
    check: Callable[[httpx.Response], None] | None,
) -> httpx.Headers:
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
    started = time.monotonic()
    try:
        response = await client.send(request, stream=True)
        try:
            if not response.is_success:
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) >= MAX_ERROR_BODY:
                        break
                raise classify(provider, response, body, parse_error, secrets)
            if check is not None:
                check(response)
            ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if not ctype.startswith(AUDIO_TYPES):
                head = (await response.aread())[:120].decode("utf-8", errors="replace")
                raise TransientError(
                    _masked(
                        f"{provider}: HTTP {response.status_code} returned {ctype or 'no content-type'}, "
                        f"not audio: {head!r}",
                        secrets,
                    )
                )
            size = 0
            with open(tmp, "wb") as fh:
                async for chunk in response.aiter_bytes(1 << 16):
                    fh.write(chunk)
                    size += len(chunk)
        finally:
            await response.aclose()
        try:
            await validate_audio(tmp)
        except InvalidAudio as exc:
            raise TransientError(
                f"{provider}: the response ({size} bytes of {ctype}) is not valid audio: {exc}"
            ) from None
        os.replace(tmp, dest)
        logger.debug(
            "{} answered {} bytes of {} in {:.2f}s", provider, size, ctype, time.monotonic() - started
        )
        return response.headers
    finally:
        tmp.unlink(missing_ok=True)
