"""What a finished attempt becomes, recorded by the audio_queue SQL functions.

- a result: ``complete_job`` (batched, see :mod:`worker.queue.completions`);
- lease lost or cancel requested (``Outcome.LOST``), or shutdown's grace over (``ABANDONED``):
  ``release_job`` hands the job back without spending an attempt (or ends it when a cancel was
  asked);
- a child process ended by a signal (:class:`ChildKilled`) while the worker is shutting down:
  released too. Heroku signals every process of the dyno at once, so ffmpeg or espeak-ng dies of
  the same SIGTERM the worker gets; that is the platform stopping us, not the job failing;
- timeout: a retryable failure;
- an exception: a failure whose class decides retry or not (:mod:`worker.errors`).

A refused call means the job is no longer this attempt's: its work is discarded (``ctx.discards``)
and nothing of it is published. The ``_v2`` functions (migration 0013) say why a call did not
count (a cancel, or a lost lease) without a second read of the row. Every outcome also goes to the
observer (metrics, webhook wake-up), which is never allowed to fail a job.
"""

from __future__ import annotations

import asyncio
import errno
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from worker.config import WorkerSettings
from worker.errors import ChildKilled, JobError, PayloadError, PermanentError, signal_name
from worker.logs import redact
from worker.observe.observer import Observer
from worker.queue.completions import CompletionBatcher
from worker.queue.db import queue
from worker.queue.handlers import JobContext
from worker.queue.retry import RetryingDb, first_line
from worker.queue.supervise import Outcome

# A child and the worker get the platform's SIGTERM at the same moment, but the child's death may be
# seen first: a child killed by one of these waits this long for the worker's own stop to begin.
SHUTDOWN_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})
SIGNAL_RACE_S = 1.0


# The SQL functions' answers (complete_job_v2, release_job_v2) as the observer's outcomes.
OBSERVED = {
    "completed": "completed",
    "retrying": "retrying",
    "failed": "failed",
    "released": "released",
    "cancelled": "cancelled",
    "lost": "refused",
}
# OSErrors of the worker's own writes that another attempt may not meet, in the user's words.
RESOURCE_ERRNOS = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk full", errno.ENOMEM: "out of memory"}
REFUSED = {"cancelled": "a cancel was requested", "lost": "lease lost: the job is another's"}


@dataclass(frozen=True)
class Failure:
    """A failed attempt: the message users see, whether it may be retried, and the log's word for it."""

    message: str
    retryable: bool
    kind: str


def failure_of(work: asyncio.Task[Any]) -> Failure | None:
    """How the finished ``work`` failed, or None when it returned a result."""
    if work.cancelled():
        return Failure("the job's work was cancelled", True, "failed (retryable)")
    exc = work.exception()
    if exc is None:
        return None
    if isinstance(exc, PayloadError):
        return Failure(redact(str(exc)), False, "payload rejected")
    if isinstance(exc, JobError):
        permanent = isinstance(exc, PermanentError) or not exc.retryable
        return Failure(
            redact(str(exc)), exc.retryable, "failed permanently" if permanent else "failed (retryable)"
        )
    if isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS:
        # The worker's own writes (a download, a provider answer, a temp file) ran out of a
        # resource: the same words as ffmpeg's (worker.render.ffmpeg_process), another try may fit.
        where = f" writing {Path(exc.filename).name}" if isinstance(exc.filename, str) else ""
        message = (
            f"{RESOURCE_ERRNOS[exc.errno]}{where} ({errno.errorcode[exc.errno]}); the job will be retried"
        )
        logger.warning("{}", message)
        return Failure(redact(message), True, "failed (retryable)")
    logger.opt(exception=exc).error("handler raised {}", type(exc).__name__)
    return Failure(redact(f"unexpected error: {type(exc).__name__}: {exc}"), True, "failed (retryable)")


