"""Provider request limits: fleet-wide slots in Postgres for jobs, a process-wide window otherwise.

Under the claim loop every provider request takes a slot from ``audio_queue.acquire_provider_slot``
first (:class:`FleetSlots`, set per job in :data:`fleet_slots`), so concurrency and requests per
window hold for the whole fleet however many dynos run. Without it (``python -m worker render``),
one sliding window per provider in this process:

State sits behind a ``threading.Lock`` (not an asyncio primitive) so one limiter serves every event
loop and thread of the process. Each caller reserves the earliest moment at which granting it keeps
at most ``limit`` grants inside any ``window`` seconds, then sleeps until that moment.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from loguru import logger

from worker.errors import RetryableError


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


# Fleet-wide slots -----------------------------------------------------------------------------


class SlotBackend(Protocol):
    """Where fleet-wide slots live (Postgres, through the claim loop's connection pool)."""

    async def acquire(
        self,
        provider: str,
        account: str,
        max_concurrent: int | None,
        max_requests: int | None,
        window_seconds: float | None,
        lease_seconds: int,
    ) -> tuple[Any, float]: ...

    async def renew(self, lease: Any, lease_seconds: int) -> bool: ...

    async def release(self, lease: Any) -> None: ...


@dataclass
class FleetSlots:
    """The slots of one running job: every provider request it makes takes one first."""

    backend: SlotBackend
    lease_seconds: int = 30
    wait_max_s: float = 120.0
    # Told the provider a job waits for (None when it got its slot): the job's stage shows it.
    on_wait: Callable[[str | None], None] | None = None

    @asynccontextmanager
    async def hold(self, limits: Limits) -> AsyncIterator[None]:
        deadline = time.monotonic() + self.wait_max_s
        waited = False
        while True:
            lease, wait = await self.backend.acquire(
                limits.provider,
                limits.account,
                limits.max_concurrent,
                limits.max_requests,
                limits.window_seconds,
                self.lease_seconds,
            )
            if lease is not None:
                break
            if time.monotonic() + wait > deadline:
                raise RetryableError(
                    f"{limits.provider}: no request slot within {self.wait_max_s:g} s "
                    f"(fleet-wide limit: {limits.describe()}); the job will be retried"
                )
            if not waited and self.on_wait:
                self.on_wait(limits.provider)
            waited = True
            await asyncio.sleep(wait)
        if waited and self.on_wait:
            self.on_wait(None)
        renewer = asyncio.create_task(self._renew(lease))
        try:
            yield
        finally:
            renewer.cancel()
            # Released even when the job is being cancelled: another dyno may be waiting for it.
            await asyncio.shield(self.backend.release(lease))

    async def _renew(self, lease: Any) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            if not await self.backend.renew(lease, self.lease_seconds):
                logger.warning("provider slot lease lost; the fleet limit may be exceeded once")
                return


@dataclass(frozen=True)
class Limits:
    """One provider account's limits. ``account`` is a digest of the API key, never the key."""

    provider: str
    account: str
    max_concurrent: int | None
    max_requests: int | None
    window_seconds: float | None

    def describe(self) -> str:
        parts = []
        if self.max_concurrent is not None:
            parts.append(f"{self.max_concurrent} at once")
        if self.max_requests is not None:
            parts.append(f"{self.max_requests} per {self.window_seconds:g} s")
        return ", ".join(parts) or "none"


def account_of(api_key: str | None) -> str:
    """Which account a key belongs to, as Postgres may store it: 12 hex of its sha256."""
    return hashlib.sha256((api_key or "").encode()).hexdigest()[:12]


fleet_slots: ContextVar[FleetSlots | None] = ContextVar("fleet_slots", default=None)


@asynccontextmanager
async def request_slot(limits: Limits | None) -> AsyncIterator[None]:
    """Hold a slot for one provider request: fleet-wide when the job runs under the claim loop
    (``fleet_slots`` is set), else this process's sliding window (``python -m worker render``)."""
    fleet = fleet_slots.get()
    if limits is None:
        yield
        return
    if fleet is not None:
        async with fleet.hold(limits):
            yield
        return
    if limits.max_requests is not None and limits.window_seconds is not None:
        await limiter_for(limits.provider, limits.max_requests, limits.window_seconds).acquire(
            limits.provider
        )
    yield
