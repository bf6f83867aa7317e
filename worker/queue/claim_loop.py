"""The claim loop: wake, claim what the free slots can take, supervise each job, report its outcome.

One ``ClaimLoop`` per process. It owns no queue state: a job's fate is decided by the audio_queue
SQL functions, called through ``worker.queue.db.queue``. What it adds is timing:

- wakes on NOTIFY (a dedicated LISTEN connection) or every POLL_INTERVAL_MS, and whenever a slot frees;
- claims at most as many jobs as free slots, in one call;
- heartbeats each running job every LEASE_SECONDS/3 (and sends progress at most once a second);
  a refused heartbeat (lease lost, cancel requested) or JOB_TIMEOUT_MS stops the work, and nothing
  of that attempt is published;
- every RESCUE_INTERVAL_SECONDS, one worker of the fleet (advisory lock) runs reset_stuck_jobs,
  then sweeps finished jobs' orphaned objects (``audio_queue.orphaned_objects``) with the handler
  module's ``sweep`` hook;
- before a job's handler runs, objects an earlier attempt of it noted but never deleted (the
  claimed row's ``pending_objects``: that attempt's process died) are swept the same way, then
  forgotten; ``ctx.record_objects``/``ctx.forget_objects`` are wired to the job's lease here
  (see ``worker.queue.handlers`` for the contract);
- on SIGTERM/SIGINT stops claiming, gives running jobs SHUTDOWN_GRACE_SECONDS, releases the rest;
- survives database connection loss: every call is retried on a fresh connection with backoff.

Each recorded outcome goes to ``worker.observe.Observer`` (metrics, and a wake-up of the webhook
outbox's delivery loop); with HEALTH_PORT/PORT it also serves /healthz and /metrics.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from loguru import logger

from worker.config import WorkerSettings
from worker.errors import JobError, PayloadError, PermanentError
from worker.logs import redact
from worker.observe import db as observe_db
from worker.observe.http import DB_CHECK_S, HealthSource
from worker.observe.observer import Observer
from worker.queue.completions import CompletionBatcher
from worker.queue.db import queue
from worker.queue.db.connect import ConnectionPlan, make_pool, safe_dsn
from worker.queue.db.migrate import required_version, schema_problem
from worker.queue.handlers import Handler, JobContext, Sweeper

T = TypeVar("T")

PROGRESS_INTERVAL_S = 1.0  # progress is sent at most this often (heartbeats are rarer)
ABANDON_WAIT_S = 5.0  # how long a cancelled handler gets to clean up its children
STARTUP_WAIT_S = 10.0  # how long start-up waits for the database before giving up (Heroku restarts us)
HEALTH_STALE_MIN_S = 30.0  # /healthz fails when the loop has not iterated for max(this, 2 poll intervals)
SWEEP_BATCH = 100  # finished jobs with orphaned objects swept per rescue round


def new_worker_id(prefix: str | None = None) -> str:
    """hostname (or DYNO) + pid + random: a restarted dyno never inherits its old claims."""
    base = prefix or os.environ.get("DYNO") or socket.gethostname()
    return f"{base}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class StartupError(Exception):
    """The worker cannot start (database unreachable, schema out of date); the message says why."""


class ClaimLoop:
    def __init__(
        self,
        settings: WorkerSettings,
        handler: Handler,
        plan: ConnectionPlan,
        worker_id: str | None = None,
        sweep: Sweeper | None = None,
    ) -> None:
        self.settings = settings
        self.handler = handler
        self.sweep = sweep
        self.plan = plan
        self.worker_id = worker_id or new_worker_id(settings.worker_id)
        # +1 with WEBHOOK_URL: room for the webhook outbox's short calls beside the jobs' ones.
        self.pool = make_pool(
            plan, size=settings.max_concurrent_jobs + 2 + (settings.webhook_url is not None)
        )
        self.running: dict[uuid.UUID, asyncio.Task[None]] = {}
        self.work: dict[uuid.UUID, asyncio.Task[Any]] = {}
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.abandoning = False
        self.give_up_at: float | None = None  # during shutdown, database retries stop here
        self.log = logger.bind(worker_id=self.worker_id)
        self.observer = Observer(settings)
        self.last_loop = time.monotonic()  # the claim loop's last iteration, for /healthz
        self.completions = CompletionBatcher(
            send_many=lambda done: self.db(queue.complete_jobs, done),
            send_one=lambda job, result: self.db(queue.complete_job, job, result=result),
        )

    # -- database calls -------------------------------------------------------------------------

    async def db(
        self, fn: Callable[..., Awaitable[T]], *args: Any, until: float | None = None, **kw: Any
    ) -> T:
        """Run ``fn(conn, ...)`` on a pooled connection, retrying connection failures with backoff
        until ``until`` (monotonic) or, during shutdown, the shutdown deadline."""
        delay = 0.05
        while True:
            try:
                async with self.pool.connection() as conn:
                    return await fn(conn, *args, **kw)
            except psycopg.OperationalError as exc:
                deadline = min(x for x in (until, self.give_up_at, float("inf")) if x is not None)
                if time.monotonic() + delay > deadline:
                    raise
                self.log.warning(
                    "database unavailable ({}); retrying in {:.2f}s",
                    redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__),
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the pool and check the schema version; raises StartupError with an operator's message."""
        self.log.info(
            "starting: {} slots, lease {}s, {}",
            self.settings.max_concurrent_jobs,
            self.settings.lease_seconds,
            self.plan.note,
        )
        try:
            await self.pool.open(wait=True, timeout=STARTUP_WAIT_S)
            version = await self.db(queue.schema_version, until=time.monotonic() + STARTUP_WAIT_S)
        except psycopg.Error as exc:
            await self.pool.close()
            raise StartupError(
                f"cannot use the database at {safe_dsn(self.plan.url)}: {redact(str(exc).strip())}"
            ) from None
        problem = schema_problem(version, required_version())
        if problem:
            await self.pool.close()
            raise StartupError(problem)

    def request_stop(self, signame: str = "signal") -> None:
        if self.stopping.is_set():
            self.log.info("{} again: already stopping, {} job(s) still running", signame, len(self.running))
            return
        self.log.info(
            "{}: stopping; no new claims, {} running job(s) get {}s to finish",
            signame,
            len(self.running),
            self.settings.shutdown_grace_seconds,
        )
        self.stopping.set()
        self.wake.set()

    async def run(self) -> int:
        """Claim and process jobs until asked to stop. Returns the process exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        await self.start()
        try:
            await self.observer.start(self._health_source(), self.db, self.worker_id)
        except OSError as exc:
            await self.observer.close(wait_s=0)
            await self.pool.close()
            raise StartupError(f"cannot serve the health endpoint on {self.observer.bind}: {exc}") from None
        except psycopg.Error as exc:
            await self.observer.close(wait_s=0)
            await self.pool.close()
            raise StartupError(f"cannot turn the webhook outbox on: {redact(str(exc).strip())}") from None
        helpers = [
            asyncio.create_task(self._listen(), name="listen"),
            asyncio.create_task(self._rescue(), name="rescue"),
        ]
        try:
            await self._claim_until_stopped()
        finally:
            await self._shutdown(helpers)
        return 0

    async def _claim_until_stopped(self) -> None:
        poll_s = self.settings.poll_interval_ms / 1000
        backoff = 0.1
        while not self.stopping.is_set():
            self.last_loop = time.monotonic()
            self.wake.clear()
            free = self.settings.max_concurrent_jobs - len(self.running)
            jobs: list[queue.Job] = []
            if free > 0:
                try:
                    jobs = await self.db(queue.claim_jobs, self.worker_id, free, self.settings.lease_seconds)
                    backoff = 0.1
                    self.observer.claimed(len(jobs))
                except Exception as exc:  # never let the loop die: log, back off, carry on
                    self.log.error("claim failed: {}", redact(str(exc).strip()))
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                for job in jobs:
                    task = asyncio.create_task(self._process(job), name=f"job-{job.id}")
                    self.running[job.id] = task
                    task.add_done_callback(lambda _t, jid=job.id: self._slot_freed(jid))
                if jobs and len(jobs) == free:
                    continue  # maybe more waiting: claim again as soon as a slot frees
            try:  # with every slot busy, still iterate each poll interval: /healthz watches last_loop
                await asyncio.wait_for(self.wake.wait(), timeout=poll_s)
            except TimeoutError:
                pass

    def _slot_freed(self, job_id: uuid.UUID) -> None:
        self.running.pop(job_id, None)
        self.wake.set()

    async def _shutdown(self, helpers: list[asyncio.Task[None]]) -> None:
        grace = self.settings.shutdown_grace_seconds
        self.give_up_at = time.monotonic() + grace + ABANDON_WAIT_S + 2
        for t in helpers:
            t.cancel()
        if self.running:
            _, pending = await asyncio.wait(list(self.running.values()), timeout=grace)
            if pending:
                self.log.warning("grace of {}s over: releasing {} unfinished job(s)", grace, len(pending))
                self.abandoning = True
                for w in list(self.work.values()):
                    w.cancel()
                await asyncio.wait(pending, timeout=ABANDON_WAIT_S + 2)
        await asyncio.gather(*helpers, return_exceptions=True)
        await self.observer.close(wait_s=self.give_up_at - time.monotonic())
        await self.pool.close()
        self.log.info("stopped")

    def _health_source(self) -> HealthSource:
        async def ping() -> None:
            async with self.pool.connection(timeout=DB_CHECK_S) as conn:
                await observe_db.ping(conn)

        async def depth() -> tuple[dict[str, int], float]:
            async with self.pool.connection(timeout=DB_CHECK_S) as conn:
                return await observe_db.queue_depth(conn)

        return HealthSource(
            worker_id=self.worker_id,
            last_loop=lambda: self.last_loop,
            stale_after_s=max(2 * self.settings.poll_interval_ms / 1000, HEALTH_STALE_MIN_S),
            running_jobs=lambda: len(self.running),
            stopping=self.stopping.is_set,
            ping=ping,
            queue_depth=depth,
        )

    # -- background helpers ------------------------------------------------------------------------

    async def _listen(self) -> None:
        """Set ``wake`` on every NOTIFY; reconnect with backoff when the connection drops."""
        if self.plan.listen_url is None:
            return
        delay = 0.2
        while not self.stopping.is_set():
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.plan.listen_url, autocommit=True, application_name="audio-worker listen"
                )
                async with conn:
                    await conn.execute(f"listen {queue.NOTIFY_CHANNEL}")
                    delay = 0.2
                    self.wake.set()  # anything enqueued while we were not listening
                    async for _ in conn.notifies():
                        self.wake.set()
            except psycopg.OperationalError as exc:
                self.log.warning(
                    "LISTEN connection lost ({}); polling until it is back in {:.1f}s",
                    redact(str(exc).strip().splitlines()[0] if str(exc).strip() else "closed"),
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _rescue(self) -> None:
        """Every RESCUE_INTERVAL_SECONDS (jittered), if no other worker is at it, reset stuck jobs."""
        interval = self.settings.rescue_interval_seconds
        await asyncio.sleep(random.uniform(0, min(interval, 5.0)))
        while not self.stopping.is_set():
            try:
                n = await self.db(queue.rescue_if_leader, until=time.monotonic() + interval)
                if n:
                    self.log.warning(
                        "reset_stuck_jobs: {} job(s) whose worker stopped heartbeating "
                        "were requeued or failed",
                        n,
                    )
                if n is not None and self.sweep is not None:  # we were the leader this round
                    await self._sweep_finished(until=time.monotonic() + interval)
            except Exception as exc:
                self.log.error("reset_stuck_jobs failed: {}", redact(str(exc).strip()))
            await asyncio.sleep(interval * random.uniform(0.8, 1.2))

    # -- orphaned objects --------------------------------------------------------------------------

    async def _sweep_objects(self, job_id: uuid.UUID, objects: list[dict[str, str]], why: str) -> bool:
        """Delete ``objects`` with the handler module's hook, then take them off the job's list.
        False (logged) when storage kept them: they stay listed and are tried again later."""
        assert self.sweep is not None
        names = ", ".join(f"{o.get('bucket')}/{o.get('key')}" for o in objects)
        try:
            await self.sweep(objects)
        except Exception as exc:
            self.log.error(
                "could not delete {} object(s) {} ({}): {}; will try again",
                len(objects),
                why,
                names,
                redact(str(exc).strip()),
            )
            return False
        await self.db(queue.forget_objects, job_id, objects)
        self.log.info("deleted {} object(s) {}: {}", len(objects), why, names)
        return True

    async def _sweep_finished(self, until: float) -> None:
        """Rescue leader only: finished jobs still listing objects (an attempt died after uploading,
        and no attempt follows). Stops at the first storage failure: it is likely down for all."""
        for job_id, status, objects in await self.db(queue.orphaned_objects, SWEEP_BATCH, until=until):
            with logger.contextualize(job_id=str(job_id)):
                if not await self._sweep_objects(
                    job_id, objects, f"left by a dead attempt of this {status} job"
                ):
                    return

    async def _run_handler(self, job: queue.Job, ctx: JobContext) -> Any:
        """The job's work: first delete what a dead earlier attempt left (failures only logged),
        then the handler. Supervised as one task, so the sweep is heartbeated and cancellable."""
        if job.pending_objects and self.sweep is not None:
            await self._sweep_objects(job.id, job.pending_objects, "left by an earlier attempt")
        return await self.handler(job, ctx)

    async def _forget(self, job: queue.Job, objects: list[dict[str, str]]) -> None:
        try:
            await self.db(queue.forget_objects, job.id, objects, until=time.monotonic() + DB_CHECK_S)
        except Exception as exc:  # they stay listed: a later sweep deletes them again, harmlessly
            self.log.warning(
                "could not take deleted objects off the job's list: {}", redact(str(exc).strip())
            )

    # -- one job -----------------------------------------------------------------------------------

    async def _process(self, job: queue.Job) -> None:
        with logger.contextualize(job_id=str(job.id)):
            ctx = JobContext(
                worker_id=self.worker_id,
                recorder=lambda objects: self.db(queue.record_objects, job, objects),
                forgetter=lambda objects: self._forget(job, objects),
            )
            started = time.monotonic()
            work = asyncio.create_task(self._run_handler(job, ctx))
            self.work[job.id] = work
            try:
                outcome = await self._supervise(job, ctx, work, started)
                await self._finish(job, ctx, work, outcome, time.monotonic() - started)
            except Exception as exc:  # the database stayed away past every deadline
                self.log.error(
                    "could not record the outcome: {}; the lease will expire and the job will be rescued",
                    redact(str(exc).strip()),
                )
            finally:
                self.work.pop(job.id, None)

    async def _supervise(
        self, job: queue.Job, ctx: JobContext, work: asyncio.Task[Any], started: float
    ) -> str:
        """Wait for the handler, heartbeating. Returns done | lost | timeout | abandoned."""
        s = self.settings
        deadline = started + s.job_timeout_ms / 1000
        next_beat = started + s.heartbeat_seconds
        sent = (ctx.progress, ctx.stage)
        last_sent = started  # the lease was last renewed then (claim or heartbeat)
        while True:
            now = time.monotonic()
            wait = min(deadline, next_beat, now + PROGRESS_INTERVAL_S) - now
            done, _ = await asyncio.wait({work}, timeout=max(wait, 0))
            if done:
                return "abandoned" if work.cancelled() and self.abandoning else "done"
            now = time.monotonic()
            if now >= deadline:
                await self._stop_work(work)
                return "timeout"
            state = (ctx.progress, ctx.stage)
            if now >= next_beat or (state != sent and now - last_sent >= PROGRESS_INTERVAL_S):
                try:
                    ok = await self.db(
                        queue.heartbeat, job, ctx.progress, ctx.stage, until=last_sent + s.lease_seconds
                    )
                except psycopg.Error as exc:
                    self.log.warning("heartbeat failed: {}", redact(str(exc).strip()))
                    ok = False
                if not ok:
                    self.log.warning("heartbeat refused (lease lost or cancel requested): stopping the work")
                    await self._stop_work(work)
                    return "lost"
                sent, last_sent = state, now
                next_beat = now + s.heartbeat_seconds

    async def _stop_work(self, work: asyncio.Task[Any]) -> None:
        work.cancel()
        done, _ = await asyncio.wait({work}, timeout=ABANDON_WAIT_S)
        if not done:
            self.log.error("handler ignored cancellation for {}s; abandoning it", ABANDON_WAIT_S)

    async def _discard(self, ctx: JobContext) -> None:
        for cleanup in ctx.discards:
            try:
                await cleanup()
            except Exception as exc:
                self.log.error("cleanup of a discarded attempt failed: {}", redact(str(exc).strip()))

    async def _finish(
        self, job: queue.Job, ctx: JobContext, work: asyncio.Task[Any], outcome: str, elapsed: float
    ) -> None:
        if outcome in ("lost", "abandoned"):
            await self._discard(ctx)
            released = await self.db(queue.release_job, job)
            self.log.info(
                "job {} after {:.2f}s: {}",
                "released" if outcome == "abandoned" else "stopped",
                elapsed,
                "handed back to the queue" if released else "it is no longer ours",
            )
            if released:  # handed back, or ended by release_job because a cancel was requested
                await self._observe_released(job, ctx, elapsed)
            else:
                self._observe(job, "refused", elapsed, ctx)
            return
        if outcome == "timeout":
            await self._discard(ctx)
            msg = f"timed out after {self.settings.job_timeout_ms} ms (JOB_TIMEOUT_MS)"
            ok = await self.db(queue.complete_job, job, error=msg, retryable=True)
            self.log.warning("job {}", msg)
            if ok:
                self._observe(job, "timeout", elapsed, ctx)
            else:
                await self._observe_refused(job, ctx, elapsed)
            return

        exc = work.exception() if not work.cancelled() else None
        if work.cancelled():
            error, retryable = "the job's work was cancelled", True
        elif exc is None:
            result = work.result()
            try:
                ok = await self.completions.complete(job, result)
            except TypeError as terr:  # result not JSON-able: a handler bug, not the job's fault
                error, retryable = f"handler returned a result that is not JSON: {terr}", False
            else:
                if ok:
                    self.log.info("job completed in {:.2f}s (attempt {})", elapsed, job.attempts)
                    self._observe(job, "completed", elapsed, ctx)
                else:
                    await self._discard(ctx)
                    self.log.warning("completion refused (lease lost or job cancelled): work discarded")
                    await self._observe_refused(job, ctx, elapsed)
                return
        elif isinstance(exc, JobError):
            error, retryable = str(exc), exc.retryable
        else:
            error, retryable = f"unexpected error: {type(exc).__name__}: {exc}", True
            self.log.opt(exception=exc).error("handler raised {}", type(exc).__name__)
        error = redact(error)
        await self._discard(ctx)
        ok = await self.db(queue.complete_job, job, error=error, retryable=retryable)
        kind = (
            "payload rejected"
            if isinstance(exc, PayloadError)
            else (
                "failed permanently"
                if isinstance(exc, PermanentError) or not retryable
                else "failed (retryable)"
            )
        )
        self.log.warning(
            "job {} after {:.2f}s (attempt {}/{}): {}", kind, elapsed, job.attempts, job.max_attempts, error
        )
        if ok:
            again = retryable and job.attempts < job.max_attempts  # complete_job's own rule
            self._observe(job, "retrying" if again else "failed", elapsed, ctx)
        else:
            await self._observe_refused(job, ctx, elapsed)

    # -- outcomes for observability (metrics, webhook wake-up): never allowed to fail a job ----------------

    def _observe(self, job: queue.Job, outcome: str, elapsed: float, ctx: JobContext) -> None:
        try:
            self.observer.job_finished(job, outcome, elapsed, ctx)
        except Exception as exc:
            self.log.opt(exception=exc).error("observer failed on outcome {}: {}", outcome, redact(str(exc)))

    async def _final_row(self, job: queue.Job) -> dict[str, Any] | None:
        """The job's row, to tell a cancel from a lost lease; None when not needed or not readable."""
        if not self.observer.wants_final_row:
            return None
        try:
            return await self.db(observe_db.job_row, job.id, until=time.monotonic() + DB_CHECK_S)
        except Exception as exc:
            self.log.warning("could not read the job's final state: {}", redact(str(exc).strip()))
            return None

    async def _observe_refused(self, job: queue.Job, ctx: JobContext, elapsed: float) -> None:
        """complete_job said no: cancelled under our lease, or no longer ours (refused)."""
        row = await self._final_row(job)
        cancelled = row is not None and row["status"] == "cancelled" and row["lease_id"] == job.lease_id
        self._observe(job, "cancelled" if cancelled else "refused", elapsed, ctx)

    async def _observe_released(self, job: queue.Job, ctx: JobContext, elapsed: float) -> None:
        """release_job took it back: pending again (released), or cancelled because a cancel was asked."""
        row = await self._final_row(job)
        cancelled = (
            row is not None
            and row["status"] == "cancelled"
            and row["error_message"] == "cancelled while processing"
            and row["lease_id"] is None
        )
        self._observe(job, "cancelled" if cancelled else "released", elapsed, ctx)
