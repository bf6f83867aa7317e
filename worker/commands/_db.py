"""The operator commands' database connection: DATABASE_URL from WorkerSettings, errors without secrets."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from worker.config import load_worker_settings, password_of
from worker.queue.db.connect import safe_dsn


class CommandError(Exception):
    """A failure to report in one line (exit status 1); never holds a secret."""


@contextmanager
def connect(prog: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection on DATABASE_URL; a connection or query error becomes a
    :class:`CommandError` naming the server as ``user@host:port/db`` (never the password)."""
    url = load_worker_settings().database_url.get_secret_value()
    try:
        # prepare_threshold=None: also safe through Supabase's transaction pooler.
        with psycopg.connect(
            url,
            autocommit=True,
            prepare_threshold=None,
            connect_timeout=10,
            application_name=f"audio-worker {prog}",
        ) as conn:
            yield conn
    except psycopg.Error as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        pw = password_of(url)
        if pw:
            msg = msg.replace(pw, "***")
        raise CommandError(f"database error on {safe_dsn(url)}: {msg}") from None


def fail(prog: str, message: str) -> int:
    """Print ``prog: message`` on stderr; the exit status 1."""
    print(f"{prog}: {message}", file=sys.stderr)
    return 1
