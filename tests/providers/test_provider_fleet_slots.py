"""FleetSlots, the providers' side of fleet-wide limits: the stage while waiting, the lease kept
alive while a request runs, the slot given back whatever happens, and a bounded wait."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from worker.errors import RetryableError
from worker.providers.ratelimit import FleetSlots, Limits, fleet_slots, request_slot

LIMITS = Limits("elevenlabs", "abc123", max_concurrent=1, max_requests=None, window_seconds=None)


class Backend:
    """Grants after ``refusals`` refusals; records renewals and releases."""

    def __init__(self, refusals: int = 0) -> None:
        self.refusals = refusals
        self.renewed = 0
        self.released: list[Any] = []

    async def acquire(self, *args: Any) -> tuple[Any, float]:
        if self.refusals:
            self.refusals -= 1
            return None, 0.01
        return "lease-1", 0.0

    async def renew(self, lease: Any, lease_seconds: int) -> bool:
        self.renewed += 1
        return True

    async def release(self, lease: Any) -> None:
        self.released.append(lease)


def test_a_wait_shows_in_the_stage_and_the_stage_comes_back():
    stages: list[str | None] = []
    backend = Backend(refusals=3)

    async def go() -> None:
        slots = FleetSlots(backend, lease_seconds=3, wait_max_s=5, on_wait=stages.append)
        token = fleet_slots.set(slots)
        try:
            async with request_slot(LIMITS):
                pass
        finally:
            fleet_slots.reset(token)

    asyncio.run(go())
    assert stages == ["elevenlabs", None]  # told once when it started waiting, once when granted
    assert backend.released == ["lease-1"]


def test_the_lease_is_renewed_while_the_request_runs_and_released_on_error():
    backend = Backend()

    async def go() -> None:
        async with FleetSlots(backend, lease_seconds=3).hold(LIMITS):
            await asyncio.sleep(2.2)  # renewals every lease/3 = 1 s
            raise RuntimeError("provider blew up")

    with pytest.raises(RuntimeError):
        asyncio.run(go())
    assert backend.renewed == 2 and backend.released == ["lease-1"]


def test_a_wait_longer_than_the_limit_sends_the_job_back_naming_the_limit():
    async def go() -> None:
        async with FleetSlots(Backend(refusals=10_000), wait_max_s=0.1).hold(LIMITS):
            pass

    with pytest.raises(
        RetryableError, match=r"elevenlabs: no request slot within 0.1 s \(fleet-wide limit: 1 at once\)"
    ):
        asyncio.run(go())
