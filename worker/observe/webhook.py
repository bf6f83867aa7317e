"""The completion webhook's wire format: a signed JSON POST when a job ends, and one attempt of it.

Scheme (also in the README):

- ``POST WEBHOOK_URL`` with ``Content-Type: application/json`` and the body
  ``{"job_id", "status", "wav_url", "mp3_url", "result_url", "error", "attempts", "track_id",
  "user_id", "completed_at"}``; ``status`` is ``completed``, ``failed`` or ``cancelled``.
- ``X-Audio-Worker-Delivery``: a UUID, the same on every retry of one notice (deduplicate on it).
- ``X-Audio-Worker-Timestamp``: unix seconds when this attempt was signed.
- With WEBHOOK_SECRET: ``X-Audio-Worker-Signature: sha256=<hex>``, the HMAC-SHA256 with the secret
  as key of ``<timestamp> + "." + <the exact body bytes>``.
- Retried WEBHOOK_ATTEMPTS times in all on connection errors, timeouts, 408, 425, 429 and 5xx (backoff
  1 s, 2 s, 4 s ... capped at 30 s); any other answer ends it (2xx: delivered).

Which notices to send, and when to retry them, is the outbox's business (``worker.observe.outbox``,
table ``audio_queue.webhook_outbox``): the notices are rows in Postgres, not tasks in memory.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx

from worker.logs import redact

SIGNATURE_HEADER = "X-Audio-Worker-Signature"
TIMESTAMP_HEADER = "X-Audio-Worker-Timestamp"
DELIVERY_HEADER = "X-Audio-Worker-Delivery"
BACKOFF_BASE_S, BACKOFF_CAP_S = 1.0, 30.0
RETRY_STATUSES = frozenset({408, 425, 429})


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, header: str, tolerance_s: float = 300) -> bool:
    """What a receiver does: constant-time compare, and reject stale timestamps (replays)."""
    try:
        fresh = abs(time.time() - int(timestamp)) <= tolerance_s
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), header)


def where(url: str) -> str:
    """What logs and errors may show of WEBHOOK_URL: scheme, host and port only."""
    u = httpx.URL(url)
    return (
        f"{u.scheme}://{u.host}{'' if u.port is None else f':{u.port}'}"  # never the path, query or userinfo
    )


def body(notice: dict[str, Any]) -> bytes:
    return json.dumps(notice, separators=(",", ":"), default=str).encode()


def headers(delivery_id: str, raw: bytes, secret: str | None) -> dict[str, str]:
    """One attempt's headers, signed now."""
    ts = str(int(time.time()))
    out = {
        "Content-Type": "application/json",
        "User-Agent": "audio-worker",
        DELIVERY_HEADER: delivery_id,
        TIMESTAMP_HEADER: ts,
    }
    if secret:
        out[SIGNATURE_HEADER] = sign(secret, ts, raw)
    return out


def retryable(status: int | None) -> bool:
    """Connection errors and timeouts (None), 408, 425, 429 and 5xx are tried again."""
    return status is None or status >= 500 or status in RETRY_STATUSES


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1, 2, 4 ... capped)."""
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0 ** max(attempt - 1, 0))


async def attempt(
    client: httpx.AsyncClient, url: str, delivery_id: str, raw: bytes, secret: str | None
) -> tuple[int | None, str]:
    """POST once. (HTTP status or None, a reason safe to log: never the URL's path, query or the secret)."""
    try:
        r = await client.post(url, content=raw, headers=headers(delivery_id, raw, secret))
        return r.status_code, f"HTTP {r.status_code}"
    except httpx.HTTPError as exc:
        msg = str(exc)
        for s in {url, str(httpx.URL(url))}:
            msg = msg.replace(s, where(url))  # the URL may carry a token
        q = httpx.URL(url).query.decode()
        if q:
            msg = msg.replace(q, "***")
        return None, redact(type(exc).__name__ + (f": {msg}" if msg else ""))
