"""The fleet's rescuer: every RESCUE_INTERVAL_SECONDS (jittered), whichever worker wins the
advisory lock runs ``reset_stuck_jobs`` (jobs whose worker stopped heartbeating are requeued or
failed by SQL), then sweeps finished jobs' orphaned objects, then awaits the handler module's
``sweep_abandoned`` hook (what dead processes left outside any job's list)."""

from __future__ import annotations

import asyncio
import random
import time

from loguru import logger

from worker.queue.db import queue
from worker.queue.handlers import AbandonedSweeper
from worker.queue.objects import ObjectSweeper
from worker.queue.retry import RetryingDb, first_line

FIRST_ROUND_MAX_S = 5.0  # the first round starts at a random point of this window (or the interval)


async def rescue_periodically(
    db: RetryingDb,
    interval: float,
    sweeper: ObjectSweeper | None,
    stopping: asyncio.Event,
    sweep_abandoned: AbandonedSweeper | None = None,
) -> None:
    """Run rescue rounds until ``stopping``; a failed round is logged and the next one tried."""
    await asyncio.sleep(random.uniform(0, min(interval, FIRST_ROUND_MAX_S)))
    while not stopping.is_set():
        n = None
        try:
            n = await db(queue.rescue_if_leader, until=time.monotonic() + interval)
            if n:
                logger.warning(
                    "reset_stuck_jobs: {} job(s) whose worker stopped heartbeating were requeued or failed", n
                )
            if n is not None and sweeper is not None:  # we were the leader this round
                await sweeper.sweep_finished(until=time.monotonic() + interval)
        except Exception as exc:
            logger.error("reset_stuck_jobs failed: {}", first_line(exc))
        if n is not None and sweep_abandoned is not None:
            try:
                await sweep_abandoned()
            except Exception as exc:
                logger.error(
                    "could not sweep what dead workers left in storage: {}; will try again", first_line(exc)
                )
        await asyncio.sleep(interval * random.uniform(0.8, 1.2))
