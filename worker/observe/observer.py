"""The claim loop's one narrow interface to metrics, the health endpoint and webhooks.

The claim loop calls :meth:`Observer.claimed` and :meth:`Observer.job_finished` (both synchronous
and cheap: counters, and at most the scheduling of a webhook task), and ``start``/``close`` around
its run. Each part is off unless configured: metrics and the endpoint with HEALTH_PORT (or PORT),
the webhook with WEBHOOK_URL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from worker.config import WorkerSettings
from worker.db.queue import Job
from worker.handlers import JobContext
from worker.observe import metrics as _metrics
from worker.observe.http import HealthServer, HealthSource
from worker.observe.webhook import Webhooks

# Outcomes that end a job for good, and the webhook status they are announced with.
FINAL = {"completed": "completed", "failed": "failed", "cancelled": "cancelled"}
WEBHOOK_WAIT_S = 5.0  # at shutdown, the longest wait for webhooks in flight


class Observer:
    def __init__(self, settings: WorkerSettings) -> None:
        self.bind = settings.health_bind()
        self.metrics = _metrics.install() if self.bind else None
        self.webhooks: Webhooks | None = None
        if settings.webhook_url is not None:
            secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
            self.webhooks = Webhooks(str(settings.webhook_url), secret, settings.webhook_timeout_s,
                                     settings.webhook_attempts, on_result=self._webhook_result)
        self.server: HealthServer | None = None

    @property
    def wants_final_row(self) -> bool:
        """Whether the loop should read a refused job's row to tell a cancel from a lost lease."""
        return self.metrics is not None or self.webhooks is not None

    async def start(self, src: HealthSource) -> None:
        if self.bind and self.metrics is not None:
            self.server = HealthServer(src, self.metrics, *self.bind)
            await self.server.start()

    def claimed(self, n: int) -> None:
        if self.metrics is not None and n:
            self.metrics.claims.inc(n)

    def job_finished(self, job: Job, outcome: str, elapsed: float, ctx: JobContext, *,
                     result: dict[str, Any] | None = None, error: str | None = None,
                     row: dict[str, Any] | None = None) -> None:
        """Record one job's outcome (one of metrics.OUTCOMES), after the database has recorded it.

        ``row`` is the job's row when the loop read it (a cancelled job): the notice is built from it.
        """
        if self.metrics is not None:
            self.metrics.job(outcome, elapsed, ctx.stage_durations())
        if self.webhooks is None:
            return
        status = FINAL.get(outcome)
        if outcome == "timeout" and job.attempts >= job.max_attempts:
            status = "failed"  # the last attempt timed out: the database failed the job
        if status is not None:
            self.webhooks.send(notice(job, status, result=result, error=error, row=row))

    async def close(self, wait_s: float = WEBHOOK_WAIT_S) -> None:
        if self.webhooks is not None:
            await self.webhooks.close(min(wait_s, WEBHOOK_WAIT_S))
        if self.server is not None:
            await self.server.close()

    def _webhook_result(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.webhooks.labels(result).inc()


def notice(job: Job, status: str, *, result: dict[str, Any] | None = None, error: str | None = None,
           row: dict[str, Any] | None = None) -> dict[str, Any]:
    """The webhook body. URLs as the database stores them (complete_job's rules); no secrets."""
    r = result or {}
    completed_at = (row or {}).get("completed_at") or datetime.now(UTC)
    return {
        "job_id": str(job.id),
        "status": status,
        "wav_url": r.get("wav_url"),
        "mp3_url": r.get("mp3_url"),
        "result_url": r.get("mp3_url") or r.get("result_url"),
        "error": (row or {}).get("error_message") if row else error,
        "attempts": job.attempts,
        "track_id": str(job.track_id) if job.track_id else None,
        "user_id": str(job.user_id) if job.user_id else None,
        "completed_at": completed_at.isoformat(),
    }
