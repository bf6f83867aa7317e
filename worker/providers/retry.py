"""Exponential backoff with jitter around one provider request, honouring Retry-After."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx
from loguru import logger

from worker.errors import RetryableError
from worker.providers.base import TransientError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """``max_retries`` retries after the first attempt; sleeps grow as ``base * 2**n`` with jitter."""

    max_retries: int = 3
    base_delay_s: float = 2.0
    max_delay_s: float = 30.0
    retry_after_max_s: float = 120.0

    def backoff(self, retry: int) -> float:
        """Sleep before retry number ``retry`` (0-based): uniform in [d/2, d], d = min(cap, base*2**n)."""
        ceiling = min(self.max_delay_s, self.base_delay_s * (2**retry))
        return random.uniform(ceiling / 2, ceiling)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, httpx.TransportError):
        return f"connection failed ({type(exc).__name__}: {exc})"[:300]
    if isinstance(exc, httpx.RequestError):
        return f"request failed ({type(exc).__name__}: {exc})"[:300]
    return str(exc)


async def with_retries(attempt: Callable[[], Awaitable[T]], *, policy: RetryPolicy, what: str) -> T:
    """Await ``attempt()`` until it succeeds, a non-transient error escapes, or retries run out.

    Transient failures (``TransientError``, httpx timeouts, transport and decoding errors) are retried;
    when retries are exhausted, or the server asks to wait longer than ``retry_after_max_s``, a
    ``RetryableError`` is raised so the queue retries the whole job later.
    """
    retry = 0
    while True:
        try:
            return await attempt()
        except (TransientError, httpx.RequestError) as exc:
            reason = _describe(exc)
            hint = exc.retry_after if isinstance(exc, TransientError) else None
            if retry >= policy.max_retries:
                raise RetryableError(f"{what}: {reason} (gave up after {retry + 1} attempts)") from None
            if hint is not None and hint > policy.retry_after_max_s:
                raise RetryableError(
                    f"{what}: {reason} (server asks to wait {hint:.0f}s, more than {policy.retry_after_max_s:.0f}s)"
                ) from None
            delay = max(policy.backoff(retry), hint or 0.0)
            logger.info("{}: {}; retry {}/{} in {:.2f}s", what, reason, retry + 1, policy.max_retries, delay)
            await asyncio.sleep(delay)
            retry += 1
