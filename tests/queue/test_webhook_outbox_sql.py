"""Migration 0006's webhook outbox, through the SQL functions: the trigger writes one notice per job
end (only when the outbox is on), claims are leased and skip each other, delivered and given-up
notices leave the table, retries wait, and purging jobs takes their notices along."""

from __future__ import annotations

import json
import threading
import uuid

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.queue.test_queue_sql import claim, enqueue, job, scalar


def outbox(conn) -> list[dict]:
    return (
        conn.cursor(row_factory=dict_row)
        .execute("select * from audio_queue.webhook_outbox order by id")
        .fetchall()
    )


def claim_notices(conn, worker="w1", limit=20, lease=60) -> list[dict]:
    return (
        conn.cursor(row_factory=dict_row)
        .execute("select * from audio_queue.claim_webhook_notices(%s, %s, %s)", (worker, limit, lease))
        .fetchall()
    )


def complete(conn, jid, lease_id, result=None, error=None, retryable=False) -> bool:
    return scalar(
        conn,
        "select audio_queue.complete_job(%s, %s::jsonb, %s, %s, %s)",
        jid,
        json.dumps(result) if result is not None else None,
        error,
        lease_id,
        retryable,
    )


def enable(conn) -> bool:
    return scalar(conn, "select audio_queue.enable_webhook_outbox()")


def test_off_by_default_nothing_is_written(conn):
    assert scalar(conn, "select webhook_outbox from audio_queue.settings") is False
    jid = enqueue(conn)
    (row,) = claim(conn)
    assert complete(conn, jid, row["lease_id"], {"wav_url": "w"})
    scalar(conn, "select audio_queue.cancel_job(%s)", enqueue(conn))
    assert outbox(conn) == []


def test_enable_is_idempotent_and_every_kind_of_end_writes_one_notice(conn):
    assert enable(conn) is True and enable(conn) is False
    done, failed, retried = enqueue(conn, track_id=uuid.uuid4()), enqueue(conn), enqueue(conn)
    rows = {r["id"]: r for r in claim(conn, limit=3)}
    cancelled = enqueue(conn)
    assert complete(
        conn, done, rows[done]["lease_id"], {"wav_url": "https://x/a.wav", "mp3_url": "https://x/a.mp3"}
    )
    assert complete(conn, failed, rows[failed]["lease_id"], error="boom")
    assert complete(
        conn, retried, rows[retried]["lease_id"], error="again", retryable=True
    )  # pending: no end
    scalar(conn, "select audio_queue.cancel_job(%s)", cancelled)  # never claimed
    conn.execute("update audio_queue.jobs set progress = 50 where id = %s", (done,))  # not a status change
    by_job = {r["job_id"]: r for r in outbox(conn)}
    assert set(by_job) == {done, failed, cancelled}
    assert by_job[done]["status"] == "completed" and by_job[done]["wav_url"] == "https://x/a.wav"
    assert by_job[done]["result_url"] == "https://x/a.mp3" and by_job[done]["error"] is None
    assert (by_job[failed]["status"], by_job[failed]["error"]) == ("failed", "boom")
    assert (by_job[cancelled]["status"], by_job[cancelled]["error"]) == (
        "cancelled",
        "cancelled before it started",
    )
    assert len({r["delivery_id"] for r in by_job.values()}) == 3
    notices = {n["job_id"]: n for n in claim_notices(conn)}
    assert notices[done]["track_id"] == job(conn, done)["track_id"]
    assert notices[done]["completed_at"] == job(conn, done)["completed_at"]
    assert notices[done]["job_attempts"] == 1 and notices[done]["attempts"] == 1


def test_reset_stuck_jobs_failing_a_job_writes_a_failed_notice(conn):
    enable(conn)
    jid = enqueue(conn, max_attempts=1)
    claim(conn, lease=1)
    conn.execute(
        "update audio_queue.jobs set lease_expires_at = now() - interval '1 second' where id = %s", (jid,)
    )
    assert scalar(conn, "select audio_queue.reset_stuck_jobs()") == 1
    (row,) = outbox(conn)
    assert row["job_id"] == jid and row["status"] == "failed"
    assert "stopped responding on the last of 1 attempts" in row["error"]


