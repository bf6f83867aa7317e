"""Migration 0007 (issue 10): service_role can use every queue function, the table refuses states
no function can heal, and the old three-argument complete_job reports a repeat truthfully."""

from __future__ import annotations

import json
import shutil
import uuid

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tests.support.jobs import job, scalar
from worker.queue.db.migrate import MIGRATIONS_DIR, discover, migrate

NOOP = {"spec_version": 1}


def enqueue(conn: psycopg.Connection, **kw: object) -> uuid.UUID:
    args = "".join(f", p_{k} => %({k})s" for k in kw)
    return scalar_kw(conn, f"select audio_queue.enqueue_job('{json.dumps(NOOP)}'::jsonb{args})", **kw)


def scalar_kw(conn: psycopg.Connection, sql: str, **kw: object) -> object:
    return conn.execute(sql, kw).fetchone()[0]


def claim(conn: psycopg.Connection, lease_seconds: int = 30) -> dict:
    return (
        conn.cursor(row_factory=dict_row)
        .execute("select * from audio_queue.get_next_pending_job('w1', 1, %s)", (lease_seconds,))
        .fetchone()
    )


# -- states the functions cannot heal -----------------------------------------------------------


def test_a_processing_row_without_a_lease_or_a_waiting_row_out_of_attempts_is_refused(conn):
    with pytest.raises(psycopg.errors.CheckViolation, match="jobs_processing_has_a_lease"):
        conn.execute("insert into audio_queue.jobs (payload, status) values ('{}', 'processing')")
    with pytest.raises(psycopg.errors.CheckViolation, match="jobs_waiting_has_attempts_left"):
        conn.execute("insert into audio_queue.jobs (payload, attempts, max_attempts) values ('{}', 3, 3)")
    jid = enqueue(conn)
    with pytest.raises(psycopg.errors.CheckViolation, match="jobs_processing_has_a_lease"):
        conn.execute("update audio_queue.jobs set status = 'processing' where id = %s", (jid,))
    # what the functions do stays allowed: claim, retry, release, rescue, requeue
    j = claim(conn, lease_seconds=1)
    assert scalar(conn, "select audio_queue.release_job(%s, %s)", jid, j["lease_id"])
    conn.execute("insert into audio_queue.jobs (payload, attempts, max_attempts) values ('{}', 2, 3)")


def test_rows_already_in_such_states_are_healed_by_the_upgrade(pg, tmp_path):
    url = pg.create("aw_heal")
    try:
        old = tmp_path / "migrations"
        shutil.copytree(MIGRATIONS_DIR, old)
        for m in discover():
            if m.version >= 7:
                (old / m.path.name).unlink()
        migrate(url, old, log=lambda _m: None)
        with psycopg.connect(url, autocommit=True) as c:
            stuck = scalar(
                c, "insert into audio_queue.jobs (payload, status) values ('{}', 'processing') returning id"
            )
            spent = scalar(
                c,
                "insert into audio_queue.jobs (payload, attempts, max_attempts) values ('{}', 5, 3) returning id",
            )
            migrate(url, log=lambda _m: None)
            assert job(c, spent)["status"] == "failed"
            assert (
                job(c, spent)["error_message"]
                == "out of attempts before it ran: attempts 5 of max_attempts 3"
            )
            assert job(c, stuck)["status"] == "processing"
            assert scalar(c, "select audio_queue.reset_stuck_jobs()") == 1  # the rescuer heals it now
            row = job(c, stuck)
            assert row["status"] == "pending" and row["rescue_count"] == 1 and row["attempts"] == 0
            assert scalar(c, "select count(*) from audio_queue.get_next_pending_job('w', 5, 30)") == 1
    finally:
        pg.drop(url)


# -- complete_job without a lease, repeated after a lost reply ------------------------------------


def test_the_old_three_argument_complete_job_repeated_returns_true_only_for_its_own_outcome(conn):
    ok = enqueue(conn)
    claim(conn)
    result = Jsonb({"wav_url": "https://x/a.wav", "mp3_url": "https://x/a.mp3"})
    assert scalar(conn, "select audio_queue.complete_job(%s, %s, null)", ok, result) is True
    assert scalar(conn, "select audio_queue.complete_job(%s, %s, null)", ok, result) is True  # the repeat
    other = Jsonb({"wav_url": "https://x/b.wav"})
    assert scalar(conn, "select audio_queue.complete_job(%s, %s, null)", ok, other) is False
    assert scalar(conn, "select audio_queue.complete_job(%s, null, 'late error', null)", ok) is False
    assert job(conn, ok)["status"] == "completed" and job(conn, ok)["result"]["wav_url"] == "https://x/a.wav"

    bad = enqueue(conn, max_attempts=1)
    claim(conn)
    assert scalar(conn, "select audio_queue.complete_job(%s, null, 'boom')", bad) is True
    assert scalar(conn, "select audio_queue.complete_job(%s, null, 'boom')", bad) is True
    assert scalar(conn, "select audio_queue.complete_job(%s, null, 'other')", bad) is False
    assert scalar(conn, "select audio_queue.complete_job(%s, '{}'::jsonb, null)", bad) is False

    retry = enqueue(conn)
    claim(conn)
    sql = "select audio_queue.complete_job(%s, null, 'flaky', null, true)"
    assert scalar(conn, sql, retry) is True
    assert scalar(conn, sql, retry) is True
    assert job(conn, retry)["status"] == "pending" and job(conn, retry)["attempts"] == 1

    # with a lease nothing changed: the holder's repeat is true, a stale caller false
    fenced = enqueue(conn)
    j = claim(conn)
    assert scalar(conn, "select audio_queue.complete_job(%s, '{}'::jsonb, null, %s)", fenced, j["lease_id"])
    assert scalar(conn, "select audio_queue.complete_job(%s, '{}'::jsonb, null, %s)", fenced, j["lease_id"])
    assert not scalar(
        conn, "select audio_queue.complete_job(%s, '{}'::jsonb, null, %s)", fenced, uuid.uuid4()
    )
