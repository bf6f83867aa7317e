"""The completion webhook's delivery loop, over the Postgres outbox (migration 0006).

Pending notices are rows of ``audio_queue.webhook_outbox``, written by a trigger in the same
transaction that ends a job, whoever ends it (this worker, another one, ``cancel_job``,
``reset_stuck_jobs``). A worker started with WEBHOOK_URL turns the outbox on
(``enable_webhook_outbox()``) and runs this loop:

- claim due notices (``claim_webhook_notices``: at most BATCH per call and MAX_IN_FLIGHT posting
  at once; each is leased to this worker for one attempt, so no other worker posts it meanwhile);
- POST each one once, in a task of its own (``worker.observe.webhook``: body, headers, signature);
- 2xx: ``webhook_delivered`` (the row is deleted; the loop records the deliveries of a cycle
  together, in one transaction). Otherwise ``webhook_attempt_failed``: due again
  after the backoff (1 s, 2 s, 4 s ... capped at 30 s) on connection errors, timeouts, 408, 425,
  429 and 5xx, until WEBHOOK_ATTEMPTS attempts; any other answer, or the last attempt, gives up
  (the row is deleted, a warning is logged);
- wakes every POLL_S when idle, and at once when this worker ends a job (``poke``).

Delivery runs beside the claim loop and never delays claims or completions. At shutdown the loop
stops, posts in flight get a few seconds, and the rest are handed back: nothing is dropped, the
rows wait in the table for the next worker. At least once: a worker killed between the receiver's
2xx and ``webhook_delivered`` leaves the row, and it is posted again with the same delivery id.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Any

import httpx
from loguru import logger

from worker.logs import add_secrets, redact
from worker.observe import db as obs_db
from worker.observe import webhook

POLL_S = 1.0  # idle poll of the outbox (notices of jobs other workers or SQL ended)
CYCLE_S = 0.02  # at most one claim (and one batch of delivery records) this often
BATCH = 20  # notices claimed per call
MAX_IN_FLIGHT = 32  # posts at once per worker
LEASE_MARGIN_S = 10  # a claim's lease: one attempt's timeout plus this
DB_WAIT_S = 5.0  # how long one outbox call may retry a lost database connection
CLAIM_BACKOFF_CAP_S = 30.0
INTERRUPTED = "interrupted: the worker shut down during the attempt"

Runner = Callable[..., Awaitable[Any]]


def notice(row: dict[str, Any]) -> dict[str, Any]:
    """The webhook body for a claimed outbox row (the job as it was when it ended). No secrets."""
    return {
        "job_id": str(row["job_id"]),
        "status": row["status"],
        "wav_url": row["wav_url"],
        "mp3_url": row["mp3_url"],
        "result_url": row["result_url"],
        "error": row["error"],
        "attempts": row["job_attempts"],
        "track_id": str(row["track_id"]) if row["track_id"] else None,
        "user_id": str(row["user_id"]) if row["user_id"] else None,
        "completed_at": row["completed_at"].astimezone(UTC).isoformat(),
    }


class Outbox:
    def __init__(
        self,
        url: str,
        secret: str | None,
        timeout_s: float,
        attempts: int,
        on_result: Callable[[str], None] | None = None,
    ) -> None:
        self.url, self.secret, self.timeout_s, self.attempts = url, secret, timeout_s, attempts
        self.where = webhook.where(url)
        u = httpx.URL(url)
        # The URL's path or query may carry a token: never in a log line.
        add_secrets([url, str(u), u.query.decode(), u.password or ""])
        self.lease_s = int(math.ceil(timeout_s + LEASE_MARGIN_S))
        self._on_result = on_result or (lambda _r: None)
        self._inflight: dict[int, tuple[dict[str, Any], asyncio.Task[None]]] = {}
        self._acks: list[tuple[int, Any]] = []  # delivered, not yet recorded: (row id, delivery id)
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._db: Runner | None = None
        self.worker_id = "-"

    async def start(self, db: Runner, worker_id: str) -> None:
        """Turn the outbox on (raises when the database refuses) and start the delivery loop."""
        self._db, self.worker_id = db, worker_id
        if await db(obs_db.enable_webhook_outbox, until=time.monotonic() + DB_WAIT_S):
            logger.info("webhook outbox turned on: job ends are recorded in audio_queue.webhook_outbox")
        self._client = httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False)
        self._task = asyncio.create_task(self._run(), name="webhook-outbox")

    def poke(self) -> None:
        """A job just ended here: look for its notice now rather than at the next poll."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    async def _run(self) -> None:
        assert self._db is not None
        backoff = POLL_S
        cycle_at = 0.0
        while not self._stopping:
            # At most one cycle (record deliveries, claim) per CYCLE_S: under load the wake-ups of
            # many job ends and finished posts share one pair of database calls.
            await asyncio.sleep(max(0.0, cycle_at + CYCLE_S - time.monotonic()))
            cycle_at = time.monotonic()
            self._wake.clear()
            await self._record_deliveries()
            free = MAX_IN_FLIGHT - len(self._inflight)
            if free > 0:
                want = min(free, BATCH)
                try:
                    rows = await self._db(
                        obs_db.claim_webhook_notices,
                        self.worker_id,
                        want,
                        self.lease_s,
                        until=time.monotonic() + DB_WAIT_S,
                    )
                    backoff = POLL_S
                except Exception as exc:  # never let the loop die
                    logger.warning(
                        "webhook outbox: claim failed ({}); trying again in {:g}s",
                        redact(str(exc).strip() or type(exc).__name__),
                        backoff,
                    )
                    await self._nap(backoff)
                    backoff = min(backoff * 2, CLAIM_BACKOFF_CAP_S)
                    continue
                for row in rows:
                    task = asyncio.create_task(self._deliver(row), name="webhook")
                    self._inflight[row["id"]] = (row, task)
                    task.add_done_callback(functools.partial(self._done, row["id"]))
                if len(rows) == want:
                    continue  # maybe more are due
            await self._nap(POLL_S)

    async def _nap(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        except TimeoutError:
            pass

    def _done(self, row_id: int, _task: asyncio.Task[Any]) -> None:
        self._inflight.pop(row_id, None)
        self._wake.set()

    async def _deliver(self, row: dict[str, Any]) -> None:
        """One attempt of one notice, then its outcome recorded in the outbox."""
        assert self._client is not None
        job_id, attempt_no = row["job_id"], row["attempts"]
        try:
            raw = webhook.body(notice(row))
            status, why = await webhook.attempt(
                self._client, self.url, str(row["delivery_id"]), raw, self.secret
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug, not the receiver: retried like a connection error
            status, why = None, redact(f"{type(exc).__name__}: {exc}")
        if status is not None and 200 <= status < 300:
            logger.debug("webhook for job {} delivered to {} (attempt {})", job_id, self.where, attempt_no)
            self._on_result("delivered")
            self._acks.append((row["id"], row["delivery_id"]))  # recorded by the loop, with others
            return
        give_up = not webhook.retryable(status) or attempt_no >= self.attempts
        delay = webhook.backoff(attempt_no)
        if give_up:
            logger.warning(
                "webhook for job {} to {} failed after {} attempt(s): {}; notice dropped",
                job_id,
                self.where,
                attempt_no,
                why,
            )
            self._on_result("failed")
        else:
            logger.info("webhook for job {} to {}: {}; retrying in {:g}s", job_id, self.where, why, delay)
        await self._record(obs_db.webhook_attempt_failed, row, why, delay, give_up)

    async def _record_deliveries(self) -> None:
        """Delete the delivered notices' rows, all in one call. If it fails, their leases run out
        and they are posted again (at least once), so the acks are not kept for another try."""
        acks, self._acks = self._acks, []
        if not acks:
            return
        assert self._db is not None
        try:
            await self._db(obs_db.webhooks_delivered, acks, until=time.monotonic() + DB_WAIT_S)
        except Exception as exc:
            logger.warning(
                "webhook: could not record {} delivered notice(s) ({}); they will be posted again "
                "after their lease",
                len(acks),
                redact(str(exc).strip() or type(exc).__name__),
            )

    async def _record(self, fn: Callable[..., Awaitable[bool]], row: dict[str, Any], *args: Any) -> None:
        assert self._db is not None
        try:
            await self._db(fn, row["id"], row["delivery_id"], *args, until=time.monotonic() + DB_WAIT_S)
        except Exception as exc:  # the row keeps its lease; another attempt follows when it runs out
            logger.warning(
                "webhook for job {}: could not record the attempt ({}); it will be tried again "
                "after its lease",
                row["job_id"],
                redact(str(exc).strip() or type(exc).__name__),
            )

    async def close(self, wait_s: float) -> None:
        """Stop claiming; give posts in flight up to ``wait_s``; hand the rest back to the outbox."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=DB_WAIT_S)
            except TimeoutError:
                pass  # wait_for cancelled it
            except Exception as exc:
                logger.error("webhook outbox loop failed: {}", redact(str(exc)))
            self._task = None
        if self._inflight:
            tasks = [t for _, t in self._inflight.values()]
            _, pending = await asyncio.wait(tasks, timeout=max(wait_s, 0))
            if pending:
                rows = [row for row, t in list(self._inflight.values()) if t in pending]
                logger.warning(
                    "webhook: leaving {} undelivered notice(s) in the outbox for another worker", len(pending)
                )
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                for row in rows:  # released now rather than when their lease runs out
                    await self._record(obs_db.webhook_attempt_failed, row, INTERRUPTED, 0.0, False)
        await self._record_deliveries()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
