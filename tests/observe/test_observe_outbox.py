"""The webhook outbox (migration 0006) with real worker processes and a receiver on 127.0.0.1:
notices survive a SIGKILL, jobs ended in SQL are announced, a fleet delivers each notice once,
and queues without WEBHOOK_URL write nothing."""

from __future__ import annotations

import collections
import signal
import time
from datetime import datetime

import pytest

from tests.observe.support import Delivery, Receiver, get
from tests.observe.test_observe_endpoint import sample
from tests.queue.test_worker_process import all_finished, enqueue, job
from tests.support.jobs import scalar
from tests.support.workers import wait_until
from worker.local.ports import free_port
from worker.observe.webhook import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

pytestmark = pytest.mark.timeout(120)
SECRET = "whsec-outbox-7d41e0"


def outbox_count(conn) -> int:
    return scalar(conn, "select count(*) from audio_queue.webhook_outbox")


def delivered(rx: Receiver) -> dict[str, Delivery]:
    """job id -> the delivery the receiver answered 2xx."""
    return {
        d.body["job_id"]: d for d in list(rx.deliveries) if d.status is not None and 200 <= d.status < 300
    }


def assert_each_delivery_id_acknowledged_once(rx: Receiver) -> None:
    """No delivery id is answered 2xx twice, nor posted again after its 2xx."""
    by_id: dict[str, list[Delivery]] = collections.defaultdict(list)
    for d in list(rx.deliveries):
        by_id[d.headers[DELIVERY_HEADER]].append(d)
    for did, ds in by_id.items():
        oks = [i for i, d in enumerate(ds) if d.status is not None and 200 <= d.status < 300]
        assert len(oks) == 1, f"delivery {did} acknowledged {len(oks)} times"
        assert oks[0] == len(ds) - 1, f"delivery {did} was posted again after its 2xx"
        assert len({d.body["job_id"] for d in ds}) == 1


def test_notices_of_a_killed_worker_are_delivered_by_the_next_one_exactly_once(conn, fleet, receivers):
    rx = receivers(statuses=[503] * 10_000)
    ids = {str(i) for i in enqueue(conn, {"sleep_ms": 0}, n=5)}
    a = fleet.start(WEBHOOK_URL=rx.url, WEBHOOK_SECRET=SECRET, WEBHOOK_ATTEMPTS=10, WEBHOOK_TIMEOUT_S=2)
    wait_until(lambda: all_finished(conn), timeout=30, what="worker A to complete the 5 jobs")
    wait_until(
        lambda: {d.body["job_id"] for d in list(rx.deliveries)} == ids,
        timeout=20,
        what="a failed attempt of each notice",
    )
    a.kill()
    rows = conn.execute("select job_id::text, last_error from audio_queue.webhook_outbox").fetchall()
    assert {r[0] for r in rows} == ids  # nothing was lost with the process
    assert {r[1] for r in rows} <= {"HTTP 503", None}  # None: killed before recording that attempt
    first_ids = {d.body["job_id"]: d.headers[DELIVERY_HEADER] for d in list(rx.deliveries)}
    rx.statuses.clear()  # the receiver is healthy again
    n_before = len(rx.deliveries)
    b = fleet.start(WEBHOOK_URL=rx.url, WEBHOOK_SECRET=SECRET, WEBHOOK_ATTEMPTS=10, WEBHOOK_TIMEOUT_S=2)
    wait_until(lambda: set(delivered(rx)) == ids, timeout=45, what="worker B to deliver the 5 notices")
    wait_until(lambda: outbox_count(conn) == 0, timeout=10, what="the outbox to empty")
    time.sleep(1.5)  # anything posted twice would show up now
    assert all(d.status == 503 for d in rx.deliveries[:n_before])
    assert_each_delivery_id_acknowledged_once(rx)
    for jid, d in delivered(rx).items():
        assert d.headers[DELIVERY_HEADER] == first_ids[jid]  # the same notice A tried, not a new one
        assert verify(SECRET, d.headers[TIMESTAMP_HEADER], d.raw, d.headers[SIGNATURE_HEADER])
        assert d.body["status"] == "completed" and d.body["attempts"] == 1
        assert datetime.fromisoformat(d.body["completed_at"]) == job(conn, jid)["completed_at"]
    assert SECRET not in b.log and "token=abc" not in b.log and "token=abc" not in a.log


