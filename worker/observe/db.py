"""The few reads observability makes (named statements in worker/db/queries.sql)."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from worker.db.queries import q


async def ping(conn: AsyncConnection) -> None:
    await conn.execute(q("health_check"))


async def queue_depth(conn: AsyncConnection) -> tuple[dict[str, int], float]:
    """Live jobs by status, and the age in seconds of the oldest job that could run now."""
    rows = await (await conn.execute(q("queue_depth"))).fetchall()
    return {status: int(n) for status, n, _ in rows}, max((float(o) for _, _, o in rows), default=0.0)


async def job_row(conn: AsyncConnection, job_id: uuid.UUID) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(q("get_job"), {"job_id": job_id})
        return await cur.fetchone()
