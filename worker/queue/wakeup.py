"""LISTEN for new jobs: a dedicated connection sets the claim loop's wake-up event on every NOTIFY.

Polling (POLL_INTERVAL_MS) stays the fallback: without a LISTEN URL (a transaction pooler) or
while the connection is down, new jobs are found at the next poll.
"""

from __future__ import annotations

import asyncio

import psycopg
from loguru import logger

from worker.queue.db.queue import NOTIFY_CHANNEL
from worker.queue.retry import first_line

FIRST_DELAY_S = 0.2
MAX_DELAY_S = 10.0


async def listen_for_jobs(listen_url: str | None, wake: asyncio.Event, stopping: asyncio.Event) -> None:
    """Set ``wake`` on every NOTIFY until ``stopping``; reconnect with backoff when the connection drops."""
    if listen_url is None:
        return
    delay = FIRST_DELAY_S
    while not stopping.is_set():
        try:
            conn = await psycopg.AsyncConnection.connect(
                listen_url, autocommit=True, application_name="audio-worker listen"
            )
            async with conn:
                await conn.execute(f"listen {NOTIFY_CHANNEL}")
                delay = FIRST_DELAY_S
                wake.set()  # anything enqueued while we were not listening
                async for _ in conn.notifies():
                    wake.set()
        except psycopg.OperationalError as exc:
            logger.warning(
                "LISTEN connection lost ({}); polling until it is back in {:.1f}s",
                first_line(exc, "closed"),
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY_S)
