"""The queue's rules, exercised through the SQL functions exactly as apps and DBAs call them."""

from __future__ import annotations

import json
import threading
import uuid

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.support.jobs import job, scalar


def enqueue(conn, payload=None, **kw) -> uuid.UUID:
    args = ", ".join(f"p_{k} => %({k})s" for k in kw)
    sql = f"select audio_queue.enqueue_job(%(payload)s::jsonb{', ' + args if args else ''})"
    return conn.execute(sql, {"payload": json.dumps(payload or {}), **kw}).fetchone()[0]


def claim(conn, worker="w1", limit=1, lease=600) -> list[dict]:
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute(
        "select * from audio_queue.get_next_pending_job(%s, %s, %s)", (worker, limit, lease)
    ).fetchall()


def test_enqueue_then_claim_sets_processing_with_a_fresh_lease(conn):
    jid = enqueue(conn, {"kind": "test"})
    row = job(conn, jid)
    assert row["status"] == "pending" and row["attempts"] == 0
    (claimed,) = claim(conn, "worker-a", lease=30)
    assert claimed["id"] == jid
    assert claimed["status"] == "processing"
    assert claimed["attempts"] == 1
    assert claimed["locked_by"] == "worker-a"
    assert claimed["lease_id"] is not None
    lease_left = (claimed["lease_expires_at"] - claimed["heartbeat_at"]).total_seconds()
    assert 29 <= lease_left <= 31
    assert claim(conn) == []  # nothing else to claim


def test_old_apps_calls_keep_working(conn):
    """get_next_pending_job() with no arguments and the 3-argument complete_job."""
    jid = enqueue(conn, {"prompt": "rain"})
    row = (
        conn.cursor(row_factory=dict_row)
        .execute("select * from audio_queue.get_next_pending_job()")
        .fetchone()
    )
    assert row["id"] == jid and row["locked_by"] == "anonymous"
    ok = scalar(
        conn,
        "select audio_queue.complete_job(%s, %s::jsonb, null)",
        jid,
        json.dumps({"wav_url": "https://x/a.wav", "mp3_url": "https://x/a.mp3"}),
    )
    assert ok is True
    done = job(conn, jid)
    assert done["status"] == "completed"
    assert (done["wav_url"], done["mp3_url"], done["result_url"]) == (
        "https://x/a.wav",
        "https://x/a.mp3",
        "https://x/a.mp3",
    )
    assert done["progress"] == 100 and done["completed_at"] is not None


def test_queued_is_an_alias_of_pending(conn):
    conn.execute("insert into audio_queue.jobs (status, payload) values ('queued', '{}')")
    (row,) = claim(conn)
    assert row["status"] == "processing"


def test_highest_priority_then_oldest_run_at_first(conn):
    low = enqueue(conn, {"n": 1}, priority=0, run_at="2020-01-01T00:00:00Z")
    high = enqueue(conn, {"n": 2}, priority=5)
    older = enqueue(conn, {"n": 3}, priority=0, run_at="2019-01-01T00:00:00Z")
    order = [claim(conn)[0]["id"] for _ in range(3)]
    assert order == [high, older, low]


def test_future_run_at_is_not_claimed_until_due(conn):
    enqueue(conn, {}, run_at="2999-01-01T00:00:00Z")
    assert claim(conn) == []


def test_claim_many_at_once(conn):
    for i in range(5):
        enqueue(conn, {"i": i})
    assert len(claim(conn, limit=3)) == 3
    assert len(claim(conn, limit=3)) == 2


def test_idempotency_key_returns_the_live_job(conn):
    a = enqueue(conn, {"v": 1}, idempotency_key="order-42")
    b = enqueue(conn, {"v": 2}, idempotency_key="order-42")
    assert a == b
    assert scalar(conn, "select count(*) from audio_queue.jobs") == 1
    (row,) = claim(conn)
    assert enqueue(conn, {"v": 3}, idempotency_key="order-42") == a  # still live while processing
    scalar(conn, "select audio_queue.complete_job(%s, '{}'::jsonb, null, %s)", a, row["lease_id"])
    c = enqueue(conn, {"v": 4}, idempotency_key="order-42")  # finished: a new job
    assert c != a


