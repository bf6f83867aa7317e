"""Process-wide client-side rate limits, one sliding window per provider.

State sits behind a ``threading.Lock`` (not an asyncio primitive) so one limiter serves every event
loop and thread of the process. Each caller reserves the earliest moment at which granting it keeps
at most ``limit`` grants inside any ``window`` seconds, then sleeps until that moment.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque

from loguru import logger


class SlidingWindowLimiter:
    """At most ``limit`` acquisitions in any ``window``-second interval."""

    def __init__(self, limit: int, window: float) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self._grants: deque[float] = deque()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Book a slot; return how many seconds the caller must wait before using it."""
        with self._lock:
            now = time.monotonic()
            while self._grants and self._grants[0] <= now - self.window:
                self._grants.popleft()
            at = now
            if len(self._grants) >= self.limit:
                at = max(at, self._grants[-self.limit] + self.window)
            self._grants.append(at)
            return at - now

    async def acquire(self, name: str = "") -> None:
        wait = self.reserve()
        if wait > 0:
            logger.debug("rate limit {}: waiting {:.3f}s", name, wait)
            await asyncio.sleep(wait)


_limiters: dict[str, SlidingWindowLimiter] = {}
_registry_lock = threading.Lock()


def limiter_for(provider: str, limit: int, window: float) -> SlidingWindowLimiter:
    """The process-wide limiter of ``provider``; recreated if its configuration changed."""
    with _registry_lock:
        current = _limiters.get(provider)
        if current is None or (current.limit, current.window) != (limit, window):
            current = _limiters[provider] = SlidingWindowLimiter(limit, window)
        return current
