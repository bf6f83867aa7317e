"""The claim loop's one narrow interface to metrics, the health endpoint and webhooks.

The claim loop calls :meth:`Observer.claimed` and :meth:`Observer.job_finished` (both synchronous
and cheap: counters, and at most a wake-up of the webhook outbox loop), and ``start``/``close``
around its run. Each part is off unless configured: metrics and the endpoint with HEALTH_PORT (or
PORT), the webhook with WEBHOOK_URL. The webhook's notices themselves are written by the database
(``audio_queue.webhook_outbox``, see ``worker.observe.outbox``), not built here.
"""

from __future__ import annotations

from worker.config import WorkerSettings
from worker.observe import metrics as _metrics
from worker.observe.http import HealthServer, HealthSource
from worker.observe.outbox import Outbox, Runner
from worker.queue.db.queue import Job
from worker.queue.handlers import JobContext

# Outcomes after which the job may have ended for good: its notice is in the outbox now.
ENDED = frozenset({"completed", "failed", "cancelled", "timeout", "refused", "released"})
WEBHOOK_WAIT_S = 5.0  # at shutdown, the longest wait for webhooks in flight


class Observer:
    def __init__(self, settings: WorkerSettings) -> None:
        self.bind = settings.health_bind()
        self.metrics = _metrics.install() if self.bind else None
        self.webhooks: Outbox | None = None
        if settings.webhook_url is not None:
            secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
            self.webhooks = Outbox(
                str(settings.webhook_url),
                secret,
                settings.webhook_timeout_s,
                settings.webhook_attempts,
                on_result=self._webhook_result,
            )
        self.server: HealthServer | None = None

    async def start(self, src: HealthSource, db: Runner | None = None, worker_id: str = "-") -> None:
        """Serve the endpoint (raises OSError) and, with WEBHOOK_URL, turn the outbox on and start
        delivering (raises the database's error). ``db`` runs ``fn(conn, ...)`` like ClaimLoop.db."""
        if self.bind and self.metrics is not None:
            self.server = HealthServer(src, self.metrics, *self.bind)
            await self.server.start()
        if self.webhooks is not None:
            assert db is not None, "the webhook outbox needs the database"
            await self.webhooks.start(db, worker_id)

    def claimed(self, n: int) -> None:
        if self.metrics is not None and n:
            self.metrics.claims.inc(n)

    def job_finished(self, job: Job, outcome: str, elapsed: float, ctx: JobContext) -> None:
        """Record one job's outcome (one of metrics.OUTCOMES), after the database has recorded it.

        The notice, if the job ended, was written to the outbox by the same transaction: this only
        wakes the delivery loop.
        """
        if self.metrics is not None:
            self.metrics.job(outcome, elapsed, ctx.stage_durations())
        if self.webhooks is not None and outcome in ENDED:
            self.webhooks.poke()

    async def close(self, wait_s: float = WEBHOOK_WAIT_S) -> None:
        if self.webhooks is not None:
            await self.webhooks.close(min(wait_s, WEBHOOK_WAIT_S))
        if self.server is not None:
            await self.server.close()

    def _webhook_result(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.webhooks.labels(result).inc()
