"""Successful completions, sent in batches with no added wait.

The first completion goes out at once; completions that arrive while a call is in flight wait for
it and then go together in one ``complete_jobs_v2`` call (one transaction, one commit). An idle worker
therefore completes each job immediately, and a busy one pays one commit per batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from worker.queue.db.queue import Ended, Job

Send = Callable[[list[tuple[Job, dict[str, Any]]]], Awaitable[list[Ended]]]
SendOne = Callable[[Job, dict[str, Any]], Awaitable[Ended]]


class CompletionBatcher:
    def __init__(self, send_many: Send, send_one: SendOne, max_batch: int = 100) -> None:
        self._send_many = send_many
        self._send_one = send_one
        self._max = max_batch
        self._queue: list[tuple[Job, dict[str, Any], asyncio.Future[Ended]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def complete(self, job: Job, result: dict[str, Any]) -> Ended:
        """Record ``job`` as completed with ``result``; ``completed``, or why it did not count."""
        fut: asyncio.Future[Ended] = asyncio.get_running_loop().create_future()
        self._queue.append((job, result, fut))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return await fut

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[: self._max], self._queue[self._max :]
                await self._send(batch)
        finally:
            self._flusher = None

    async def _send(self, batch: list[tuple[Job, dict[str, Any], asyncio.Future[Ended]]]) -> None:
        if len(batch) == 1:
            job, result, fut = batch[0]
            await self._settle(fut, self._send_one(job, result))
            return
        try:
            reasons = await self._send_many([(j, r) for j, r, _ in batch])
        except Exception:
            # One bad element (a result that is not JSON) must not sink the others: one by one.
            for job, result, fut in batch:
                await self._settle(fut, self._send_one(job, result))
            return
        for (_, _, fut), reason in zip(batch, reasons, strict=True):
            if not fut.done():
                fut.set_result(reason)

    @staticmethod
    async def _settle(fut: asyncio.Future[Ended], call: Awaitable[Ended]) -> None:
        try:
            reason = await call
        except Exception as exc:
            if not fut.done():
                fut.set_exception(exc)
        else:
            if not fut.done():
                fut.set_result(reason)