class OutcomeRecorder:
    def __init__(
        self, db: RetryingDb, settings: WorkerSettings, observer: Observer, stopping: asyncio.Event
    ) -> None:
        self.db = db
        self.stopping = stopping
        self.settings = settings
        self.observer = observer
        self.completions = CompletionBatcher(
            send_many=lambda done: db(queue.complete_jobs_v2, done),
            send_one=lambda job, result: db(queue.complete_job_v2, job, result=result),
        )

    async def record(
        self, job: queue.Job, ctx: JobContext, work: asyncio.Task[Any], outcome: Outcome, elapsed: float
    ) -> None:
        """Record the attempt's outcome in the database, then observe it."""
        if outcome in (Outcome.LOST, Outcome.ABANDONED):
            await self._release(job, ctx, outcome, elapsed)
        elif outcome is Outcome.TIMEOUT:
            msg = f"timed out after {self.settings.job_timeout_ms} ms (JOB_TIMEOUT_MS)"
            await self._fail(job, ctx, Failure(msg, True, "timeout"), elapsed)
        elif (killed := await self._killed_by_shutdown(work)) is not None:
            logger.info("{} while the worker is stopping: the job goes back to the queue", killed)
            await self._release(job, ctx, Outcome.ABANDONED, elapsed)
        elif (failure := failure_of(work)) is not None:
            await self._fail(job, ctx, failure, elapsed)
        else:
            await self._complete(job, ctx, work.result(), elapsed)

    async def _killed_by_shutdown(self, work: asyncio.Task[Any]) -> ChildKilled | None:
        """The work's :class:`ChildKilled` if the signal came with this worker's shutdown, else None."""
        exc = None if work.cancelled() else work.exception()
        if not isinstance(exc, ChildKilled):
            return None
        if not self.stopping.is_set():
            if exc.signum not in SHUTDOWN_SIGNALS:
                return None
            try:
                await asyncio.wait_for(self.stopping.wait(), SIGNAL_RACE_S)
            except TimeoutError:
                logger.info("{} but this worker was not asked to stop: a failure", signal_name(exc.signum))
                return None
        return exc

    async def _complete(
        self, job: queue.Job, ctx: JobContext, result: dict[str, Any], elapsed: float
    ) -> None:
        try:
            reason = await self.completions.complete(job, result)
        except TypeError as exc:  # result not JSON-able: a handler bug, not the job's fault
            msg = redact(f"handler returned a result that is not JSON: {exc}")
            await self._fail(job, ctx, Failure(msg, False, "failed permanently"), elapsed)
            return
        if reason == "completed":
            logger.info("job completed in {:.2f}s (attempt {})", elapsed, job.attempts)
        else:
            await discard(ctx)
            logger.warning("completion refused ({}): work discarded", REFUSED[reason])
        self._observe(job, OBSERVED[reason], elapsed, ctx)

    async def _fail(self, job: queue.Job, ctx: JobContext, failure: Failure, elapsed: float) -> None:
        await discard(ctx)
        reason = await self.db(queue.complete_job_v2, job, error=failure.message, retryable=failure.retryable)
        if failure.kind == "timeout":
            logger.warning("job {}", failure.message)
        else:
            logger.warning(
                "job {} after {:.2f}s (attempt {}/{}): {}",
                failure.kind,
                elapsed,
                job.attempts,
                job.max_attempts,
                failure.message,
            )
        if reason in REFUSED:
            logger.warning("the failure was not recorded ({})", REFUSED[reason])
        counted = reason in ("retrying", "failed") and failure.kind == "timeout"
        self._observe(job, "timeout" if counted else OBSERVED[reason], elapsed, ctx)

    async def _release(self, job: queue.Job, ctx: JobContext, outcome: Outcome, elapsed: float) -> None:
        await discard(ctx)
        reason = await self.db(queue.release_job_v2, job)
        logger.info(
            "job {} after {:.2f}s: {}",
            "released" if outcome is Outcome.ABANDONED else "stopped",
            elapsed,
            {
                "released": "handed back to the queue",
                "cancelled": "ended as cancelled, as requested",
                "lost": "it is no longer ours",
            }[reason],
        )
        self._observe(job, OBSERVED[reason], elapsed, ctx)

    def _observe(self, job: queue.Job, outcome: str, elapsed: float, ctx: JobContext) -> None:
        """Tell the observer (metrics, webhook wake-up); it is never allowed to fail a job."""
        try:
            self.observer.job_finished(job, outcome, elapsed, ctx)
        except Exception as exc:
            logger.opt(exception=exc).error("observer failed on outcome {}: {}", outcome, redact(str(exc)))


async def discard(ctx: JobContext) -> None:
    """Run the attempt's discard hooks (delete what it published); failures are only logged."""
    for cleanup in ctx.discards:
        try:
            await cleanup()
        except Exception as exc:
            logger.error("cleanup of a discarded attempt failed: {}", first_line(exc))
