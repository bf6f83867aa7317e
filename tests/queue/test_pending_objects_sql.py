"""Migration 0004's rules for objects an attempt may leave in storage, through the SQL functions:
record_objects is fenced by the lease, forget_objects takes deleted ones off, a completion keeps
the objects its result refers to, and orphaned_objects lists finished jobs that still list some."""

from __future__ import annotations

import uuid

import pytest
from psycopg.types.json import Jsonb

from tests.queue.test_queue_sql import claim, enqueue, job, scalar

M1, P1 = {"bucket": "masters", "key": "a.wav"}, {"bucket": "previews", "key": "a.mp3"}
M2, P2 = {"bucket": "masters", "key": "b.wav"}, {"bucket": "previews", "key": "b.mp3"}


def record(conn, row, objects, lease=None) -> bool:
    return scalar(
        conn,
        "select audio_queue.record_objects(%s, %s, %s)",
        row["id"],
        lease or row["lease_id"],
        Jsonb(objects),
    )


def pending(conn, jid) -> list[dict]:
    return sorted(job(conn, jid)["pending_objects"], key=lambda o: (o["bucket"], o["key"]))


def orphaned(conn) -> dict:
    return {
        r[0]: (r[1], sorted(r[2], key=lambda o: (o["bucket"], o["key"])))
        for r in conn.execute("select * from audio_queue.orphaned_objects()").fetchall()
    }


def test_record_is_fenced_by_the_lease_and_deduplicates(conn):
    jid = enqueue(conn)
    (row,) = claim(conn)
    assert row["pending_objects"] == []
    assert record(conn, row, [M1, {**P1, "url": "ignored"}]) and record(conn, row, [M1])
    assert pending(conn, jid) == [M1, P1]
    assert not record(conn, row, [M2], lease=uuid.uuid4())  # not the lease holder: do not upload
    scalar(conn, "select audio_queue.release_job(%s, %s)", jid, row["lease_id"])
    assert not record(conn, row, [M2])  # released: no longer ours
    assert pending(conn, jid) == [M1, P1]


@pytest.mark.parametrize(
    "bad", [{"bucket": "b", "key": "k"}, [{"bucket": "b"}], [{"bucket": 1, "key": "k"}], ["x"]]
)
def test_record_rejects_malformed_lists(conn, bad):
    enqueue(conn)
    (row,) = claim(conn)
    with pytest.raises(Exception, match="JSON array of"):
        record(conn, row, bad)


def test_the_next_claim_carries_a_dead_attempts_objects_and_forget_takes_them_off(conn):
    jid = enqueue(conn)
    (row,) = claim(conn, lease=1)
    record(conn, row, [M1, P1])
    conn.execute(
        "update audio_queue.jobs set lease_expires_at = now() - interval '1 second' where id = %s", (jid,)
    )
    assert scalar(conn, "select audio_queue.reset_stuck_jobs()") == 1
    (again,) = claim(conn, "w2")
    assert sorted(again["pending_objects"], key=lambda o: o["bucket"]) == [M1, P1]
    assert scalar(conn, "select audio_queue.forget_objects(%s, %s)", jid, Jsonb([M1]))
    assert pending(conn, jid) == [P1]
    assert scalar(conn, "select audio_queue.forget_objects(%s, %s)", jid, Jsonb([M1, P1]))
    assert pending(conn, jid) == []


def test_completion_keeps_the_results_objects_and_leaves_the_rest_for_the_sweeper(conn):
    jid = enqueue(conn)
    (row,) = claim(conn)
    record(conn, row, [M1, P1, M2, P2])  # say M1/P1 are a dead attempt's that could not be deleted
    result = {"wav_url": "u", "master": {**M2, "size": 1}, "preview": {**P2, "url": "v"}}
    assert scalar(
        conn, "select audio_queue.complete_job(%s, %s, null, %s)", jid, Jsonb(result), row["lease_id"]
    )
    assert job(conn, jid)["status"] == "completed"
    assert pending(conn, jid) == [M1, P1]
    assert orphaned(conn) == {jid: ("completed", [M1, P1])}


def test_batch_completion_keeps_the_results_objects(conn):
    jid = enqueue(conn)
    (row,) = claim(conn)
    record(conn, row, [M1, P1])
    ok = scalar(
        conn,
        "select audio_queue.complete_jobs(%s, %s, %s::jsonb[])",
        [jid],
        [row["lease_id"]],
        [Jsonb({"master": M1, "preview": P1})],
    )
    assert ok == [True] and pending(conn, jid) == [] and orphaned(conn) == {}


def test_failed_and_cancelled_jobs_with_objects_are_listed_for_the_sweeper_running_ones_are_not(conn):
    failed, cancelled, running = enqueue(conn, max_attempts=1), enqueue(conn), enqueue(conn)
    rows = {r["id"]: r for r in claim(conn, limit=3)}
    for jid, objects in ((failed, [M1]), (cancelled, [P1]), (running, [M2])):
        record(conn, rows[jid], objects)
    scalar(conn, "select audio_queue.cancel_job(%s)", cancelled)
    scalar(
        conn,
        "select audio_queue.complete_job(%s, null, 'boom', %s, true)",
        cancelled,
        rows[cancelled]["lease_id"],
    )
    conn.execute(
        "update audio_queue.jobs set lease_expires_at = now() - interval '1 second' where id = %s", (failed,)
    )
    scalar(conn, "select audio_queue.reset_stuck_jobs()")
    assert job(conn, failed)["status"] == "failed" and job(conn, cancelled)["status"] == "cancelled"
    assert orphaned(conn) == {failed: ("failed", [M1]), cancelled: ("cancelled", [P1])}
    scalar(conn, "select audio_queue.forget_objects(%s, %s)", failed, Jsonb([M1]))
    assert set(orphaned(conn)) == {cancelled}


def test_purge_keeps_finished_jobs_that_still_list_objects(conn):
    jid = enqueue(conn)
    (row,) = claim(conn)
    assert record(conn, row, [M1])
    scalar(
        conn,
        "select audio_queue.complete_job(%s, null, 'storage down during cleanup', %s)",
        jid,
        row["lease_id"],
    )
    clean = enqueue(conn)
    (row2,) = claim(conn)
    scalar(conn, "select audio_queue.complete_job(%s, '{}'::jsonb, null, %s)", clean, row2["lease_id"])
    conn.execute("update audio_queue.jobs set completed_at = now() - interval '40 days'")
    assert scalar(conn, "select audio_queue.purge_finished_jobs()") == 1
    assert job(conn, jid) is not None  # kept: its objects are still to be deleted (orphaned_objects)
    assert job(conn, clean) is None
