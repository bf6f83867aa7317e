"""Handlers for the observability tests' worker subprocesses."""

from __future__ import annotations

from worker.queue.db.queue import Job
from worker.queue.handlers import JobContext, sleep


async def with_urls(job: Job, ctx: JobContext) -> dict:
    """``worker.queue.handlers.sleep``, then a result with URLs like the pipeline's."""
    await sleep(job, ctx)
    return {"wav_url": f"https://cdn.test/{job.id}.wav", "mp3_url": f"https://cdn.test/{job.id}.mp3"}
