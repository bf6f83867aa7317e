"""One claimed job, start to end: wire its context to its lease, run its work under supervision,
record the outcome. The work is first the sweep of what a dead earlier attempt left (the claimed
row's ``pending_objects``), then the handler; both are supervised as one task, so the sweep is
heartbeated and cancellable too."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

from loguru import logger

from worker.config import WorkerSettings
from worker.queue.db import queue
from worker.queue.handlers import Handler, JobContext
from worker.queue.objects import ObjectSweeper, forget_objects
from worker.queue.outcomes import OutcomeRecorder
from worker.queue.retry import RetryingDb, first_line
from worker.queue.supervise import supervise


class JobRunner:
    def __init__(
        self,
        db: RetryingDb,
        settings: WorkerSettings,
        handler: Handler,
        sweeper: ObjectSweeper | None,
        outcomes: OutcomeRecorder,
        worker_id: str,
    ) -> None:
        self.db = db
        self.settings = settings
        self.handler = handler
        self.sweeper = sweeper
        self.outcomes = outcomes
        self.worker_id = worker_id
        self.abandoning = asyncio.Event()  # shutdown's grace is over: work is cancelled, jobs released
        self.works: dict[uuid.UUID, asyncio.Task[Any]] = {}

    async def run(self, job: queue.Job, on_work_over: Callable[[], None] | None = None) -> None:
        """Process ``job``; never raises (a database that stayed away is logged: the lease expires).
        ``on_work_over`` is called once the work has ended, before its outcome is recorded."""
        with logger.contextualize(job_id=str(job.id)):
            ctx = JobContext(
                worker_id=self.worker_id,
                recorder=lambda objects: self.db(queue.record_objects, job, objects),
                forgetter=lambda objects: forget_objects(self.db, job, objects),
                db=self.db,
            )
            started = time.monotonic()
            work = asyncio.create_task(self._work(job, ctx))
            self.works[job.id] = work
            try:
                outcome = await supervise(self.db, self.settings, job, ctx, work, started, self.abandoning)
                if on_work_over is not None:
                    on_work_over()
                await self.outcomes.record(job, ctx, work, outcome, time.monotonic() - started)
            except Exception as exc:  # the database stayed away past every deadline
                logger.error(
                    "could not record the outcome: {}; the lease will expire and the job will be rescued",
                    first_line(exc),
                )
            finally:
                self.works.pop(job.id, None)

    async def _work(self, job: queue.Job, ctx: JobContext) -> dict[str, Any]:
        if job.pending_objects and self.sweeper is not None:
            await self.sweeper.sweep_job(job.id, job.pending_objects, "left by an earlier attempt")
        if job.rejected is not None:  # a payload that could not be decoded: fails at once, alone
            raise job.rejected
        return await self.handler(job, ctx)

    def abandon_all(self) -> None:
        """Shutdown's grace is over: cancel every job's work; each is then released."""
        self.abandoning.set()
        for work in list(self.works.values()):
            work.cancel()