def test_idempotency_under_concurrent_enqueues(db_url):
    ids: list[uuid.UUID] = []
    lock = threading.Lock()

    def go():
        with psycopg.connect(db_url, autocommit=True) as c:
            jid = enqueue(c, {}, idempotency_key="same")
            with lock:
                ids.append(jid)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(ids) == 8 and len(set(ids)) == 1


def test_enqueue_rejects_bad_arguments_with_a_clear_message(conn):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="p_payload must be a JSON object"):
        conn.execute("select audio_queue.enqueue_job('[1,2]'::jsonb)")
    with pytest.raises(
        psycopg.errors.InvalidParameterValue, match="p_max_attempts must be between 1 and 100"
    ):
        conn.execute("select audio_queue.enqueue_job('{}'::jsonb, p_max_attempts => 0)")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="p_limit must be between 1 and 1000"):
        conn.execute("select * from audio_queue.get_next_pending_job('w', 0)")


def test_stale_lease_cannot_complete_a_reclaimed_job(conn):
    jid = enqueue(conn, {})
    (first,) = claim(conn, "a", lease=1)
    conn.execute(
        "update audio_queue.jobs set lease_expires_at = now() - interval '1 second' where id = %s", (jid,)
    )
    assert scalar(conn, "select audio_queue.reset_stuck_jobs()") == 1
    (second,) = claim(conn, "b")
    assert second["id"] == jid and second["lease_id"] != first["lease_id"]
    # The first holder wakes up and tries to publish: refused, on every call.
    assert (
        scalar(
            conn,
            'select audio_queue.complete_job(%s, \'{"mp3_url":"stale"}\'::jsonb, null, %s)',
            jid,
            first["lease_id"],
        )
        is False
    )
    assert (
        scalar(conn, "select audio_queue.update_job_progress(%s, 50, 'render', %s)", jid, first["lease_id"])
        is False
    )
    assert scalar(conn, "select audio_queue.release_job(%s, %s)", jid, first["lease_id"]) is False
    assert job(conn, jid)["status"] == "processing" and job(conn, jid)["mp3_url"] is None
    assert (
        scalar(
            conn,
            'select audio_queue.complete_job(%s, \'{"mp3_url":"fresh"}\'::jsonb, null, %s)',
            jid,
            second["lease_id"],
        )
        is True
    )
    assert job(conn, jid)["mp3_url"] == "fresh"


def test_repeating_a_completion_whose_reply_was_lost_reports_success(conn):
    jid = enqueue(conn, {})
    (row,) = claim(conn)
    for _ in range(2):
        assert (
            scalar(conn, "select audio_queue.complete_job(%s, '{}'::jsonb, null, %s)", jid, row["lease_id"])
            is True
        )
    assert (
        scalar(conn, "select audio_queue.complete_job(%s, null, 'boom', %s)", jid, row["lease_id"]) is False
    )


def test_progress_is_the_heartbeat(conn):
    jid = enqueue(conn, {})
    (row,) = claim(conn, lease=5)
    conn.execute(
        "update audio_queue.jobs set lease_expires_at = now() + interval '1 second' where id = %s", (jid,)
    )
    assert (
        scalar(conn, "select audio_queue.update_job_progress(%s, 140, 'render', %s)", jid, row["lease_id"])
        is True
    )
    after = job(conn, jid)
    assert after["progress"] == 100 and after["stage"] == "render"  # clamped to 0-100
    assert (after["lease_expires_at"] - after["heartbeat_at"]).total_seconds() == pytest.approx(5, abs=0.5)


