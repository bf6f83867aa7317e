"""The dashboard's database calls: named statements from ``worker/web/queries.sql`` on a small pool."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from worker.queue.db.connect import ConnectionPlan
from worker.queue.db.queries import parse_queries

QUERIES_FILE = Path(__file__).with_name("queries.sql")

Row = dict[str, Any]


@cache
def _statements() -> dict[str, str]:
    return parse_queries(QUERIES_FILE.read_text())


def sql(name: str) -> str:
    """The statement called ``name`` in worker/web/queries.sql."""
    return _statements()[name]


class DashboardDB:
    """Reads and actions. Autocommit reads; each action is one transaction that names its actor."""

    def __init__(self, plan: ConnectionPlan, size: int = 4) -> None:
        kwargs = {**plan.connect_kwargs, "application_name": "audio-worker web", "prepare_threshold": None}
        self.pool = AsyncConnectionPool(
            plan.url, min_size=1, max_size=size, kwargs=kwargs, open=False, timeout=10, name="dashboard"
        )

    async def open(self) -> None:
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close()

    async def rows(self, name: str, params: dict[str, Any] | None = None) -> list[Row]:
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql(name), params or {})
            return await cur.fetchall()

    async def row(self, name: str, params: dict[str, Any] | None = None) -> Row | None:
        found = await self.rows(name, params)
        return found[0] if found else None

    async def action(self, name: str, params: dict[str, Any], actor: str) -> Any:
        """Run the runbook function ``name`` as ``actor`` (recorded in the job_events it causes);
        returns its single value."""
        async with self.pool.connection() as conn:
            async with conn.transaction():
                await conn.execute(sql("set_actor"), {"actor": f"dashboard:{actor}"})
                cur = await conn.execute(sql(name), params)
                found = await cur.fetchone()
        return None if found is None else found[0]
