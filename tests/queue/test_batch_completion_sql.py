"""complete_jobs_v2 (one UPDATE per batch since migration queue_fast_paths) answers and changes
exactly what complete_job_v2 called once per element, in id order, does."""

from __future__ import annotations

import uuid

import pytest
from psycopg.types.json import Jsonb

COLUMNS = (
    "status, result, wav_url, mp3_url, result_url, progress, error_message, locked_by, "
    "lease_expires_at is null, completed_at is null, cancel_requested, attempts"
)


def make_jobs(conn, priority):
    """One batch's calls over jobs in every state a batch can meet, and the jobs' ids. A higher
    priority than the previous set's: its claim must not take that set's rescued (waiting) job."""
    ids = [
        r[0]
        for r in conn.execute(
            "select audio_queue.enqueue_job('{}'::jsonb, p_priority => %s, p_user_id => %s) "
            "from generate_series(1, 7)",
            (priority, uuid.uuid4()),
        )
    ]
    rows = conn.execute("select id, lease_id from audio_queue.get_next_pending_job('w', 7, 60)").fetchall()
    lease = dict(rows)
    ok, ok_no_urls, stale, cancel, done_before, cancelled_before, rescued = ids
    conn.execute("select audio_queue.cancel_job(%s)", (cancel,))
    conn.execute("select audio_queue.cancel_job(%s)", (cancelled_before,))
    conn.execute(
        'select audio_queue.complete_job(%s, \'{"wav_url": "https://s/old.wav"}\', null, %s)',
        (done_before, lease[done_before]),
    )
    conn.execute(
        "select audio_queue.complete_job(%s, '{}', null, %s)", (cancelled_before, lease[cancelled_before])
    )
    conn.execute(  # its worker died: the rescuer put it back
        "update audio_queue.jobs set lease_expires_at = now() - interval '1 second' where id = %s", (rescued,)
    )
    conn.execute("select audio_queue.reset_stuck_jobs()")
    full = {"wav_url": "https://s/a.wav", "mp3_url": "https://s/a.mp3", "duration_s": 3}
    calls = [
        (ok, lease[ok], full),
        (ok_no_urls, lease[ok_no_urls], {"result_url": "https://s/r.mp3"}),
        (stale, uuid.uuid4(), {}),
        (cancel, lease[cancel], full),
        (done_before, lease[done_before], full),  # a repeat: the reply was lost
        (cancelled_before, lease[cancelled_before], {}),
        (rescued, lease[rescued], {}),
        (uuid.uuid4(), uuid.uuid4(), {}),  # no such job
        (ok, lease[ok], {"wav_url": "https://s/second.wav"}),  # listed twice
    ]
    return calls, ids


def state(conn, ids):
    rows = [
        conn.execute(f"select {COLUMNS} from audio_queue.jobs where id = %s", (i,)).fetchone() for i in ids
    ]
    events = [
        [
            r[0]
            for r in conn.execute(
                "select kind from audio_queue.job_events where job_id = %s order by id", (i,)
            )
        ]
        for i in ids
    ]
    outbox = [
        conn.execute("select count(*) from audio_queue.webhook_outbox where job_id = %s", (i,)).fetchone()[0]
        for i in ids
    ]
    return rows, events, outbox


@pytest.mark.parametrize("order", ["as listed", "reversed"])
def test_a_batch_answers_and_ends_jobs_as_one_call_per_job_in_id_order(conn, order):
    conn.execute("select audio_queue.enable_webhook_outbox()")
    calls_a, ids_a = make_jobs(conn, 0)
    calls_b, ids_b = make_jobs(conn, 1)
    if order == "reversed":
        calls_a, calls_b = calls_a[::-1], calls_b[::-1]

    # The batch, one call.
    batch = conn.execute(
        "select audio_queue.complete_jobs_v2(%s, %s, %s::jsonb[])",
        ([c[0] for c in calls_a], [c[1] for c in calls_a], [Jsonb(c[2]) for c in calls_a]),
    ).fetchone()[0]

    # The same calls one by one, in id order (what 0013's complete_jobs_v2 did), in one transaction.
    single: list[str | None] = [None] * len(calls_b)
    with conn.transaction():
        # ids differ between the two sets: order set b's calls as set a's ids sort.
        rank = sorted(range(len(calls_a)), key=lambda k: str(calls_a[k][0]))
        for k in rank:
            job_id, lease_id, result = calls_b[k]
            single[k] = conn.execute(
                "select audio_queue.complete_job_v2(%s, %s, null, %s)", (job_id, Jsonb(result), lease_id)
            ).fetchone()[0]

    assert batch == single
    assert state(conn, ids_a) == state(conn, ids_b)
    expected = {
        "ok": "completed",
        "stale": "lost",
        "cancel": "cancelled",
        "done_before": "completed",
        "cancelled_before": "cancelled",
        "rescued": "lost",
        "missing": "lost",
    }
    names = [
        "ok",
        "ok_no_urls",
        "stale",
        "cancel",
        "done_before",
        "cancelled_before",
        "rescued",
        "missing",
        "ok",
    ]
    if order == "reversed":
        names = names[::-1]
    for name, answer in zip(names, batch, strict=True):
        assert answer == expected.get(name, "completed"), name


def test_a_batch_without_a_lease_is_refused_and_changes_nothing(conn):
    jid = conn.execute("select audio_queue.enqueue_job('{}'::jsonb)").fetchone()[0]
    (lease,) = conn.execute("select lease_id from audio_queue.get_next_pending_job('w', 1, 60)").fetchone()
    with pytest.raises(Exception, match="p_lease_id is required"):
        conn.execute(
            "select audio_queue.complete_jobs_v2(%s, %s, %s::jsonb[])",
            ([jid, jid], [lease, None], [Jsonb({}), Jsonb({})]),
        )
    assert (
        conn.execute("select status from audio_queue.jobs where id = %s", (jid,)).fetchone()[0]
        == "processing"
    )
