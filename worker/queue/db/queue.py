"""Typed calls of the audio_queue SQL functions. No queue rule is decided here: it is all in SQL."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg.types.string import TextLoader

from worker.errors import PayloadError
from worker.queue.db.queries import q
from worker.queue.payload import decode_payload

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
    # Objects ({"bucket","key"}) an earlier attempt noted before uploading and nobody deleted yet
    # (that attempt died): the claim loop sweeps them before the handler runs. See record_objects.
    pending_objects: list[dict[str, str]] = field(default_factory=list)

    # Set when the payload could not be decoded or broke a decoding limit (see worker.queue.payload):
    # the job then fails at once with this error, without running the handler.
    rejected: PayloadError | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Job:
        """A claimed row whose jsonb columns arrive as text (see :func:`get_next_pending_job`)."""
        payload: dict[str, Any] = {}
        rejected = None
        try:
            payload = decode_payload(row["payload"])
        except PayloadError as exc:
            rejected = exc
        return cls(
            id=row["id"],
            lease_id=row["lease_id"],
            payload=payload,
            rejected=rejected,
            attempts=row["attempts"],
            max_attempts=row["max_attempts"],
            priority=row["priority"],
            track_id=row["track_id"],
            user_id=row["user_id"],
            created_at=row["created_at"],
            run_at=row["run_at"],
            pending_objects=_objects(row.get("pending_objects")),
        )


def _objects(text: str | None) -> list[dict[str, str]]:
    """The pending_objects column (written by the worker through audio_queue.record_objects)."""
    try:
        value = json.loads(text) if text else []
    except (ValueError, RecursionError):
        return []
    return [o for o in value if isinstance(o, dict)] if isinstance(value, list) else []


async def get_next_pending_job(
    conn: AsyncConnection, worker_id: str, limit: int, lease_seconds: int
) -> list[Job]:
    """Claim up to ``limit`` jobs for ``worker_id`` under a lease of ``lease_seconds``.

    jsonb columns are fetched as text and each row's payload is decoded on its own: the claim has
    committed by then, and one undecodable payload must not drop the jobs claimed with it.
    """
    async with conn.cursor(row_factory=dict_row) as cur:
        cur.adapters.register_loader("jsonb", TextLoader)
        await cur.execute(
            q("get_next_pending_job"),
            {"worker_id": worker_id, "limit": limit, "lease_seconds": lease_seconds},
        )
        return [Job.from_row(r) for r in await cur.fetchall()]


async def _scalar(conn: AsyncConnection, name: str, params: dict[str, Any]) -> Any:
    cur = await conn.execute(q(name), params)
    row = await cur.fetchone()
    return row[0] if row else None


async def update_job_progress(conn: AsyncConnection, job: Job, progress: int, stage: str | None) -> bool:
    """Renew the lease and report progress; False means stop: lease lost or cancel requested."""
    return bool(
        await _scalar(
            conn,
            "update_job_progress",
            {"job_id": job.id, "progress": progress, "stage": stage, "lease_id": job.lease_id},
        )
    )


# What complete_job_v2 / release_job_v2 answer (migration 0013): the outcome, or why it did not count.
Ended = Literal["completed", "retrying", "failed", "cancelled", "lost"]
Released = Literal["released", "cancelled", "lost"]


async def complete_job_v2(
    conn: AsyncConnection,
    job: Job,
    *,
    result: dict[str, Any] | None = None,
    error: str | None = None,
    retryable: bool = False,
) -> Ended:
    """Record the outcome. ``cancelled`` (a cancel was requested) and ``lost`` (the lease is
    another's) mean it did not count: discard the work."""
    reason = await _scalar(
        conn,
        "complete_job_v2",
        {
            "job_id": job.id,
            "result": Jsonb(result) if result is not None else None,
            "error": error,
            "lease_id": job.lease_id,
            "retryable": retryable,
        },
    )
    return cast(Ended, reason)


async def complete_jobs_v2(conn: AsyncConnection, done: list[tuple[Job, dict[str, Any]]]) -> list[Ended]:
    """Record many successes in one transaction; each element as :func:`complete_job_v2` would."""
    reasons = await _scalar(
        conn,
        "complete_jobs_v2",
        {
            "job_ids": [j.id for j, _ in done],
            "lease_ids": [j.lease_id for j, _ in done],
            "results": [Jsonb(r) for _, r in done],
        },
    )
    return [cast(Ended, r) for r in reasons]


async def release_job_v2(conn: AsyncConnection, job: Job) -> Released:
    """Hand the job back unfinished without spending an attempt (``released``), or end it when a
    cancel was requested (``cancelled``); ``lost`` when it is no longer ours."""
    return cast(Released, await _scalar(conn, "release_job_v2", {"job_id": job.id, "lease_id": job.lease_id}))


async def rescue_if_leader(conn: AsyncConnection) -> int | None:
    """Run reset_stuck_jobs unless another worker is doing it; the number of jobs reset, or None."""
    n = await _scalar(conn, "rescue_if_leader", {})
    return None if n is None else int(n)


async def record_objects(conn: AsyncConnection, job: Job, objects: list[dict[str, str]]) -> bool:
    """Note objects this attempt is about to upload; False means the job is no longer ours."""
    return bool(
        await _scalar(
            conn, "record_objects", {"job_id": job.id, "lease_id": job.lease_id, "objects": Jsonb(objects)}
        )
    )


async def forget_objects(conn: AsyncConnection, job_id: uuid.UUID, objects: list[dict[str, str]]) -> bool:
    """Take deleted objects off the job's pending list (they are gone, nobody needs to delete them)."""
    return bool(await _scalar(conn, "forget_objects", {"job_id": job_id, "objects": Jsonb(objects)}))


async def orphaned_objects(
    conn: AsyncConnection, limit: int = 100
) -> list[tuple[uuid.UUID, str, list[dict[str, str]]]]:
    """Finished jobs that still list objects nobody deleted: (job id, status, objects)."""
    cur = await conn.execute(q("orphaned_objects"), {"limit": limit})
    return [(r[0], r[1], list(r[2])) for r in await cur.fetchall()]


async def schema_version(conn: AsyncConnection) -> int | None:
    """The applied schema version, or None when the audio_queue schema does not exist."""
    if not await _scalar(conn, "schema_exists", {}):
        return None
    return int(await _scalar(conn, "schema_version", {}))


async def acquire_provider_slot(
    conn: AsyncConnection,
    *,
    provider: str,
    account: str,
    max_concurrent: int | None,
    max_requests: int | None,
    window_seconds: float | None,
    lease_seconds: int,
    job_id: uuid.UUID | None,
    worker_id: str | None,
) -> tuple[uuid.UUID | None, float]:
    """A fleet-wide slot for one provider request: (lease id, 0) or (None, seconds to wait)."""
    cur = await conn.execute(
        q("acquire_provider_slot"),
        {
            "provider": provider,
            "account": account,
            "max_concurrent": max_concurrent,
            "max_requests": max_requests,
            "window_seconds": window_seconds,
            "lease_seconds": lease_seconds,
            "job_id": job_id,
            "worker_id": worker_id,
        },
    )
    row = await cur.fetchone()
    assert row is not None
    return row[0], float(row[1])


async def renew_provider_slot(conn: AsyncConnection, lease_id: uuid.UUID, lease_seconds: int) -> bool:
    return bool(
        await _scalar(conn, "renew_provider_slot", {"lease_id": lease_id, "lease_seconds": lease_seconds})
    )


async def release_provider_slot(conn: AsyncConnection, lease_id: uuid.UUID) -> bool:
    return bool(await _scalar(conn, "release_provider_slot", {"lease_id": lease_id}))
