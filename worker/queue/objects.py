"""Objects an attempt noted before uploading and nobody deleted (its process died): deleted with
the handler module's ``sweep`` hook, then taken off the job's ``pending_objects`` list.

Two callers: the job runner, for the claimed job's own leftovers before its handler runs, and the
rescue leader, for finished jobs (``audio_queue.orphaned_objects``).
"""

from __future__ import annotations

import time
import uuid

from loguru import logger

from worker.observe.http import DB_CHECK_S
from worker.queue.db import queue
from worker.queue.handlers import Sweeper
from worker.queue.retry import RetryingDb, first_line

SWEEP_BATCH = 100  # finished jobs with orphaned objects swept per rescue round


class ObjectSweeper:
    def __init__(self, db: RetryingDb, sweep: Sweeper) -> None:
        self.db = db
        self.sweep = sweep

    async def sweep_job(self, job_id: uuid.UUID, objects: list[dict[str, str]], why: str) -> bool:
        """Delete ``objects``, then take them off the job's list. False (logged) when storage kept
        them: they stay listed and are tried again later."""
        names = ", ".join(f"{o.get('bucket')}/{o.get('key')}" for o in objects)
        try:
            await self.sweep(objects)
        except Exception as exc:
            logger.error(
                "could not delete {} object(s) {} ({}): {}; will try again",
                len(objects),
                why,
                names,
                first_line(exc),
            )
            return False
        await self.db(queue.forget_objects, job_id, objects)
        logger.info("deleted {} object(s) {}: {}", len(objects), why, names)
        return True

    async def sweep_finished(self, until: float) -> None:
        """Finished jobs still listing objects (an attempt died after uploading and no attempt
        follows). Stops at the first storage failure: storage is then likely down for all."""
        for job_id, status, objects in await self.db(queue.orphaned_objects, SWEEP_BATCH, until=until):
            with logger.contextualize(job_id=str(job_id)):
                if not await self.sweep_job(job_id, objects, f"left by a dead attempt of this {status} job"):
                    return


async def forget_objects(db: RetryingDb, job: queue.Job, objects: list[dict[str, str]]) -> None:
    """``ctx.forget_objects`` for a running job: best effort, a stale entry only costs a repeated,
    harmless delete later."""
    try:
        await db(queue.forget_objects, job.id, objects, until=time.monotonic() + DB_CHECK_S)
    except Exception as exc:
        logger.warning("could not take deleted objects off the job's list: {}", first_line(exc))
