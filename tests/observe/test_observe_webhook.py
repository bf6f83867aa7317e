"""The completion webhook, from a real worker process to a receiver on 127.0.0.1."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from tests.queue.test_worker_process import enqueue, job
from tests.support.workers import wait_until
from worker.observe.webhook import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify

pytestmark = pytest.mark.timeout(60)
SECRET = "whsec-test-5f2a9c"


def test_completed_and_failed_jobs_are_announced_signed(conn, fleet, receivers):
    rx = receivers()
    track = "6f1c1d2e-0000-4000-8000-000000000001"
    (ok_id,) = enqueue(conn, {"sleep_ms": 0}, track_id=track)
    (bad_id,) = enqueue(conn, {"sleep_ms": 0, "fail": "permanent"})
    w = fleet.start(JOB_HANDLER="tests.observe.handlers:with_urls", WEBHOOK_URL=rx.url, WEBHOOK_SECRET=SECRET)
    wait_until(lambda: len(rx.deliveries) == 2, timeout=20, what="two webhooks")
    by_id = {d.body["job_id"]: d for d in rx.deliveries}
    done, failed = by_id[str(ok_id)], by_id[str(bad_id)]
    for d in (done, failed):
        ts = d.headers[TIMESTAMP_HEADER]
        assert d.headers[SIGNATURE_HEADER] == sign(SECRET, ts, d.raw)
        assert verify(SECRET, ts, d.raw, d.headers[SIGNATURE_HEADER])
        assert not verify("other", ts, d.raw, d.headers[SIGNATURE_HEADER])
        assert d.headers["Content-Type"] == "application/json"
        assert set(d.body) == {
            "job_id",
            "status",
            "wav_url",
            "mp3_url",
            "result_url",
            "error",
            "attempts",
            "track_id",
            "user_id",
            "completed_at",
        }
        assert SECRET.encode() not in d.raw
    row = job(conn, ok_id)
    assert done.body["status"] == "completed" and row["status"] == "completed"
    assert (done.body["wav_url"], done.body["mp3_url"], done.body["result_url"]) == (
        row["wav_url"],
        row["mp3_url"],
        row["result_url"],
    )
    assert done.body["track_id"] == track and done.body["error"] is None and done.body["attempts"] == 1
    assert failed.body["status"] == "failed" and failed.body["error"] == "scripted permanent failure"
    assert failed.body["wav_url"] is None
    assert SECRET not in w.log and "token=abc" not in w.log


def test_a_failing_receiver_gets_the_notice_on_the_third_attempt(conn, fleet, receivers):
    rx = receivers(statuses=[500, 500])
    (jid,) = enqueue(conn, {"sleep_ms": 0})
    fleet.start(WEBHOOK_URL=rx.url, WEBHOOK_ATTEMPTS=3)
    wait_until(lambda: len(rx.deliveries) == 3, timeout=20, what="three attempts")
    assert {d.body["job_id"] for d in rx.deliveries} == {str(jid)}
    assert len({d.headers[DELIVERY_HEADER] for d in rx.deliveries}) == 1  # one notice, retried
    assert SIGNATURE_HEADER not in rx.deliveries[0].headers  # no secret, no signature
    gaps = [b.at - a.at for a, b in zip(rx.deliveries, rx.deliveries[1:])]
    assert gaps[0] >= 0.9 and gaps[1] >= 1.9  # backoff 1 s, then 2 s
    time.sleep(1.5)
    assert len(rx.deliveries) == 3  # delivered: no fourth try


def test_a_hanging_receiver_does_not_delay_completion_or_the_next_job(conn, fleet, receivers):
    rx = receivers(hang=threading.Event())
    (first,) = enqueue(conn, {"sleep_ms": 0})
    fleet.start(WEBHOOK_URL=rx.url, WEBHOOK_TIMEOUT_S=10, WEBHOOK_ATTEMPTS=1, MAX_CONCURRENT_JOBS=1)
    wait_until(lambda: rx.deliveries, timeout=20, what="the first webhook to arrive")
    hung_at = rx.deliveries[0].at
    assert job(conn, first)["status"] == "completed"  # recorded before the webhook was even sent
    (second,) = enqueue(conn, {"sleep_ms": 0})
    wait_until(lambda: job(conn, second)["status"] == "completed", timeout=5, what="the next job")
    assert time.monotonic() - hung_at < 10  # the first webhook is still hanging


def test_a_job_cancelled_while_processing_is_announced_as_cancelled(conn, fleet, receivers):
    rx = receivers()
    (jid,) = enqueue(conn, {"sleep_ms": 20000})
    fleet.start(WEBHOOK_URL=rx.url, LEASE_SECONDS=3)
    wait_until(lambda: job(conn, jid)["status"] == "processing", timeout=20, what="the claim")
    conn.execute("select audio_queue.cancel_job(%s)", (jid,))
    wait_until(lambda: rx.deliveries, timeout=20, what="the webhook")
    body = rx.deliveries[0].body
    assert body["job_id"] == str(jid) and body["status"] == "cancelled"
    assert body["error"] == "cancelled while processing" and job(conn, jid)["status"] == "cancelled"


def test_shutdown_waits_a_bounded_time_for_a_hanging_webhook_and_leaves_it_in_the_outbox(
    conn, fleet, receivers
):
    rx = receivers(hang=threading.Event())
    (jid,) = enqueue(conn, {"sleep_ms": 0})
    w = fleet.start(WEBHOOK_URL=rx.url, WEBHOOK_TIMEOUT_S=30, WEBHOOK_ATTEMPTS=1)
    wait_until(lambda: rx.deliveries, timeout=20, what="the webhook to arrive")
    started = time.monotonic()
    w.signal(signal.SIGTERM)
    assert w.wait(15) == 0
    assert 4 <= time.monotonic() - started < 10  # waited for the webhook, at most ~5 s
    assert "leaving 1 undelivered notice(s) in the outbox" in w.log
    # Not dropped: handed back (lease released) for the next worker, same delivery id.
    row = conn.execute("select job_id, delivery_id, claimed_until from audio_queue.webhook_outbox").fetchall()
    assert [(r[0], str(r[1]), r[2]) for r in row] == [(jid, rx.deliveries[0].headers[DELIVERY_HEADER], None)]
