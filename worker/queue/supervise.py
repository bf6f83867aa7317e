"""Supervision of one running job: wait for its work, heartbeat the lease, enforce JOB_TIMEOUT_MS.

The lease is renewed every LEASE_SECONDS/3 (``update_job_progress``), and progress is sent at most
once a second. A refused heartbeat (lease lost, cancel requested) or the timeout cancels the work;
the outcome then says why, and :mod:`worker.queue.outcomes` records it.
"""

from __future__ import annotations

import asyncio
import enum
import time
from typing import Any

import psycopg
from loguru import logger

from worker.config import WorkerSettings
from worker.queue.db import queue
from worker.queue.handlers import JobContext
from worker.queue.retry import RetryingDb, first_line

PROGRESS_INTERVAL_S = 1.0  # progress is sent at most this often (heartbeats are rarer)
ABANDON_WAIT_S = 5.0  # how long a cancelled handler gets to clean up its children


class Outcome(enum.Enum):
    DONE = "done"  # the work ended by itself: a result or an exception
    LOST = "lost"  # a heartbeat was refused: lease lost or cancel requested
    TIMEOUT = "timeout"  # JOB_TIMEOUT_MS passed
    ABANDONED = "abandoned"  # shutdown's grace ended first


async def supervise(
    db: RetryingDb,
    settings: WorkerSettings,
    job: queue.Job,
    ctx: JobContext,
    work: asyncio.Task[Any],
    started: float,
    abandoning: asyncio.Event,
) -> Outcome:
    """Wait for ``work``, heartbeating, until it ends, its lease is lost or it times out."""
    deadline = started + settings.job_timeout_ms / 1000
    next_beat = started + settings.heartbeat_seconds
    sent = (ctx.progress, ctx.stage)
    last_sent = started  # the lease was last renewed then (claim or heartbeat)
    while True:
        now = time.monotonic()
        wait = min(deadline, next_beat, now + PROGRESS_INTERVAL_S) - now
        done, _ = await asyncio.wait({work}, timeout=max(wait, 0))
        if done:
            return Outcome.ABANDONED if work.cancelled() and abandoning.is_set() else Outcome.DONE
        now = time.monotonic()
        if now >= deadline:
            await stop_work(work)
            return Outcome.TIMEOUT
        state = (ctx.progress, ctx.stage)
        if now >= next_beat or (state != sent and now - last_sent >= PROGRESS_INTERVAL_S):
            try:
                ok = await db(
                    queue.update_job_progress,
                    job,
                    ctx.progress,
                    ctx.stage,
                    until=last_sent + settings.lease_seconds,
                )
            except psycopg.Error as exc:
                logger.warning("heartbeat failed: {}", first_line(exc))
                ok = False
            if not ok:
                logger.warning("heartbeat refused (lease lost or cancel requested): stopping the work")
                await stop_work(work)
                return Outcome.LOST
            sent, last_sent = state, now
            next_beat = now + settings.heartbeat_seconds


async def stop_work(work: asyncio.Task[Any]) -> None:
    """Cancel the work and give it ABANDON_WAIT_S to kill its children and clean up."""
    work.cancel()
    done, _ = await asyncio.wait({work}, timeout=ABANDON_WAIT_S)
    if not done:
        logger.error("handler ignored cancellation for {}s; abandoning it", ABANDON_WAIT_S)
