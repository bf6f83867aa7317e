"""Privileges, on every run: nothing the migrations create is reachable by anon or authenticated
beyond the client API, on a cluster whose roles are Supabase's (its own throwaway cluster, so this
never skips, whatever roles the shared server has)."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg

from tests.app.privileges import CLIENT_API, snapshot, violations
from tests.app.supabase import SupabaseCluster
from worker.queue.db.migrate import MIGRATIONS_DIR, discover, migrate


def migrated_violations(supabase: SupabaseCluster, migrations: Path = MIGRATIONS_DIR) -> list[str]:
    url = supabase.database()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            before = snapshot(conn)
            migrate(url, migrations, log=lambda _m: None)
            return violations(conn, before)
    finally:
        supabase.dbs.drop(url)


def test_only_the_client_api_is_reachable_and_only_by_authenticated(supabase):
    assert migrated_violations(supabase) == []


def test_service_role_may_use_every_queue_function(supa):
    """Server-side code (service_role) keeps the whole queue, as before the client API."""
    refused = supa.execute(
        "select p.oid::regprocedure::text from pg_proc p where p.pronamespace = 'audio_queue'::regnamespace "
        "and p.prokind = 'f' and p.prorettype <> 'trigger'::regtype "
        "and not has_function_privilege('service_role', p.oid, 'EXECUTE')"
    ).fetchall()
    assert refused == []


def test_a_migration_that_forgets_apply_privileges_fails_the_check(supabase, tmp_path):
    mdir = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, mdir)
    n = discover()[-1].version + 1
    (mdir / f"{n:04d}_forgot_privileges.sql").write_text(
        "create function audio_queue.oops() returns integer language sql as 'select 1';\n"
        "create function audio_api.oops_too() returns integer language sql as 'select 2';\n"
        "create table audio_queue.oops_table (id integer);\n"
        "grant select on audio_queue.oops_table to authenticated;\n"
    )
    found = migrated_violations(supabase, mdir)
    assert "anon may execute audio_queue.oops()" in found
    assert "authenticated may execute audio_queue.oops()" in found
    assert "anon may execute audio_api.oops_too()" in found
    assert "authenticated has SELECT on audio_queue.oops_table" in found


def test_the_client_api_is_what_the_registry_grants(supa):
    """The SQL registry (audio_queue.client_functions) and this test's allow-list agree."""
    rows = supa.execute(
        "select regexp_replace(to_regprocedure(signature)::text, ',\\s+', ',', 'g') "
        "from audio_queue.client_functions"
    ).fetchall()
    assert {r[0] for r in rows} == CLIENT_API
