"""The few reads observability makes (named statements in worker/queue/db/queries.sql)."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from worker.queue.db.queries import q


async def ping(conn: AsyncConnection) -> None:
    await conn.execute(q("health_check"))


async def queue_depth(conn: AsyncConnection) -> tuple[dict[str, int], float]:
    """Live jobs by status, and the age in seconds of the oldest job that could run now."""
    rows = await (await conn.execute(q("queue_depth"))).fetchall()
    return {status: int(n) for status, n, _ in rows}, max((float(o) for _, _, o in rows), default=0.0)


# -- the webhook outbox (migration 0006) ------------------------------------------------------------


async def enable_webhook_outbox(conn: AsyncConnection) -> bool:
    """Job ends are written to audio_queue.webhook_outbox from now on; True if this call turned it on."""
    cur = await conn.execute(q("enable_webhook_outbox"))
    row = await cur.fetchone()
    return bool(row and row[0])


async def claim_webhook_notices(
    conn: AsyncConnection, worker_id: str, limit: int, lease_seconds: int
) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            q("claim_webhook_notices"),
            {"worker_id": worker_id, "limit": limit, "lease_seconds": lease_seconds},
        )
        return await cur.fetchall()


async def webhook_delivered(conn: AsyncConnection, row_id: int, delivery_id: uuid.UUID) -> bool:
    cur = await conn.execute(q("webhook_delivered"), {"id": row_id, "delivery_id": delivery_id})
    row = await cur.fetchone()
    return bool(row and row[0])


async def webhooks_delivered(conn: AsyncConnection, acks: list[tuple[int, uuid.UUID]]) -> None:
    """Record several deliveries in one transaction: one round trip (pipelined) and one commit."""
    async with conn.transaction(), conn.cursor() as cur:
        await cur.executemany(q("webhook_delivered"), [{"id": i, "delivery_id": d} for i, d in acks])


async def webhook_attempt_failed(
    conn: AsyncConnection, row_id: int, delivery_id: uuid.UUID, error: str, retry_in: float, give_up: bool
) -> bool:
    cur = await conn.execute(
        q("webhook_attempt_failed"),
        {"id": row_id, "delivery_id": delivery_id, "error": error, "retry_in": retry_in, "give_up": give_up},
    )
    row = await cur.fetchone()
    return bool(row and row[0])
