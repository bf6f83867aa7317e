"""Suite-wide fixtures: a throwaway PostgreSQL database with the migrations applied."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from tests.support.pg import TestDatabases
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
    """The migrated database, emptied of jobs and with default queue settings."""
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute("truncate audio_queue.jobs cascade")  # and the webhook outbox
        conn.execute("delete from audio_queue.settings")
        conn.execute("insert into audio_queue.settings default values")
    return migrated_url


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c