def test_jobs_ended_in_sql_are_announced(conn, fleet, receivers):
    rx = receivers()
    (later,) = enqueue(conn, {"sleep_ms": 0}, run_at="2999-01-01T00:00:00Z")  # never claimed
    (stuck,) = enqueue(conn, {"sleep_ms": 0}, max_attempts=1)
    conn.execute("select * from audio_queue.get_next_pending_job('dead-worker', 1, 1)")  # it dies holding it
    fleet.start(WEBHOOK_URL=rx.url, RESCUE_INTERVAL_SECONDS=1)
    wait_until(
        lambda: scalar(conn, "select webhook_outbox from audio_queue.settings"),
        timeout=20,
        what="the worker to turn the outbox on",
    )
    assert scalar(conn, "select audio_queue.cancel_job(%s)", later)
    wait_until(lambda: len(delivered(rx)) == 2, timeout=30, what="two notices")
    got = delivered(rx)
    assert got[str(later)].body["status"] == "cancelled"
    assert got[str(later)].body["error"] == "cancelled before it started"
    assert got[str(stuck)].body["status"] == "failed"
    assert "stopped responding on the last of 1 attempts" in got[str(stuck)].body["error"]
    assert job(conn, stuck)["status"] == "failed"
    wait_until(lambda: outbox_count(conn) == 0, timeout=10, what="the outbox to empty")


def test_two_workers_announce_every_job_and_acknowledged_notices_are_not_posted_again(conn, fleet, receivers):
    rx = receivers(statuses=[503] * 8)
    ids = {str(i) for i in enqueue(conn, {"sleep_ms": 20}, n=40)}
    for _ in range(2):
        fleet.start(
            WEBHOOK_URL=rx.url,
            WEBHOOK_SECRET=SECRET,
            WEBHOOK_ATTEMPTS=5,
            MAX_CONCURRENT_JOBS=4,
            LOG_LEVEL="info",
        )
    wait_until(lambda: all_finished(conn), timeout=40, what="the 40 jobs")
    wait_until(lambda: set(delivered(rx)) == ids, timeout=40, what="40 notices delivered")
    wait_until(lambda: outbox_count(conn) == 0, timeout=10, what="the outbox to empty")
    time.sleep(1.5)
    assert_each_delivery_id_acknowledged_once(rx)
    assert len({d.headers[DELIVERY_HEADER] for d in delivered(rx).values()}) == 40
    assert all(d.body["status"] == "completed" for d in delivered(rx).values())


def test_without_webhook_url_no_outbox_rows_are_written(conn, fleet):
    enqueue(conn, {"sleep_ms": 0}, n=5)
    enqueue(conn, {"sleep_ms": 0, "fail": "permanent"})
    w = fleet.start()
    wait_until(lambda: all_finished(conn), timeout=30, what="the jobs")
    (later,) = enqueue(conn, {"sleep_ms": 0}, run_at="2999-01-01T00:00:00Z")
    assert scalar(conn, "select audio_queue.cancel_job(%s)", later)
    assert scalar(conn, "select webhook_outbox from audio_queue.settings") is False
    assert outbox_count(conn) == 0
    w.signal(signal.SIGTERM)
    assert w.wait(15) == 0


def test_an_unreachable_receiver_keeps_the_token_out_of_last_error_and_logs(conn, fleet, receivers):
    rx = receivers()
    url = rx.url
    rx.stop()  # nothing listens on that port any more: connection refused
    (jid,) = enqueue(conn, {"sleep_ms": 0})
    w = fleet.start(WEBHOOK_URL=url, WEBHOOK_SECRET=SECRET, WEBHOOK_ATTEMPTS=10)
    wait_until(
        lambda: (
            scalar(conn, "select last_error from audio_queue.webhook_outbox where job_id = %s", jid)
            if outbox_count(conn)
            else None
        ),
        timeout=20,
        what="a failed attempt",
    )
    last_error = scalar(conn, "select last_error from audio_queue.webhook_outbox where job_id = %s", jid)
    assert "Connect" in last_error
    assert "token" not in last_error and "/hook" not in last_error and SECRET not in last_error
    w.signal(signal.SIGTERM)
    assert w.wait(15) == 0
    assert "token=abc" not in w.log and SECRET not in w.log
    assert outbox_count(conn) == 1  # still there for the next worker


def test_the_webhooks_counter_counts_delivered_and_given_up_notices(conn, fleet, receivers):
    rx = receivers(statuses=[410])  # the first notice is refused for good, the second delivered
    port = free_port()
    w = fleet.start(WEBHOOK_URL=rx.url, HEALTH_PORT=port, MAX_CONCURRENT_JOBS=1)
    wait_until(
        lambda: scalar(conn, "select webhook_outbox from audio_queue.settings"),
        timeout=20,
        what="the worker to turn the outbox on",
    )
    for _ in range(2):
        enqueue(conn, {"sleep_ms": 0})
        wait_until(lambda: all_finished(conn) and outbox_count(conn) == 0, timeout=20, what="the notice")
    wait_until(lambda: len(rx.deliveries) == 2, timeout=10, what="two posts")
    text = get(f"http://127.0.0.1:{port}/metrics")[2]
    assert sample(text, "audio_worker_webhooks_total", result="delivered") == 1
    assert sample(text, "audio_worker_webhooks_total", result="failed") == 1
    assert "failed after 1 attempt(s): HTTP 410; notice dropped" in w.log
