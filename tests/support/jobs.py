"""Reading the queue in tests: one job's row, one value."""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row


def job(conn: Any, job_id: Any) -> dict[str, Any] | None:
    """The job's row as a dict (None when there is no such job)."""
    return (
        conn.cursor(row_factory=dict_row)
        .execute("select * from audio_queue.jobs where id = %s", (job_id,))
        .fetchone()
    )


def scalar(conn: Any, sql: str, *args: Any) -> Any:
    """The first column of the first row of ``sql``."""
    return conn.execute(sql, args).fetchone()[0]
