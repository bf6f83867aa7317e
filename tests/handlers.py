"""Handlers for tests and benches (JOB_HANDLER=tests.handlers:record, tests.handlers:noop).

They live here, not in the shipped package: ``sleep`` can SIGKILL its own worker from a payload,
which no production JOB_HANDLER may allow. Workers load them with the repository as their cwd.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from worker.errors import PayloadError, PermanentError, RetryableError
from worker.queue.db.queue import Job
from worker.queue.handlers import JobContext


def _log(event: str, job: Job) -> None:
    path = os.path.join(os.environ["EXEC_LOG_DIR"], f"{os.getpid()}.log")
    with open(path, "a") as f:  # one short O_APPEND write per line: safe across processes
        f.write(f"{event} {job.id} {job.attempts}\n")


async def record(job: Job, ctx: JobContext) -> dict:
    """Run :func:`sleep` and log ``start``/``done`` lines to $EXEC_LOG_DIR/<pid>.log."""
    _log("start", job)
    if job.payload.get("fail") == "leak":
        raise PermanentError(f"could not connect with {os.environ['DATABASE_URL']}")
    result = await sleep(job, ctx)
    _log("done", job)
    if job.payload.get("fail") == "notjson":  # a handler bug: a result that cannot be stored
        return {"value": object()}
    return result


async def noop(job: Job, ctx: JobContext) -> dict[str, Any]:
    """Completes at once. For benchmarks of the queue itself."""
    return {"ok": True}


async def sleep(job: Job, ctx: JobContext) -> dict[str, Any]:
    """A scriptable job for tests: payload ``{"sleep_ms": 200, "first_attempt_ms": 30000,
    "fail": "permanent|retryable|crash|kill", "child": true}``. Unknown keys are ignored; a bad
    ``sleep_ms`` fails the job naming the field."""
    p = job.payload
    ms = p.get("first_attempt_ms", p.get("sleep_ms", 0)) if job.attempts == 1 else p.get("sleep_ms", 0)
    if not isinstance(ms, int | float) or isinstance(ms, bool) or not 0 <= ms <= 3_600_000:
        raise PayloadError("sleep_ms", "must be a number of milliseconds between 0 and 3600000")
    fail = p.get("fail")
    if fail == "kill":  # a poison job: takes the whole worker process down
        os.kill(os.getpid(), signal.SIGKILL)
    proc = None
    if p.get("child"):
        proc = await asyncio.create_subprocess_exec("sleep", str(ms / 1000 + 60))
        ctx.report(stage="child")
    try:
        steps = max(1, int(ms // 100))
        for i in range(steps):
            await asyncio.sleep(ms / 1000 / steps)
            ctx.report(progress=100 * (i + 1) / steps, stage="sleep")
    finally:
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
    if fail == "permanent":
        raise PermanentError("scripted permanent failure")
    if fail == "retryable":
        raise RetryableError("scripted transient failure")
    if fail == "crash":
        raise RuntimeError("scripted unexpected exception")
    return {"slept_ms": ms, "attempt": job.attempts, "child_pid": proc.pid if proc else None}


async def speak(job: Job, ctx: JobContext) -> dict:
    """Speech for ``payload["text"]`` from the configured provider, taken the way the pipeline takes
    it (fleet-wide provider slots included), then ``payload["sleep_ms"]`` of work. For the fairness
    bench: jobs that call a provider without rendering."""
    import tempfile
    from pathlib import Path

    from worker.config import load_settings
    from worker.job.slots import provider_slots
    from worker.providers import ProviderSettings, fetch_speech

    settings = load_settings(ProviderSettings)
    with tempfile.TemporaryDirectory() as tmp, provider_slots(job, ctx, settings):
        await fetch_speech(
            text=job.payload["text"],
            provider=None,
            voice=None,
            model=None,
            out_dir=Path(tmp),
            settings=settings,
        )
    await asyncio.sleep(job.payload.get("sleep_ms", 0) / 1000)
    return {"ok": True}
