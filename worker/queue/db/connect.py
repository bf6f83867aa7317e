"""Connections: pooler detection, the connection pool and the LISTEN connection's settings.

Supabase offers three ways in: the direct host (IPv6 only), the session pooler (port 5432) and the
transaction pooler (port 6543). Behind a transaction pooler a session is not ours between
transactions, so prepared statements are off and LISTEN cannot be used (unless a separate
LISTEN_DATABASE_URL points at a session-capable endpoint). A pooler is recognised by what it does
(two connections sharing one server session), not by its port alone: a PgBouncer in transaction
mode may listen on any port.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from worker.config import WorkerSettings


def safe_dsn(url: str) -> str:
    """A conninfo rendered for humans: host, port, database and user, never the password."""
    try:
        d = conninfo_to_dict(url)
    except Exception:
        return "<unparseable DATABASE_URL>"
    return f"{d.get('user', '?')}@{d.get('host', 'localhost')}:{d.get('port', 5432)}/{d.get('dbname', '?')}"


PROBE_TIMEOUT_S = 5
PROBE_ROUNDS = 3
PROBE_LISTEN_WAIT_S = 1.0


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


def shares_backends(url: str) -> bool | None:
    """Does ``url`` hand server sessions around between transactions (a transaction pooler)?

    Two client connections ask for their backend's pid, one transaction at a time, in turns. A
    transaction pooler (PgBouncer, Supavisor) returns the backend to its pool after each
    transaction, so the clients meet on the same pid or one of them moves: True. A server that
    reports its own pid at connection (``info.backend_pid``; poolers hand out ids of their own)
    and keeps it is a direct server: False. A pooler that showed neither is asked the question
    that matters: a LISTEN on one client must hear a NOTIFY from the other (a session pooler: False;
    a transaction pooler loses it: True). The pids alone can mislead while other clients keep the
    pool's servers busy (seen: 38 of 50 three-turn probes through a busy PgBouncer). None when the
    probe could not connect (the caller falls back to the port rule).
    """
    kw: dict[str, Any] = {
        "autocommit": True,
        "prepare_threshold": None,
        "connect_timeout": PROBE_TIMEOUT_S,
        "application_name": "audio-worker probe",
    }
    try:
        with psycopg.connect(url, **kw) as a, psycopg.connect(url, **kw) as b:
            seen: dict[str, set[int]] = {"a": set(), "b": set()}
            for _ in range(PROBE_ROUNDS):
                for name, conn in (("a", a), ("b", b)):
                    row = conn.execute("select pg_backend_pid()").fetchone()
                    seen[name].add(int(row[0]) if row else -1)
            if len(seen["a"]) > 1 or len(seen["b"]) > 1 or seen["a"] & seen["b"]:
                return True
            if seen["a"] == {a.info.backend_pid} and seen["b"] == {b.info.backend_pid}:
                return False
            channel = f"audio_worker_probe_{uuid.uuid4().hex}"
            a.execute(f"listen {channel}")
            b.execute(f"notify {channel}")
            heard = any(True for _ in a.notifies(timeout=PROBE_LISTEN_WAIT_S, stop_after=1))
            return not heard
    except psycopg.Error:
        return None


Probe = Callable[[str], "bool | None"]


def plan_connections(settings: WorkerSettings, probe: Probe | None = shares_backends) -> ConnectionPlan:
    """Decide the connection mode; unless DATABASE_POOL_MODE=transaction, ``probe`` checks by
    behaviour whether DATABASE_URL (and LISTEN_DATABASE_URL) is a transaction pooler, whatever
    the port: LISTEN through one would be lost when the backend goes back to the pool."""
    url = settings.database_url.get_secret_value()
    configured = settings.database_pool_mode
    listen = settings.listen_database_url.get_secret_value() if settings.listen_database_url else None
    port = str(conninfo_to_dict(url).get("port") or "5432")
    mode: str = configured
    why = f"DATABASE_POOL_MODE={configured}"
    if configured == "auto" and port == "6543":
        mode, why = "transaction", "port 6543, Supabase's transaction pooler"
    elif configured != "transaction":
        shared = probe(url) if probe else None
        if shared:
            mode = "transaction"
            why = "it shares server sessions between transactions (probed at start)"
            if configured != "auto":
                why += f"; DATABASE_POOL_MODE={configured} overridden"
        elif configured == "auto":
            mode = "direct"
            why = "probed at start: one server session per connection" if shared is False else "auto"
    notes: list[str] = []
    if listen and probe and probe(listen):
        notes.append("LISTEN_DATABASE_URL behaves like a transaction pooler: LISTEN refused there")
        listen = None
    if mode == "transaction":
        if listen:
            note = (
                f"DATABASE_URL is a transaction pooler ({why}): prepared statements off; "
                "LISTEN uses LISTEN_DATABASE_URL"
            )
        else:
            note = (
                f"DATABASE_URL is a transaction pooler ({why}): prepared statements off and LISTEN "
                f"unavailable; new jobs are found by polling every {settings.poll_interval_ms} ms "
                "(set LISTEN_DATABASE_URL to a session pooler URL to wake at once)"
            )
    else:
        listen = listen or url
        note = (
            f"connection mode {mode} ({why}): LISTEN/NOTIFY wakes idle workers, polling every "
            f"{settings.poll_interval_ms} ms as fallback"
        )
    return ConnectionPlan(url=url, mode=mode, listen_url=listen, note="; ".join([note, *notes]))


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