def test_a_job_that_ends_again_after_a_requeue_gets_a_new_notice(conn):
    enable(conn)
    jid = enqueue(conn)
    (row,) = claim(conn)
    complete(conn, jid, row["lease_id"], error="bad input")
    assert scalar(conn, "select audio_queue.requeue_jobs(%s)", jid) == 1
    (row,) = claim(conn)
    complete(conn, jid, row["lease_id"], {"wav_url": "w"})
    first, second = outbox(conn)
    assert (first["status"], second["status"]) == ("failed", "completed")
    assert first["error"] == "bad input" and first["delivery_id"] != second["delivery_id"]


def test_claims_are_leased_and_concurrent_claimers_never_share_a_notice(conn, db_url):
    enable(conn)
    for _ in range(30):
        scalar(conn, "select audio_queue.cancel_job(%s)", enqueue(conn))
    got: list[list[dict]] = [[], []]
    barrier = threading.Barrier(2)

    def worker(i: int) -> None:
        with psycopg.connect(db_url, autocommit=True) as c:
            barrier.wait()
            while rows := claim_notices(c, f"w{i}", limit=4):
                got[i].extend(rows)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    ids = [r["id"] for r in got[0] + got[1]]
    assert len(ids) == 30 and len(set(ids)) == 30
    assert claim_notices(conn) == []  # all leased
    conn.execute(
        "update audio_queue.webhook_outbox set claimed_until = now() - interval '1 second' where id = %s",
        (ids[0],),
    )
    (again,) = claim_notices(conn, "w3")
    assert again["id"] == ids[0] and again["attempts"] == 2  # lease ran out: claimed again, same delivery id
    assert again["delivery_id"] == next(r for r in got[0] + got[1] if r["id"] == ids[0])["delivery_id"]


def test_delivered_and_given_up_notices_leave_the_table_and_retries_wait(conn):
    enable(conn)
    for _ in range(3):
        scalar(conn, "select audio_queue.cancel_job(%s)", enqueue(conn))
    a, b, c = claim_notices(conn)
    assert scalar(conn, "select audio_queue.webhook_delivered(%s, %s)", a["id"], a["delivery_id"])
    assert not scalar(conn, "select audio_queue.webhook_delivered(%s, %s)", a["id"], a["delivery_id"])
    assert not scalar(conn, "select audio_queue.webhook_delivered(%s, %s)", b["id"], uuid.uuid4())  # wrong id
    assert scalar(
        conn,
        "select audio_queue.webhook_attempt_failed(%s, %s, 'HTTP 410', 0, true)",
        b["id"],
        b["delivery_id"],
    )
    assert scalar(
        conn,
        "select audio_queue.webhook_attempt_failed(%s, %s, 'HTTP 503', 30, false)",
        c["id"],
        c["delivery_id"],
    )
    (left,) = outbox(conn)
    assert left["id"] == c["id"] and left["last_error"] == "HTTP 503" and left["claimed_until"] is None
    assert claim_notices(conn) == []  # not due for 30 s
    conn.execute("update audio_queue.webhook_outbox set next_attempt_at = now()")
    (again,) = claim_notices(conn)
    assert again["id"] == c["id"] and again["attempts"] == 2


def test_purge_finished_jobs_takes_their_notices_along(conn):
    enable(conn)
    jid = enqueue(conn)
    scalar(conn, "select audio_queue.cancel_job(%s)", jid)
    conn.execute(
        "update audio_queue.jobs set completed_at = now() - interval '40 days' where id = %s", (jid,)
    )
    assert len(outbox(conn)) == 1
    assert scalar(conn, "select audio_queue.purge_finished_jobs()") == 1
    assert outbox(conn) == []


def test_disable_stops_writing_and_may_discard(conn):
    enable(conn)
    scalar(conn, "select audio_queue.cancel_job(%s)", enqueue(conn))
    assert scalar(conn, "select audio_queue.disable_webhook_outbox()") == 0
    scalar(conn, "select audio_queue.cancel_job(%s)", enqueue(conn))
    assert len(outbox(conn)) == 1
    assert scalar(conn, "select audio_queue.disable_webhook_outbox(true)") == 1
    assert outbox(conn) == []


@pytest.mark.parametrize("limit, lease", [(0, 10), (1001, 10), (5, 0)])
def test_claim_rejects_bad_arguments(conn, limit, lease):
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        claim_notices(conn, limit=limit, lease=lease)
