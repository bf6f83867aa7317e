"""The dashboard tests' worker handler: scripted sleeps (running jobs with live progress) or the
real pipeline (jobs with a preview to play), chosen by the payload."""

from __future__ import annotations

from typing import Any

from tests.handlers import sleep
from worker.job.pipeline import prepare, render_job, sweep
from worker.queue.db.queue import Job
from worker.queue.handlers import JobContext

__all__ = ["handle", "prepare", "sweep"]


async def handle(job: Job, ctx: JobContext) -> dict[str, Any]:
    """``{"sleep_ms": ...}`` sleeps (reporting progress); anything else is a render spec."""
    if "sleep_ms" in job.payload:
        return await sleep(job, ctx)
    return await render_job(job, ctx)
