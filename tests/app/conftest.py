"""A throwaway cluster with Supabase's roles and schemas, shared by the app-side tests.

Roles are cluster-wide, so these tests never create them on the shared server: they start their
own cluster (worker.local.pg.TempCluster, a few seconds), always, whatever the shared server has.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from tests.app.supabase import SupabaseCluster


@pytest.fixture(scope="package")
def supabase() -> Iterator[SupabaseCluster]:
    cluster = SupabaseCluster()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="package")
def supa_url(supabase: SupabaseCluster) -> str:
    """One migrated database with Supabase's auth, storage and realtime schemas."""
    return supabase.database(migrated=True)


@pytest.fixture
def supa(supa_url: str) -> Iterator[psycopg.Connection]:
    """An admin connection (the migration role, like Supabase's postgres) to a clean queue."""
    with psycopg.connect(supa_url, autocommit=True) as conn:
        conn.execute("truncate audio_queue.jobs cascade")
        conn.execute("update audio_queue.settings set max_live_jobs_per_user = null")
        conn.execute("truncate realtime.messages, storage.objects")
        conn.execute("delete from storage.buckets")
        yield conn
