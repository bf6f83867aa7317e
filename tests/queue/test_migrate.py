"""``python -m worker migrate``: order, records, immutability, concurrency, hand-applied files."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest

from worker.queue.db.migrate import MIGRATIONS_DIR, MigrationError, discover, migrate

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def empty_db(pg):
    url = pg.create("aw_mig")
    yield url
    pg.drop(url)


def run_cli(*args: str, env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "JOB_HANDLER": "tests.handlers:noop", **env_extra}
    return subprocess.run(
        [sys.executable, "-m", "worker", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


def test_migrate_applies_once_and_records_checksums(empty_db):
    first = run_cli("migrate", env_extra={"DATABASE_URL": empty_db})
    assert first.returncode == 0, first.stderr
    assert "applied 0001_queue_core.sql" in first.stdout
    again = run_cli("migrate", env_extra={"DATABASE_URL": empty_db})
    assert again.returncode == 0 and "schema up to date" in again.stdout and "applied" not in again.stdout
    with psycopg.connect(empty_db) as conn:
        rows = conn.execute(
            "select version, checksum from audio_queue.schema_migrations order by 1"
        ).fetchall()
    assert [(v, c) for v, c in rows] == [(m.version, m.checksum) for m in discover()]


def test_a_changed_landed_migration_stops_the_run(empty_db, tmp_path):
    mdir = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, mdir)
    migrate(empty_db, mdir, log=lambda _m: None)
    target = sorted(mdir.glob("*.sql"))[0]
    target.write_text(target.read_text() + "\n-- an innocent-looking edit\n")
    (mdir / f"{len(list(mdir.glob('*.sql'))) + 1:04d}_later.sql").write_text(
        "create table audio_queue.later (x int);"
    )
    with pytest.raises(MigrationError, match=f"{target.name} changed after it was applied"):
        migrate(empty_db, mdir, log=lambda _m: None)
    with psycopg.connect(empty_db) as conn:  # nothing after the refusal was applied
        assert conn.execute("select to_regclass('audio_queue.later')").fetchone()[0] is None


def test_many_dynos_migrating_at_once_apply_each_file_once(empty_db):
    errors: list[BaseException] = []
    applied: list[list[str]] = []

    def go():
        try:
            applied.append(migrate(empty_db, log=lambda _m: None))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(applied) == 6
    # Each file applied exactly once across all dynos (with a transaction per file, two dynos may
    # share the work: one applies 0001 while the next file is taken by another).
    names = [name for a in applied for name in a]
    assert sorted(names) == sorted(m.name for m in discover())


def test_files_apply_with_plain_psql_and_the_runner_adopts_them(empty_db):
    psql = shutil.which("psql")
    if not psql:
        pytest.skip("psql is not installed")
    for m in discover():
        out = subprocess.run(
            [psql, empty_db, "-v", "ON_ERROR_STOP=1", "-1", "-q", "-f", str(m.path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
    assert migrate(empty_db, log=lambda _m: None) == []
    with psycopg.connect(empty_db) as conn:
        assert (
            conn.execute(
                "select count(*) from audio_queue.schema_migrations where checksum is null"
            ).fetchone()[0]
            == 0
        )


def test_worker_refuses_to_start_on_an_unmigrated_database(empty_db):
    out = run_cli("run", env_extra={"DATABASE_URL": empty_db})
    assert out.returncode == 1
    assert "no audio_queue schema yet: run `python -m worker migrate`" in out.stderr


def test_worker_refuses_to_start_on_an_older_schema(empty_db, tmp_path):
    mdir = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, mdir)
    migrate(empty_db, mdir, log=lambda _m: None)
    with psycopg.connect(empty_db, autocommit=True) as conn:  # pretend the newest migration is missing
        conn.execute(
            "delete from audio_queue.schema_migrations where version = (select max(version) from audio_queue.schema_migrations)"
        )
    out = run_cli("run", env_extra={"DATABASE_URL": empty_db})
    assert out.returncode == 1
    need = discover()[-1].version
    assert f"schema is at version {need - 1} but this worker needs {need}" in out.stderr


def test_a_database_migrated_with_the_first_revision_of_0001_is_upgraded(empty_db):
    """0001 was edited after it landed: its privileges block became audio_queue.apply_privileges(),
    which every later migration calls. A database that applied the first revision (recorded
    sha256 abcfc4c20158..., no such procedure) is bridged by migrations/revisions/ and migrated on."""
    first = discover()[0]
    with psycopg.connect(empty_db, autocommit=True) as conn:  # the state the first revision left
        conn.execute(first.sql.encode())
        conn.execute("drop procedure audio_queue.apply_privileges()")
        conn.execute(
            "update audio_queue.schema_migrations set checksum = %s where version = 1",
            ("abcfc4c2015834af9dcb43fee2a3e668699b82504f15e59a5e3032ed972a2bab",),
        )
    logs: list[str] = []
    applied = migrate(empty_db, log=logs.append)

    assert applied[0] == "0001_queue_core.abcfc4c20158" and applied[1:] == [m.name for m in discover()[1:]]
    assert logs[0].startswith("upgraded 0001_queue_core.sql from its earlier revision abcfc4c20158")
    with psycopg.connect(empty_db) as conn:
        rows = conn.execute(
            "select version, checksum from audio_queue.schema_migrations order by 1"
        ).fetchall()
        assert (
            conn.execute("select to_regprocedure('audio_queue.apply_privileges()')").fetchone()[0] is not None
        )
        public_can = conn.execute(
            "select has_function_privilege('public', "
            "'audio_queue.complete_jobs(uuid[], uuid[], jsonb[])', 'execute')"
        ).fetchone()[0]
    assert [(v, c) for v, c in rows] == [(m.version, m.checksum) for m in discover()]
    assert public_can is False
    assert migrate(empty_db, log=lambda _m: None) == []


def test_the_release_phase_refuses_a_slug_whose_ffmpeg_cannot_render(empty_db, tmp_path):
    """Heroku runs `python -m worker migrate` as the release phase: a non-zero exit stops the
    release, so a build whose ffmpeg lacks what the render engine needs never reaches the workers."""
    fake = tmp_path / "ffmpeg"  # a minimal build: no libmp3lame, no ebur128
    fake.write_text(
        '#!/bin/sh\ncase "$2" in -encoders) ffmpeg "$@" | grep -v libmp3lame ;;\n'
        '-filters) ffmpeg "$@" | grep -v ebur128 ;;\n*) exec ffmpeg "$@" ;;\nesac\n'
    )
    fake.chmod(0o755)
    out = run_cli("migrate", env_extra={"DATABASE_URL": empty_db, "FFMPEG_PATH": str(fake)})
    assert out.returncode == 1
    assert "lacks filters the render engine uses: ebur128" in out.stderr
    assert "lacks encoders the render engine uses: libmp3lame" in out.stderr
    assert "refusing to migrate" in out.stderr and "--skip-tool-check" in out.stderr
    with psycopg.connect(empty_db) as conn:  # nothing was migrated
        assert conn.execute("select to_regnamespace('audio_queue')").fetchone()[0] is None

    skipped = run_cli(
        "migrate", "--skip-tool-check", env_extra={"DATABASE_URL": empty_db, "FFMPEG_PATH": str(fake)}
    )
    assert skipped.returncode == 0, skipped.stderr
    assert "applied 0001_queue_core.sql" in skipped.stdout
