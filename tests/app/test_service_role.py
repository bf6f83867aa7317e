"""service_role (on Supabase: BYPASSRLS, not a superuser) can use every queue function the README
offers it, on the app tests' cluster whose roles are made like Supabase's (issue 10, point 2: the
retry path of complete_job, reset_stuck_jobs and the webhook outbox switches once failed with
"permission denied for table settings")."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tests.support.jobs import job, scalar

REPO = Path(__file__).resolve().parents[2]


def enqueue(conn: psycopg.Connection, **kw: object) -> uuid.UUID:
    args = "".join(f", p_{k} => %({k})s" for k in kw)
    return conn.execute(f"select audio_queue.enqueue_job('{{}}'::jsonb{args})", kw).fetchone()[0]


def claim(conn: psycopg.Connection) -> dict[str, Any]:
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute("select * from audio_queue.get_next_pending_job('w1', 1, 30)").fetchone()


def scalar_kw(conn: psycopg.Connection, sql: str, **kw: object) -> object:
    return conn.execute(sql, kw).fetchone()[0]


def test_every_function_the_readme_offers_works_as_service_role(supa, supa_url):
    objects = Jsonb([{"bucket": "b", "key": "k.wav"}])
    with psycopg.connect(supa_url, autocommit=True) as c:
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

        # the _v2 calls today's worker sends (migration 0013): the same effects, with reasons
        v1, v2, v3 = (claim(c) for _ in [enqueue(c) for _ in range(3)])
        assert (
            scalar(
                c, "select audio_queue.complete_job_v2(%s, null, 'flaky', %s, true)", v1["id"], v1["lease_id"]
            )
            == "retrying"
        )
        assert scalar(
            c,
            "select audio_queue.complete_jobs_v2(array[%s]::uuid[], array[%s]::uuid[], array['{}'::jsonb])",
            v2["id"],
            v2["lease_id"],
        ) == ["completed"]
        assert scalar(c, "select audio_queue.release_job_v2(%s, %s)", v3["id"], v3["lease_id"]) == "released"
        assert scalar(c, "select audio_queue.cancel_job(%s)", v3["id"])  # out of the next claims' way

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
        assert c.execute("select * from audio_queue.user_load(5)").fetchall() is not None

        # the dashboard's reads (0010); its job_events trigger wrote the history of `failed` above
        assert scalar(c, "select pending from audio_queue.dashboard_overview()") >= 1
        assert c.execute("select * from audio_queue.dashboard_throughput(60)").fetchall()
        assert c.execute("select * from audio_queue.dashboard_running(10)").fetchall() is not None
        assert c.execute("select * from audio_queue.dashboard_workers('1 hour')").fetchall()
        assert c.execute("select * from audio_queue.dashboard_jobs(p_error => 'bad')").fetchall()
        kinds = [r[0] for r in c.execute("select kind from audio_queue.dashboard_job_events(%s)", (failed,))]
        assert kinds == ["claimed", "failed", "requeued"]
        assert scalar(c, "select job_queue_size from audio_queue.autoscale_signal()") >= 1

        # fleet-wide provider slots (0009)
        slot = c.execute(
            "select lease_id from audio_queue.acquire_provider_slot('openai', 'acct', 1, 10, 60, 30)"
        ).fetchone()[0]
        assert slot is not None
        assert scalar(c, "select audio_queue.renew_provider_slot(%s, 30)", slot) is True
        assert (
            scalar(c, "select in_use from audio_queue.provider_slot_stats() where provider = 'openai'") == 1
        )
        assert scalar(c, "select audio_queue.release_provider_slot(%s)", slot) is True
        # but the tunables stay the DBA's: no rights on the table itself
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("update audio_queue.settings set max_rescues = 0")


def test_the_service_role_test_calls_every_function_of_the_readme_lifecycle_table():
    """A function added to the README's table must be added to the service_role test above."""
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("| Function | What it does |") :]
    table = table[: table.index("\n\n")]
    offered = set(re.findall(r"`([a-z_0-9]+)\(", table))
    assert {"enqueue_job", "complete_job", "reset_stuck_jobs"} <= offered
    # the service_role test and the helpers it uses (enqueue, claim)
    source = Path(__file__).read_text().split("def test_the_service_role_test_calls_every")[0]
    called = set(re.findall(r"audio_queue\.([a-z_0-9]+)\(", source))
    assert offered <= called, f"not tried as service_role: {sorted(offered - called)}"