def test_retryable_error_goes_back_with_backoff_until_attempts_run_out(conn):
    conn.execute("update audio_queue.settings set retry_base_seconds = 10, retry_cap_seconds = 15")
    jid = enqueue(conn, {}, max_attempts=3)
    delays = []
    for attempt in (1, 2):
        conn.execute("update audio_queue.jobs set run_at = now() where id = %s", (jid,))
        (row,) = claim(conn)
        assert row["attempts"] == attempt
        assert scalar(
            conn, "select audio_queue.complete_job(%s, null, 'provider 503', %s, true)", jid, row["lease_id"]
        )
        after = job(conn, jid)
        assert after["status"] == "pending" and after["last_error"] == "provider 503"
        delays.append((after["run_at"] - after["updated_at"]).total_seconds())
    assert 5 <= delays[0] <= 10  # base 10 s, half of it jitter
    assert 7.5 <= delays[1] <= 15  # doubled to 20, capped at 15, jittered
    conn.execute("update audio_queue.jobs set run_at = now() where id = %s", (jid,))
    (row,) = claim(conn)
    scalar(
        conn,
        "select audio_queue.complete_job(%s, null, 'provider 503 again', %s, true)",
        jid,
        row["lease_id"],
    )
    final = job(conn, jid)
    assert final["status"] == "failed" and final["error_message"] == "provider 503 again"


def test_non_retryable_error_fails_at_once(conn):
    jid = enqueue(conn, {}, max_attempts=5)
    (row,) = claim(conn)
    scalar(
        conn,
        "select audio_queue.complete_job(%s, null, 'invalid payload: layers[0].beat_hz: too high', %s)",
        jid,
        row["lease_id"],
    )
    assert job(conn, jid)["status"] == "failed" and job(conn, jid)["attempts"] == 1


def test_release_hands_back_without_spending_an_attempt(conn):
    jid = enqueue(conn, {})
    (row,) = claim(conn)
    assert scalar(conn, "select audio_queue.release_job(%s, %s)", jid, row["lease_id"]) is True
    after = job(conn, jid)
    assert after["status"] == "pending" and after["attempts"] == 0 and after["lease_id"] is None


def test_cancel_pending_is_immediate(conn):
    jid = enqueue(conn, {})
    assert scalar(conn, "select audio_queue.cancel_job(%s)", jid) is True
    assert job(conn, jid)["status"] == "cancelled"
    assert claim(conn) == []
    assert scalar(conn, "select audio_queue.cancel_job(%s)", jid) is False


def test_cancel_processing_stops_at_next_heartbeat(conn):
    jid = enqueue(conn, {})
    (row,) = claim(conn)
    assert scalar(conn, "select audio_queue.cancel_job(%s)", jid) is True
    assert job(conn, jid)["status"] == "processing"
    assert (
        scalar(conn, "select audio_queue.update_job_progress(%s, 10, null, %s)", jid, row["lease_id"])
        is False
    )
    assert scalar(conn, "select audio_queue.release_job(%s, %s)", jid, row["lease_id"]) is True
    assert job(conn, jid)["status"] == "cancelled"


def test_completion_of_a_cancelled_job_is_refused(conn):
    jid = enqueue(conn, {})
    (row,) = claim(conn)
    scalar(conn, "select audio_queue.cancel_job(%s)", jid)
    assert (
        scalar(conn, "select audio_queue.complete_job(%s, '{}'::jsonb, null, %s)", jid, row["lease_id"])
        is False
    )
    assert job(conn, jid)["status"] == "cancelled"


def test_reset_stuck_jobs_requeues_expired_and_stale_only(conn):
    expired, stale, healthy = enqueue(conn, {"n": 1}), enqueue(conn, {"n": 2}), enqueue(conn, {"n": 3})
    claim(conn, "dead-worker", limit=3)
    conn.execute(
        "update audio_queue.jobs set lease_expires_at = now() - interval '1 s' where id = %s", (expired,)
    )
    conn.execute(
        "update audio_queue.jobs set heartbeat_at = now() - interval '11 minutes' where id = %s", (stale,)
    )
    assert scalar(conn, "select audio_queue.reset_stuck_jobs()") == 2
    for jid in (expired, stale):
        row = job(conn, jid)
        assert row["status"] == "pending" and row["rescue_count"] == 1 and row["lease_id"] is None
        assert "dead-worker" in row["last_error"]
    assert job(conn, healthy)["status"] == "processing"
    assert scalar(conn, "select audio_queue.reset_stuck_jobs(interval '1 hour')") == 0


