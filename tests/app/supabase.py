"""Supabase's conventions in a throwaway cluster, and requests made the way its servers make them.

- :class:`SupabaseCluster`: initdb'd cluster with anon/authenticated/service_role/authenticator
  (``supabase_roles.sql``) and, per database, auth/storage/realtime (``supabase_schemas.sql``).
- :func:`request`: a transaction as PostgREST, Storage and Realtime open one for a user: role set
  locally, the JWT claims in ``request.jwt.claims``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from tests.support.pg import TempCluster
from worker.local.pg import LocalDatabases
from worker.queue.db.migrate import MIGRATIONS_DIR, migrate

HERE = Path(__file__).parent


class SupabaseCluster:
    """A throwaway cluster with Supabase's roles; hands out databases with its schemas."""

    def __init__(self) -> None:
        self.cluster = TempCluster()
        try:
            with psycopg.connect(self.cluster.url, autocommit=True) as conn:
                conn.execute((HERE / "supabase_roles.sql").read_bytes())
            self.dbs = LocalDatabases(self.cluster.url)
        except BaseException:
            self.cluster.stop()
            raise

    def database(
        self, *, supabase: bool = True, migrated: bool = False, migrations: Path = MIGRATIONS_DIR
    ) -> str:
        url = self.dbs.create("aw_supa")
        if supabase:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute((HERE / "supabase_schemas.sql").read_bytes())
        if migrated:
            migrate(url, migrations, log=lambda _m: None)
        return url

    def close(self) -> None:
        try:
            self.dbs.close()
        finally:
            self.cluster.stop()


@contextmanager
def request(url: str, role: str, sub: uuid.UUID | None = None) -> Iterator[psycopg.Connection]:
    """One transaction as ``role`` with JWT claims for user ``sub``; committed at the end."""
    claims: dict[str, str] = {"role": role}
    if sub is not None:
        claims["sub"] = str(sub)
    with psycopg.connect(url, row_factory=dict_row) as conn:
        conn.execute(
            "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
            (role, json.dumps(claims)),
        )
        yield conn
