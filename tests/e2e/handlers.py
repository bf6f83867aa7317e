"""Handlers for pipeline tests (JOB_HANDLER=tests.e2e.handlers:...)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import psycopg

from worker.job.pipeline import prepare, render_job
from worker.queue.db.queue import Job
from worker.queue.handlers import JobContext

__all__ = ["cancel_after_upload", "prepare"]


def _cancel(job_id: str) -> None:
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("select audio_queue.cancel_job(%s)", (job_id,))


async def cancel_after_upload(job: Job, ctx: JobContext) -> dict[str, Any]:
    """The real pipeline, then the job is cancelled (as a user would, at the worst moment: after
    both files are stored, before the completion): the claim loop's completion is refused."""
    result = await render_job(job, ctx)
    await asyncio.to_thread(_cancel, str(job.id))
    return result