def test_a_poison_job_fails_after_the_rescue_limit(conn):
    conn.execute("update audio_queue.settings set max_rescues = 2")
    jid = enqueue(conn, {}, max_attempts=100)
    for _ in range(3):
        claim(conn, "w")
        conn.execute(
            "update audio_queue.jobs set lease_expires_at = now() - interval '1 s' where id = %s", (jid,)
        )
        scalar(conn, "select audio_queue.reset_stuck_jobs()")
    row = job(conn, jid)
    assert row["status"] == "failed"
    assert "rescue limit of 2" in row["error_message"]
    assert row["attempts"] == 3


def test_a_killed_job_out_of_attempts_fails(conn):
    jid = enqueue(conn, {}, max_attempts=1)
    claim(conn)
    conn.execute(
        "update audio_queue.jobs set lease_expires_at = now() - interval '1 s' where id = %s", (jid,)
    )
    scalar(conn, "select audio_queue.reset_stuck_jobs()")
    assert job(conn, jid)["status"] == "failed"
    assert "last of 1 attempts" in job(conn, jid)["error_message"]


def test_enqueue_and_release_notify_listeners(db_url, conn):
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("listen audio_queue_jobs")
        jid = enqueue(conn, {})
        got = list(listener.notifies(timeout=2, stop_after=1))
        assert [n.channel for n in got] == ["audio_queue_jobs"]
        # A plain INSERT by an app wakes workers too.
        conn.execute("insert into audio_queue.jobs (payload) values ('{}')")
        assert len(list(listener.notifies(timeout=2, stop_after=1))) == 1
        (row,) = claim(conn)
        scalar(conn, "select audio_queue.release_job(%s, %s)", row["id"], row["lease_id"])
        assert len(list(listener.notifies(timeout=2, stop_after=1))) == 1
    assert jid


def test_functions_are_not_executable_by_public_and_rls_is_on(conn, db_url):
    role = f"app_{uuid.uuid4().hex[:6]}"
    conn.execute(f"create role {role} login")
    try:
        conn.execute(f"grant usage on schema audio_queue to {role}")
        with psycopg.connect(db_url, user=role, autocommit=True) as other:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                other.execute("select audio_queue.enqueue_job('{}'::jsonb)")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                other.execute("select * from audio_queue.get_next_pending_job()")
        assert (
            scalar(conn, "select relrowsecurity from pg_class where oid = 'audio_queue.jobs'::regclass")
            is True
        )
        configs = conn.execute(
            "select p.proname, p.proconfig from pg_proc p join pg_namespace n on n.oid = p.pronamespace "
            "where n.nspname = 'audio_queue'"
        ).fetchall()
        assert configs and all(cfg == ['search_path=""'] for _, cfg in configs), configs
    finally:
        conn.execute(f"revoke all on schema audio_queue from {role}")
        conn.execute(f"drop role {role}")


def test_complete_jobs_batches_with_the_same_fencing(conn):
    ids = [enqueue(conn, {"i": i}) for i in range(3)]
    rows = {r["id"]: r for r in claim(conn, limit=3)}
    stale = uuid.uuid4()
    oks = scalar(
        conn,
        "select audio_queue.complete_jobs(%s, %s, %s::jsonb[])",
        ids,
        [rows[ids[0]]["lease_id"], stale, rows[ids[2]]["lease_id"]],
        [json.dumps({"mp3_url": f"u{i}"}) for i in range(3)],
    )
    assert oks == [True, False, True]
    assert [job(conn, i)["status"] for i in ids] == ["completed", "processing", "completed"]
    assert job(conn, ids[2])["mp3_url"] == "u2"
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="same length"):
        conn.execute("select audio_queue.complete_jobs(%s, %s, %s::jsonb[])", (ids, [stale], ["{}"]))
