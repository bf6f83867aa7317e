"""The claim loop: wake, claim what the free slots can take, hand each job to the runner.

One ``ClaimLoop`` per process. It owns no queue state: a job's fate is decided by the audio_queue
SQL functions (``worker.queue.db.queue``). What it adds is timing, and it is built of small parts:

- ``retry``: every database call retried on a fresh connection with backoff, so the worker
  survives connection loss;
- ``wakeup``: LISTEN/NOTIFY wakes the loop; it also polls every POLL_INTERVAL_MS and wakes
  whenever a slot frees;
- this loop: claims at most as many jobs as free slots, in one ``get_next_pending_job`` call;
- ``runner``: one job, supervised by ``supervise`` (heartbeats, JOB_TIMEOUT_MS, cancel) and
  recorded by ``outcomes``;
- ``rescue``: every RESCUE_INTERVAL_SECONDS one worker of the fleet runs reset_stuck_jobs and,
  with ``objects``, sweeps objects dead attempts left behind, then the handler module's
  ``sweep_abandoned`` hook (the shared provider cache's half-done uploads);
- shutdown (SIGTERM/SIGINT): no new claims, running jobs get SHUTDOWN_GRACE_SECONDS, the rest are
  released.

Each outcome goes to ``worker.observe.Observer`` (metrics, the webhook outbox's wake-up); with
HEALTH_PORT/PORT it also serves /healthz and /metrics.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
import uuid

import psycopg
from loguru import logger

from worker.config import WorkerSettings
from worker.logs import redact
from worker.observe import db as observe_db
from worker.observe.http import DB_CHECK_S, HealthSource
from worker.observe.observer import Observer
from worker.queue.db import queue
from worker.queue.db.connect import ConnectionPlan, make_pool, safe_dsn
from worker.queue.db.migrate import required_version, schema_problem
from worker.queue.handlers import AbandonedSweeper, Handler, Sweeper
from worker.queue.objects import ObjectSweeper
from worker.queue.outcomes import OutcomeRecorder
from worker.queue.rescue import rescue_periodically
from worker.queue.retry import RetryingDb
from worker.queue.runner import JobRunner
from worker.queue.supervise import ABANDON_WAIT_S
from worker.queue.wakeup import listen_for_jobs

STARTUP_WAIT_S = 10.0  # how long start-up waits for the database before giving up (Heroku restarts us)
HEALTH_STALE_MIN_S = 30.0  # /healthz fails when the loop has not iterated for max(this, 2 poll intervals)
CLAIM_BACKOFF_S = (0.1, 5.0)  # after a failed claim: first wait, longest wait
RELEASE_WAIT_S = 2.0  # after the grace and the handlers' clean-up: time for the release_job calls
# Heroku SIGKILLs a dyno's processes this long after its SIGTERM. After the grace, shutdown needs
# ABANDON_WAIT_S for cancelled handlers to kill their children, RELEASE_WAIT_S to hand their jobs
# back, and a second to close the pool and exit: a longer grace on Heroku gets the jobs still
# running at a restart SIGKILLed instead of released (they wait out their lease, rescued).
HEROKU_SIGKILL_AFTER_S = 30.0
HEROKU_MAX_GRACE_S = HEROKU_SIGKILL_AFTER_S - ABANDON_WAIT_S - RELEASE_WAIT_S - 1.0  # 22 s


def new_worker_id(prefix: str | None = None) -> str:
    """hostname (or DYNO) + pid + random: a restarted dyno never inherits its old claims."""
    base = prefix or os.environ.get("DYNO") or socket.gethostname()
    return f"{base}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def heroku_grace_warning(settings: WorkerSettings, dyno: str | None) -> str | None:
    """What to say at start when the process runs on Heroku (``DYNO`` is set) with a shutdown grace
    Heroku's SIGKILL would cut short; None when all is well.

    A warning, not a clamp: DYNO is also set off Heroku (by hosts that imitate it, such as Dokku,
    or by hand for tools that expect it), where the wait before SIGKILL may be longer and a long
    grace right; and on Heroku too long a grace loses no work (the jobs it fails to release are
    rescued once their lease expires). Silently overriding an explicit setting would hide the
    operator's mistake; a warning at every start names it and the fix."""
    grace = settings.shutdown_grace_seconds
    if not dyno or grace <= HEROKU_MAX_GRACE_S:
        return None
    return (
        f"SHUTDOWN_GRACE_SECONDS={grace:g} is too long for Heroku (DYNO={dyno}): Heroku sends SIGKILL "
        f"{HEROKU_SIGKILL_AFTER_S:g} s after SIGTERM, and the worker needs "
        f"{HEROKU_SIGKILL_AFTER_S - HEROKU_MAX_GRACE_S:g} s of them after the grace to stop and hand back "
        "the jobs still running; at a restart or deploy those jobs would be killed instead, and "
        f"wait out their lease before another worker takes them. Set it to {HEROKU_MAX_GRACE_S:g} "
        "or less."
    )


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
        sweep_abandoned: AbandonedSweeper | None = None,
    ) -> None:
        self.settings = settings
        self.plan = plan
        self.worker_id = worker_id or new_worker_id(settings.worker_id)
        # +1 with WEBHOOK_URL: room for the webhook outbox's short calls beside the jobs' ones.
        self.pool = make_pool(
            plan, size=settings.max_concurrent_jobs + 2 + (settings.webhook_url is not None)
        )
        self.db = RetryingDb(self.pool)
        self.observer = Observer(settings)
        self.sweeper = ObjectSweeper(self.db, sweep) if sweep is not None else None
        self.sweep_abandoned = sweep_abandoned
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        outcomes = OutcomeRecorder(self.db, settings, self.observer, self.stopping)
        self.runner = JobRunner(self.db, settings, handler, self.sweeper, outcomes, self.worker_id)
        # Jobs holding a slot: claimed, their work not yet over.
        self.running: dict[uuid.UUID, asyncio.Task[None]] = {}
        # Every job task until its outcome is recorded: a finished job's completion may still be
        # on its way to the database (batched) while its slot already runs the next job.
        self.tasks: set[asyncio.Task[None]] = set()
        self.last_loop = time.monotonic()  # the claim loop's last iteration, for /healthz

    async def run(self) -> int:
        """Claim and process jobs until asked to stop. Returns the process exit code."""
        with logger.contextualize(worker_id=self.worker_id):
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop, sig.name)
            await self._start()
            helpers = [
                asyncio.create_task(
                    listen_for_jobs(self.plan.listen_url, self.wake, self.stopping), name="listen"
                ),
                asyncio.create_task(
                    rescue_periodically(
                        self.db,
                        self.settings.rescue_interval_seconds,
                        self.sweeper,
                        self.stopping,
                        self.sweep_abandoned,
                    ),
                    name="rescue",
                ),
            ]
            try:
                await self._claim_until_stopped()
            finally:
                await self._shutdown(helpers)
                # Heroku may signal again while the process winds down: once the loop closes, its
                # handlers are gone and a SIGTERM would end the process with -15 instead of exit 0.
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        return 0

    def request_stop(self, signame: str = "signal") -> None:
        if self.stopping.is_set():
            logger.info("{} again: already stopping, {} job(s) still running", signame, len(self.running))
            return
        logger.info(
            "{}: stopping; no new claims, {} running job(s) get {}s to finish",
            signame,
            len(self.running),
            self.settings.shutdown_grace_seconds,
        )
        self.stopping.set()
        self.wake.set()

    async def _start(self) -> None:
        """Open the pool, check the schema version, start the observer; StartupError says what failed."""
        if (warning := heroku_grace_warning(self.settings, os.environ.get("DYNO"))) is not None:
            logger.warning(warning)
        logger.info(
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
        try:
            await self.observer.start(self._health_source(), self.db, self.worker_id)
        except (OSError, psycopg.Error) as exc:
            await self.observer.close(wait_s=0)
            await self.pool.close()
            if isinstance(exc, OSError):
                raise StartupError(
                    f"cannot serve the health endpoint on {self.observer.bind}: {exc}"
                ) from None
            raise StartupError(f"cannot turn the webhook outbox on: {redact(str(exc).strip())}") from None

    async def _claim_until_stopped(self) -> None:
        poll_s = self.settings.poll_interval_ms / 1000
        backoff = CLAIM_BACKOFF_S[0]
        while not self.stopping.is_set():
            self.last_loop = time.monotonic()
            self.wake.clear()
            free = self.settings.max_concurrent_jobs - len(self.running)
            if free > 0:
                try:
                    jobs = await self.db(
                        queue.get_next_pending_job, self.worker_id, free, self.settings.lease_seconds
                    )
                except Exception as exc:  # never let the loop die: log, back off, carry on
                    logger.error("claim failed: {}", redact(str(exc).strip()))
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, CLAIM_BACKOFF_S[1])
                    continue
                backoff = CLAIM_BACKOFF_S[0]
                self.observer.claimed(len(jobs))
                for job in jobs:
                    self._start_job(job)
                if jobs and len(jobs) == free:
                    continue  # maybe more waiting: claim again as soon as a slot frees
            try:  # with every slot busy, still iterate each poll interval: /healthz watches last_loop
                await asyncio.wait_for(self.wake.wait(), timeout=poll_s)
            except TimeoutError:
                pass

    def _start_job(self, job: queue.Job) -> None:
        # The slot frees when the work is over, not when its outcome is written: the next claim
        # goes out while the completion batch commits, instead of after it.
        task = asyncio.create_task(
            self.runner.run(job, on_work_over=lambda: self._slot_freed(job.id)), name=f"job-{job.id}"
        )
        self.running[job.id] = task
        self.tasks.add(task)
        task.add_done_callback(lambda t: self._job_ended(t, job.id))

    def _job_ended(self, task: asyncio.Task[None], job_id: uuid.UUID) -> None:
        self.tasks.discard(task)
        self._slot_freed(job_id)  # already freed when the work ended, unless run() failed early

    def _slot_freed(self, job_id: uuid.UUID) -> None:
        self.running.pop(job_id, None)
        self.wake.set()

    async def _shutdown(self, helpers: list[asyncio.Task[None]]) -> None:
        grace = self.settings.shutdown_grace_seconds
        self.db.give_up_at = time.monotonic() + grace + ABANDON_WAIT_S + RELEASE_WAIT_S
        for t in helpers:
            t.cancel()
        if self.tasks:
            _, pending = await asyncio.wait(list(self.tasks), timeout=grace)
            if pending:
                logger.warning("grace of {}s over: releasing {} unfinished job(s)", grace, len(pending))
                self.runner.abandon_all()
                await asyncio.wait(pending, timeout=ABANDON_WAIT_S + RELEASE_WAIT_S)
        await asyncio.gather(*helpers, return_exceptions=True)
        await self.observer.close(wait_s=self.db.give_up_at - time.monotonic())
        await self.pool.close()
        logger.info("stopped")

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
