"""The completion webhook: a signed JSON POST when a job ends, sent in the background.

Scheme (also in the README):

- ``POST WEBHOOK_URL`` with ``Content-Type: application/json`` and the body
  ``{"job_id", "status", "wav_url", "mp3_url", "result_url", "error", "attempts", "track_id",
  "user_id", "completed_at"}``; ``status`` is ``completed``, ``failed`` or ``cancelled``.
- ``X-Audio-Worker-Delivery``: a UUID, the same on every retry of one notice (deduplicate on it).
- ``X-Audio-Worker-Timestamp``: unix seconds when this attempt was signed.
- With WEBHOOK_SECRET: ``X-Audio-Worker-Signature: sha256=<hex>``, the HMAC-SHA256 with the secret
  as key of ``<timestamp> + "." + <the exact body bytes>``.
- Retried WEBHOOK_ATTEMPTS times in all on connection errors, timeouts, 408, 429 and 5xx (backoff
  1 s, 2 s, 4 s ... capped at 30 s); any other answer ends it (2xx: delivered).

Deliveries are tasks of their own: they never delay a job's completion or the next claim. At
shutdown the worker waits at most a few seconds for those in flight, then drops them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from loguru import logger

from worker.logs import redact

SIGNATURE_HEADER = "X-Audio-Worker-Signature"
TIMESTAMP_HEADER = "X-Audio-Worker-Timestamp"
DELIVERY_HEADER = "X-Audio-Worker-Delivery"
MAX_PENDING = 1000  # notices beyond this many in flight are dropped (and counted), not queued
CONCURRENCY = 16
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


def _where(url: str) -> str:
    u = httpx.URL(url)
    return f"{u.scheme}://{u.host}{'' if u.port is None else f':{u.port}'}"  # never the path, query or userinfo


class Webhooks:
    def __init__(self, url: str, secret: str | None, timeout_s: float, attempts: int,
                 on_result: Callable[[str], None] | None = None) -> None:
        self.url, self.secret, self.timeout_s, self.attempts = url, secret, timeout_s, attempts
        self.where = _where(url)
        self._on_result = on_result or (lambda _r: None)
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._client: httpx.AsyncClient | None = None

    def send(self, notice: dict[str, Any]) -> None:
        """Queue ``notice`` for delivery and return at once."""
        if len(self._tasks) >= MAX_PENDING:
            logger.warning("webhook: {} notices already in flight; dropping the one for job {}", MAX_PENDING,
                           notice.get("job_id"))
            self._on_result("dropped")
            return
        body = json.dumps(notice, separators=(",", ":"), default=str).encode()
        task = asyncio.create_task(self._deliver(str(notice.get("job_id")), body), name="webhook")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def _deliver(self, job_id: str, body: bytes) -> None:
        delivery = str(uuid.uuid4())
        async with self._slots:
            if self._client is None:
                self._client = httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False)
            for attempt in range(1, self.attempts + 1):
                ts = str(int(time.time()))
                headers = {"Content-Type": "application/json", "User-Agent": "audio-worker",
                           DELIVERY_HEADER: delivery, TIMESTAMP_HEADER: ts}
                if self.secret:
                    headers[SIGNATURE_HEADER] = sign(self.secret, ts, body)
                try:
                    r = await self._client.post(self.url, content=body, headers=headers)
                    status, why = r.status_code, f"HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    msg = str(exc).replace(self.url, self.where)  # the URL may carry a token
                    status, why = None, redact(type(exc).__name__ + (f": {msg}" if msg else ""))
                if status is not None and 200 <= status < 300:
                    logger.debug("webhook for job {} delivered to {} (attempt {})", job_id, self.where, attempt)
                    self._on_result("delivered")
                    return
                retry = status is None or status >= 500 or status in RETRY_STATUSES
                if not retry or attempt == self.attempts:
                    logger.warning("webhook for job {} to {} failed after {} attempt(s): {}", job_id, self.where,
                                   attempt, why)
                    self._on_result("failed")
                    return
                delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1))
                logger.info("webhook for job {} to {}: {}; retrying in {:g}s", job_id, self.where, why, delay)
                await asyncio.sleep(delay)

    async def close(self, wait_s: float) -> None:
        """Wait up to ``wait_s`` for deliveries in flight, drop the rest, close the client."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=max(wait_s, 0))
            if pending:
                logger.warning("webhook: dropping {} undelivered notice(s) at shutdown", len(pending))
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
