"""Migration 0007 (issue 10): service_role can use every queue function, the table refuses states
no function can heal, and the old three-argument complete_job reports a repeat truthfully."""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tests.support.jobs import job, scalar
from tests.support.pg import TempCluster
from worker.queue.db.migrate import MIGRATIONS_DIR, discover, migrate

NOOP = {"spec_version": 1}
REPO = Path(__file__).resolve().parents[2]


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


# -- service_role, in a cluster whose roles are made like Supabase's ------------------------------


@pytest.fixture(scope="module")
def supabase_url() -> Iterator[str]:
    """A throwaway cluster (roles are cluster-wide: the shared server is left alone) with Supabase's
    API roles: anon and authenticated (NOLOGIN), service_role (NOLOGIN, BYPASSRLS, not superuser)."""
    cluster = TempCluster()
    try:
        with psycopg.connect(cluster.url, autocommit=True) as c:
            c.execute("create role anon nologin noinherit")
            c.execute("create role authenticated nologin noinherit")
            c.execute("create role service_role nologin noinherit bypassrls")
            c.execute("create database supa")
        url = cluster.url.rsplit("/", 1)[0] + "/supa"
        with psycopg.connect(url, autocommit=True) as c:  # Supabase's defaults for new functions
            c.execute(
                "alter default privileges grant execute on functions to anon, authenticated, service_role"
            )
        migrate(url, log=lambda _m: None)
        yield url
    finally:
        cluster.stop()


def test_every_function_the_readme_offers_works_as_service_role(supabase_url):
    objects = Jsonb([{"bucket": "b", "key": "k.wav"}])
    with psycopg.connect(supabase_url, autocommit=True) as c:
        c.execute("set role service_role")
        assert scalar(c, "select rolbypassrls and not rolsuper from pg_roles where rolname = current_user")

        # retryable failure: reads the retry tunables (was "permission denied for table settings")
        a = enqueue(c)
        ja = claim(c)
        assert ja["id"] == a
        assert scalar(c, "select audio_queue.update_job_progress(%s, 50, 'mix', %s)", a, ja["lease_id"])
        assert scalar(c, "select audio_queue.record_objects(%s, %s, %s)", a, ja["lease_id"], objects)
        assert scalar(c, "select audio_queue.forget_objects(%s, %s)", a, objects)
        assert scalar_kw(
            c,
            "select audio_queue.complete_job(%(id)s, null, 'flaky', %(lease)s, p_retryable => true)",
            id=a,
            lease=ja["lease_id"],
        )
        assert job(c, a)["status"] == "pending" and job(c, a)["last_error"] == "flaky"

        # success, batch success, the old 3-argument call, release, cancel
        ids = [enqueue(c) for _ in range(4)]
        j1, j2, j3, j4 = (claim(c) for _ in ids)
        assert scalar(
            c, "select audio_queue.complete_job(%s, '{}'::jsonb, null, %s)", j1["id"], j1["lease_id"]
        )
        assert scalar(
            c,
            "select audio_queue.complete_jobs(array[%s]::uuid[], array[%s]::uuid[], array['{}'::jsonb])",
            j2["id"],
            j2["lease_id"],
        ) == [True]
        assert scalar(c, "select audio_queue.complete_job(%s, '{}'::jsonb, null)", j3["id"])
        assert scalar(c, "select audio_queue.release_job(%s, %s)", j4["id"], j4["lease_id"])
        assert scalar(c, "select audio_queue.cancel_job(%s)", j4["id"])

        # the rescuer: reads max_rescues (was "permission denied for table settings")
        stuck = enqueue(c)
        claim(c)
        c.execute(
            "update audio_queue.jobs set lease_expires_at = now() - interval '1 second' where id = %s",
            (stuck,),
        )
        assert scalar(c, "select audio_queue.reset_stuck_jobs()") == 1
        assert job(c, stuck)["status"] == "pending" and job(c, stuck)["rescue_count"] == 1
        assert (
            scalar(
                c,
                "select case when pg_try_advisory_xact_lock(hashtext('audio_queue.reset_stuck_jobs')) "
                "then audio_queue.reset_stuck_jobs() end",
            )
            == 0
        )

        # webhook outbox switches (were "permission denied for table settings") and deliveries
        assert scalar(c, "select audio_queue.enable_webhook_outbox()") is True
        done = enqueue(c)
        jd = claim(c)
        while jd["id"] != done:  # the rescued job may come first
            c.execute(
                "select audio_queue.complete_job(%s, '{}'::jsonb, null, %s)", (jd["id"], jd["lease_id"])
            )
            jd = claim(c)
        c.execute("select audio_queue.complete_job(%s, '{}'::jsonb, null, %s)", (done, jd["lease_id"]))
        notices = c.execute(
            "select id, delivery_id, job_id from audio_queue.claim_webhook_notices('w1', 10, 60)"
        ).fetchall()
        assert done in {n[2] for n in notices}
        first, *rest = notices
        assert scalar(c, "select audio_queue.webhook_delivered(%s, %s)", first[0], first[1])
        for n in rest:
            assert scalar(
                c, "select audio_queue.webhook_attempt_failed(%s, %s, 'HTTP 500', 0, true)", n[0], n[1]
            )
        assert scalar(c, "select audio_queue.disable_webhook_outbox(true)") == 0

        # operator functions
        assert scalar(c, "select pending + scheduled from audio_queue.queue_stats()") >= 1
        assert scalar(c, "select count(*) from audio_queue.orphaned_objects(10)") == 0
        failed = enqueue(c, max_attempts=1)
        jf = claim(c)
        while jf["id"] != failed:
            c.execute(
                "select audio_queue.complete_job(%s, '{}'::jsonb, null, %s)", (jf["id"], jf["lease_id"])
            )
            jf = claim(c)
        assert scalar(c, "select audio_queue.complete_job(%s, null, 'bad', %s)", failed, jf["lease_id"])
        assert scalar(c, "select audio_queue.requeue_jobs(%s)", failed) == 1
        assert scalar(c, "select audio_queue.purge_finished_jobs('1 hour')") == 0
        c.execute("insert into audio_queue.jobs (payload) values ('{}')")  # the README's plain INSERT
        once = scalar(c, "select audio_queue.enqueue_job_once('order-7', '{}'::jsonb)")
        assert scalar(c, "select audio_queue.enqueue_job_once('order-7', '{}'::jsonb)") == once
        assert scalar(c, "select (audio_queue.queue_settings()).max_rescues") == 3
        # but the tunables stay the DBA's: no rights on the table itself
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("update audio_queue.settings set max_rescues = 0")


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


def test_the_service_role_test_calls_every_function_of_the_readme_lifecycle_table():
    """A function added to the README's table must be added to the service_role test above."""
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("| Function | What it does |") :]
    table = table[: table.index("\n\n")]
    offered = set(re.findall(r"`([a-z_0-9]+)\(", table))
    assert {"enqueue_job", "complete_job", "reset_stuck_jobs"} <= offered
    # the service_role test and the helpers it uses (enqueue, claim)
    source = Path(__file__).read_text().split("# -- states the functions cannot heal")[0]
    called = set(re.findall(r"audio_queue\.([a-z_0-9]+)\(", source))
    assert offered <= called, f"not tried as service_role: {sorted(offered - called)}"
