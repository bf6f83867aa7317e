"""Handlers for the observability tests' worker subprocesses."""

from __future__ import annotations

from tests.handlers import sleep
from worker.queue.db.queue import Job
from worker.queue.handlers import JobContext


async def with_urls(job: Job, ctx: JobContext) -> dict:
    """``tests.handlers.sleep``, then a result with URLs like the pipeline's."""
    await sleep(job, ctx)
    return {"wav_url": f"https://cdn.test/{job.id}.wav", "mp3_url": f"https://cdn.test/{job.id}.mp3"}
