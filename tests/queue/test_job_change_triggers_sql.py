"""The statement-level trigger of migration statement_job_triggers writes the same job_events and
webhook_outbox rows as the row triggers it replaced (0010/0012's record_job_event, 0006's
write_webhook_notice), for statements that change many jobs at once, every kind of event, and
updates that change no status (nothing written)."""

from __future__ import annotations

import uuid

# The row triggers as 0006 and 0010 created them (their functions are kept).
OLD_TRIGGERS = """
drop trigger jobs_record_changes on audio_queue.jobs;
create trigger jobs_record_event after update on audio_queue.jobs
    for each row
    when (old.status is distinct from new.status
          or old.cancel_requested is distinct from new.cancel_requested)
    execute function audio_queue.record_job_event();
create trigger jobs_write_webhook_notice after update of status on audio_queue.jobs
    for each row
    when (new.status in ('completed', 'failed', 'cancelled') and old.status is distinct from new.status)
    execute function audio_queue.write_webhook_notice();
"""

IDS = [uuid.UUID(int=i) for i in range(1, 9)]


def scenario(conn) -> tuple[list[tuple], list[tuple]]:
    """Every kind of event, most of them several jobs per statement; the rows written."""
    conn.execute("update audio_queue.settings set webhook_outbox = true")
    conn.execute("select set_config('audio_queue.actor', 'ops', true)")
    conn.execute(
        "insert into audio_queue.jobs (id, payload, priority) select u, '{}', 100 - i "
        "from unnest(%s::uuid[]) with ordinality as t(u, i)",
        (IDS,),
    )
    a, b, c, d, e, f, g, h = IDS
    conn.execute("select audio_queue.get_next_pending_job('w1', 8, 60)")  # claimed x8
    conn.execute("update audio_queue.jobs set heartbeat_at = now(), progress = 5")  # nothing
    conn.execute("update audio_queue.jobs set cancel_requested = true where id = any(%s)", ([a, b],))
    conn.execute(  # a retry (new last_error) and a release (same last_error) in one statement
        "update audio_queue.jobs set status = 'pending', locked_by = null, "
        "last_error = case when id = %s then 'boom' else last_error end where id = any(%s)",
        (c, [c, d]),
    )
    conn.execute(  # rescued, with and without an error_message
        "update audio_queue.jobs set status = 'pending', rescue_count = rescue_count + 1, "
        "error_message = case when id = %s then 'lease expired' end, last_error = 'last' "
        "where id = any(%s)",
        (e, [e, f]),
    )
    conn.execute(  # ended three ways in one statement, with a long error
        "update audio_queue.jobs set status = case id when %s then 'completed' when %s then 'failed' "
        "else 'cancelled' end, error_message = case when id = %s then repeat('x', 3000) end, "
        "mp3_url = 'https://s/a.mp3', completed_at = case when id <> %s then now() end "
        "where id = any(%s)",
        (g, h, h, a, [g, h, a]),
    )
    conn.execute(  # requeued; the cancel request of b goes without a status change
        "update audio_queue.jobs set status = 'queued', completed_at = null where id = any(%s)",
        ([g, h],),
    )
    conn.execute("update audio_queue.jobs set cancel_requested = false where id = %s", (b,))
    conn.execute("update audio_queue.settings set job_events = false")
    conn.execute("update audio_queue.jobs set status = 'failed' where id = %s", (c,))  # outbox only
    events = conn.execute(
        "select job_id, kind, status, attempt, worker, actor, detail, at = now() "
        "from audio_queue.job_events order by job_id, id"
    ).fetchall()
    outbox = conn.execute(
        "select job_id, status, error, job_attempts, wav_url, mp3_url, result_url, completed_at = now() "
        "from audio_queue.webhook_outbox order by job_id, id"
    ).fetchall()
    return events, outbox


def test_statement_trigger_writes_what_the_row_triggers_wrote(conn):
    conn.autocommit = False
    new = scenario(conn)
    conn.rollback()
    conn.execute(OLD_TRIGGERS)
    old = scenario(conn)
    conn.rollback()
    assert new == old
    events, outbox = new
    kinds = {(r[0], r[1]) for r in events}
    a, b, c, d, e, f, g, h = IDS
    assert {k for _, k in kinds} == {
        "claimed", "cancel_requested", "retry", "released", "rescued",
        "completed", "failed", "cancelled", "requeued",
    }  # fmt: skip
    assert len(events) == 8 + 2 + 2 + 2 + 3 + 2
    assert [(r[1], r[2]) for r in outbox if r[0] == c] == [("failed", None)]
    assert len(outbox) == 4
    assert all(r[5] == "ops" for r in events) and all(r[7] for r in events)
    assert max(len(r[6] or "") for r in events) == 2000
