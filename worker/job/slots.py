"""Fleet-wide provider slots for one job, kept in Postgres through the claim loop's pool.

The providers ask :data:`worker.providers.ratelimit.fleet_slots` for a slot before each paid
request; this module binds that to ``audio_queue.acquire_provider_slot`` for the running job, and
shows a wait in the job's stage (``tts: waiting for a elevenlabs slot``) so operators see it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from worker.providers import ProviderSettings
from worker.providers.ratelimit import FleetSlots, fleet_slots
from worker.queue.db import queue
from worker.queue.db.queue import Job
from worker.queue.handlers import JobContext


@dataclass
class PostgresSlots:
    """The SlotBackend of one job: the queue's SQL functions, called with the claim loop's retries."""

    ctx: JobContext
    job_id: uuid.UUID

    async def acquire(
        self,
        provider: str,
        account: str,
        max_concurrent: int | None,
        max_requests: int | None,
        window_seconds: float | None,
        lease_seconds: int,
    ) -> tuple[Any, float]:
        assert self.ctx.db is not None
        lease, wait = await self.ctx.db(
            queue.acquire_provider_slot,
            provider=provider,
            account=account,
            max_concurrent=max_concurrent,
            max_requests=max_requests,
            window_seconds=window_seconds,
            lease_seconds=lease_seconds,
            job_id=self.job_id,
            worker_id=self.ctx.worker_id,
        )
        return lease, wait

    async def renew(self, lease: Any, lease_seconds: int) -> bool:
        assert self.ctx.db is not None
        return bool(await self.ctx.db(queue.renew_provider_slot, lease, lease_seconds))

    async def release(self, lease: Any) -> None:
        assert self.ctx.db is not None
        await self.ctx.db(queue.release_provider_slot, lease)


@contextmanager
def provider_slots(job: Job, ctx: JobContext, settings: ProviderSettings) -> Iterator[None]:
    """Within this block the job's provider requests take fleet-wide slots (when run by the claim
    loop; a handler run without one keeps the per-process limits)."""
    if ctx.db is None:
        yield
        return
    resume: list[str | None] = []

    def on_wait(provider: str | None) -> None:
        if provider is not None:
            resume.append(ctx.stage)
            ctx.report(stage=f"{ctx.stage or 'provider'}: waiting for a {provider} slot")
        elif resume:
            ctx.report(stage=resume.pop())

    slots = FleetSlots(
        PostgresSlots(ctx, job.id),
        lease_seconds=settings.provider_slot_lease_s,
        wait_max_s=settings.provider_slot_wait_max_s,
        on_wait=on_wait,
    )
    token = fleet_slots.set(slots)
    try:
        yield
    finally:
        fleet_slots.reset(token)
