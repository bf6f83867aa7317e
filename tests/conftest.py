"""Suite-wide fixtures: a throwaway PostgreSQL database with the migrations applied."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from tests.support.pg import TestDatabases
from tests.support.pgbouncer import PgBouncer
from worker.queue.db.migrate import migrate


@pytest.fixture(scope="session")
def pg() -> Iterator[TestDatabases]:
    """The test server; every database made through it is dropped at the end of the run."""
    dbs = TestDatabases()
    try:
        yield dbs
    finally:
        dbs.close()


@pytest.fixture(scope="session")
def migrated_url(pg: TestDatabases) -> str:
    """One database for the run, migrated with ``worker.queue.db.migrate`` (as production does)."""
    url = pg.create()
    migrate(url, log=lambda _msg: None)
    return url


@pytest.fixture
def db_url(migrated_url: str) -> str:
    """The migrated database, emptied of jobs and provider slots, with default queue settings."""
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute("truncate audio_queue.jobs cascade")  # and the webhook outbox
        conn.execute(
            "truncate audio_queue.provider_leases, audio_queue.provider_requests, audio_queue.provider_limits"
        )
        conn.execute("delete from audio_queue.settings")
        conn.execute("insert into audio_queue.settings default values")
    return migrated_url


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


@pytest.fixture(scope="session")
def pgbouncer(pg: TestDatabases) -> Iterator[PgBouncer]:
    """A real PgBouncer in transaction mode (pool size 2) in front of the test server, like
    Supabase's transaction pooler; ``pgbouncer.url(db_url)`` reaches a test database through it."""
    bouncer = PgBouncer(pg.admin_url, pool_mode="transaction", pool_size=2)
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture(scope="session")
def pgbouncer_session(pg: TestDatabases) -> Iterator[PgBouncer]:
    """The same in session mode (one server session per client for its whole life)."""
    bouncer = PgBouncer(pg.admin_url, pool_mode="session", pool_size=20)
    try:
        yield bouncer
    finally:
        bouncer.stop()
