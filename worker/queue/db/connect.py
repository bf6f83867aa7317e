"""Connections: pooler detection, the connection pool and the LISTEN connection's settings.

Supabase offers three ways in: the direct host (IPv6 only), the session pooler (port 5432) and the
transaction pooler (port 6543). Behind a transaction pooler a session is not ours between
transactions, so prepared statements are off and LISTEN cannot be used (unless a separate
LISTEN_DATABASE_URL points at a session-capable endpoint).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from worker.config import WorkerSettings


def password_of(url: str) -> str | None:
    """The password inside a libpq URL or key=value string, or None."""
    try:
        return conninfo_to_dict(url).get("password") or None  # type: ignore[return-value]
    except Exception:
        return None


def safe_dsn(url: str) -> str:
    """A conninfo rendered for humans: host, port, database and user, never the password."""
    try:
        d = conninfo_to_dict(url)
    except Exception:
        return "<unparseable DATABASE_URL>"
    return f"{d.get('user', '?')}@{d.get('host', 'localhost')}:{d.get('port', 5432)}/{d.get('dbname', '?')}"


@dataclass(frozen=True)
class ConnectionPlan:
    """How this process connects: the pool's kwargs and where (if anywhere) it listens."""

    url: str
    mode: str  # direct | session | transaction
    listen_url: str | None
    note: str

    @property
    def connect_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"autocommit": True, "application_name": "audio-worker"}
        if self.mode == "transaction":
            kw["prepare_threshold"] = None
        return kw


def plan_connections(settings: WorkerSettings) -> ConnectionPlan:
    url = settings.database_url.get_secret_value()
    mode = settings.database_pool_mode
    if mode == "auto":
        port = str(conninfo_to_dict(url).get("port") or "5432")
        mode = "transaction" if port == "6543" else "direct"
    listen = settings.listen_database_url.get_secret_value() if settings.listen_database_url else None
    if mode == "transaction":
        if listen:
            note = (
                "DATABASE_URL is a transaction pooler: prepared statements off; "
                "LISTEN uses LISTEN_DATABASE_URL"
            )
        else:
            note = (
                "DATABASE_URL is a transaction pooler: prepared statements off and LISTEN unavailable; "
                f"new jobs are found by polling every {settings.poll_interval_ms} ms "
                "(set LISTEN_DATABASE_URL to a session pooler URL to wake at once)"
            )
    else:
        listen = listen or url
        note = f"connection mode {mode}: LISTEN/NOTIFY wakes idle workers, polling every {settings.poll_interval_ms} ms as fallback"
    return ConnectionPlan(url=url, mode=mode, listen_url=listen, note=note)


def make_pool(plan: ConnectionPlan, size: int) -> AsyncConnectionPool:
    """An (unopened) pool. Broken connections are replaced when returned; callers retry."""
    return AsyncConnectionPool(
        plan.url,
        min_size=1,
        max_size=size,
        kwargs=plan.connect_kwargs,
        open=False,
        timeout=30,
        name="audio-worker",
    )
