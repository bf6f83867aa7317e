"""settings.max_live_jobs_per_user: enforced in SQL at enqueue, under concurrent enqueues too."""

from __future__ import annotations

import json
import threading
import uuid

import psycopg
import pytest

LIMIT_SQLSTATE = "PT429"
USER = uuid.UUID(int=0x11)


def enqueue(url: str, user: uuid.UUID | None, key: str | None = None) -> uuid.UUID:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "select audio_queue.enqueue_job('{}'::jsonb, p_user_id => %s, p_idempotency_key => %s)",
            (user, key),
        ).fetchone()
        assert row
        return row[0]


def test_concurrent_enqueues_never_pass_the_limit(supa, supa_url):
    supa.execute("update audio_queue.settings set max_live_jobs_per_user = 3")
    barrier = threading.Barrier(10)
    ok: list[uuid.UUID] = []
    refused: list[psycopg.Error] = []

    def one() -> None:
        with psycopg.connect(supa_url) as conn:  # one transaction per enqueue, held until commit
            barrier.wait(timeout=30)
            try:
                row = conn.execute(
                    "select audio_queue.enqueue_job('{}'::jsonb, p_user_id => %s)", (USER,)
                ).fetchone()
                assert row
                conn.execute("select pg_sleep(0.05)")  # widen the window between count and commit
                conn.commit()
                ok.append(row[0])
            except psycopg.Error as exc:
                refused.append(exc)

    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(ok) == 3 and len(refused) == 7
    assert {e.sqlstate for e in refused} == {LIMIT_SQLSTATE}
    assert "live job limit reached" in str(refused[0]) and "(limit 3)" in str(refused[0])
    live = supa.execute("select count(*) from audio_queue.jobs where user_id = %s", (USER,)).fetchone()
    assert live and live[0] == 3


def test_the_limit_counts_live_jobs_per_user_and_keeps_idempotent_repeats(supa, supa_url):
    supa.execute("update audio_queue.settings set max_live_jobs_per_user = 2")
    first = enqueue(supa_url, USER, key="order-1")
    enqueue(supa_url, USER)
    assert enqueue(supa_url, USER, key="order-1") == first  # a repeat is not a new job
    with pytest.raises(psycopg.Error) as refused:
        enqueue(supa_url, USER)
    assert refused.value.sqlstate == LIMIT_SQLSTATE
    with pytest.raises(psycopg.Error) as plain_insert:
        supa.execute("insert into audio_queue.jobs (payload, user_id) values ('{}', %s)", (USER,))
    assert plain_insert.value.sqlstate == LIMIT_SQLSTATE

    enqueue(supa_url, uuid.UUID(int=0x12))  # other users and jobs without a user are not limited
    enqueue(supa_url, None)
    supa.execute("select audio_queue.cancel_job(%s)", (first,))  # a finished job frees a place
    enqueue(supa_url, USER)

    supa.execute("update audio_queue.settings set max_live_jobs_per_user = null")
    for _ in range(3):
        enqueue(supa_url, USER)


def test_enqueue_job_once_enqueues_one_job_per_key_ever(supa, supa_url):
    with psycopg.connect(supa_url, autocommit=True) as conn:
        once = "select audio_queue.enqueue_job_once(%s, %s::jsonb, p_user_id => %s)"
        first = conn.execute(once, ("stripe:cs_1", json.dumps({"n": 1}), USER)).fetchone()
        assert first
        supa.execute("update audio_queue.jobs set status = 'completed', completed_at = now()")
        again = conn.execute(once, ("stripe:cs_1", json.dumps({"n": 2}), USER)).fetchone()
    assert again and again[0] == first[0]
    count = supa.execute("select count(*) from audio_queue.jobs").fetchone()
    assert count and count[0] == 1
