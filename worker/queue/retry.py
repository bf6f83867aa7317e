"""Database calls that outlive a dropped connection: each call retried on a fresh pooled
connection with backoff, until the caller's deadline or, once shutdown began, the shutdown's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from loguru import logger
from psycopg_pool import AsyncConnectionPool

from worker.logs import redact

T = TypeVar("T")

FIRST_DELAY_S = 0.05
MAX_DELAY_S = 5.0


def first_line(exc: BaseException, default: str = "") -> str:
    """An exception's first line, secrets masked: what a log line about it shows."""
    text = str(exc).strip()
    return redact(text.splitlines()[0] if text else default or type(exc).__name__)


class RetryingDb:
    """``await db(fn, *args, until=...)`` runs ``fn(conn, *args)`` on a pooled connection; a
    connection failure is retried with backoff, never past ``until`` nor :attr:`give_up_at`."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self.give_up_at: float | None = None  # set at shutdown: no call outlives the grace
        self.log = logger

    async def __call__(
        self, fn: Callable[..., Awaitable[T]], *args: Any, until: float | None = None, **kw: Any
    ) -> T:
        delay = FIRST_DELAY_S
        while True:
            try:
                async with self.pool.connection() as conn:
                    return await fn(conn, *args, **kw)
            except psycopg.OperationalError as exc:
                deadline = min(x for x in (until, self.give_up_at, float("inf")) if x is not None)
                if time.monotonic() + delay > deadline:
                    raise
                self.log.warning("database unavailable ({}); retrying in {:.2f}s", first_line(exc), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_DELAY_S)
