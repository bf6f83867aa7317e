"""Handlers the worker subprocesses load in tests (JOB_HANDLER=tests.handlers:record)."""

from __future__ import annotations

import os

from worker.errors import PermanentError
from worker.queue.db.queue import Job
from worker.queue.handlers import JobContext, sleep


def _log(event: str, job: Job) -> None:
    path = os.path.join(os.environ["EXEC_LOG_DIR"], f"{os.getpid()}.log")
    with open(path, "a") as f:  # one short O_APPEND write per line: safe across processes
        f.write(f"{event} {job.id} {job.attempts}\n")


async def record(job: Job, ctx: JobContext) -> dict:
    """Run ``worker.queue.handlers.sleep`` and log ``start``/``done`` lines to $EXEC_LOG_DIR/<pid>.log."""
    _log("start", job)
    if job.payload.get("fail") == "leak":
        raise PermanentError(f"could not connect with {os.environ['DATABASE_URL']}")
    result = await sleep(job, ctx)
    _log("done", job)
    if job.payload.get("fail") == "notjson":  # a handler bug: a result that cannot be stored
        return {"value": object()}
    return result
