"""Typed calls of the audio_queue SQL functions. No queue rule is decided here: it is all in SQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from worker.db.queries import q

NOTIFY_CHANNEL = "audio_queue_jobs"


@dataclass(frozen=True, slots=True)
class Job:
    """A claimed job: what a handler may read."""

    id: uuid.UUID
    lease_id: uuid.UUID
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    priority: int
    track_id: uuid.UUID | None
    user_id: uuid.UUID | None
    created_at: datetime
    run_at: datetime

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Job:
        return cls(
            id=row["id"], lease_id=row["lease_id"], payload=row["payload"], attempts=row["attempts"],
            max_attempts=row["max_attempts"], priority=row["priority"], track_id=row["track_id"],
            user_id=row["user_id"], created_at=row["created_at"], run_at=row["run_at"],
        )


async def claim_jobs(conn: AsyncConnection, worker_id: str, limit: int, lease_seconds: int) -> list[Job]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(q("claim_jobs"), {"worker_id": worker_id, "limit": limit, "lease_seconds": lease_seconds})
        return [Job.from_row(r) for r in await cur.fetchall()]


async def _scalar(conn: AsyncConnection, name: str, params: dict[str, Any]) -> Any:
    cur = await conn.execute(q(name), params)
    row = await cur.fetchone()
    return row[0] if row else None


async def heartbeat(conn: AsyncConnection, job: Job, progress: int, stage: str | None) -> bool:
    """Renew the lease and report progress; False means stop: lease lost or cancel requested."""
    return bool(await _scalar(conn, "heartbeat", {
        "job_id": job.id, "progress": progress, "stage": stage, "lease_id": job.lease_id}))


async def complete_job(conn: AsyncConnection, job: Job, *, result: dict[str, Any] | None = None,
                       error: str | None = None, retryable: bool = False) -> bool:
    """Record the outcome; False means the lease was lost or the job cancelled: discard the work."""
    return bool(await _scalar(conn, "complete_job", {
        "job_id": job.id, "result": Jsonb(result) if result is not None else None, "error": error,
        "lease_id": job.lease_id, "retryable": retryable}))


async def complete_jobs(conn: AsyncConnection, done: list[tuple[Job, dict[str, Any]]]) -> list[bool]:
    """Record many successes in one transaction; each element as :func:`complete_job` would."""
    oks = await _scalar(conn, "complete_jobs", {
        "job_ids": [j.id for j, _ in done], "lease_ids": [j.lease_id for j, _ in done],
        "results": [Jsonb(r) for _, r in done]})
    return [bool(x) for x in oks]


async def release_job(conn: AsyncConnection, job: Job) -> bool:
    """Hand the job back unfinished without spending an attempt (or end it if a cancel was asked)."""
    return bool(await _scalar(conn, "release_job", {"job_id": job.id, "lease_id": job.lease_id}))


async def rescue_if_leader(conn: AsyncConnection) -> int | None:
    """Run reset_stuck_jobs unless another worker is doing it; the number of jobs reset, or None."""
    return await _scalar(conn, "rescue_if_leader", {})


async def schema_version(conn: AsyncConnection) -> int | None:
    """The applied schema version, or None when the audio_queue schema does not exist."""
    if not await _scalar(conn, "schema_exists", {}):
        return None
    return int(await _scalar(conn, "schema_version", {}))
