"""/healthz and /metrics: a real worker process, and the handlers in-process for the failure cases."""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest
from psycopg_pool import AsyncConnectionPool

from tests.observe.support import get
from tests.queue.test_worker_process import enqueue
from tests.support.workers import wait_until
from worker.local.ports import free_port
from worker.observe import db as observe_db
from worker.observe.http import HealthSource, health, metrics_text
from worker.observe.metrics import Metrics

pytestmark = pytest.mark.timeout(60)


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text, or None when absent."""
    lab = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(
        rf"^{re.escape(name)}{re.escape('{' + lab + '}') if lab else ''} (\S+)$", text, re.MULTILINE
    )
    return float(m.group(1)) if m else None


def test_healthz_and_metrics_of_a_running_worker(conn, fleet):
    port = free_port()
    enqueue(conn, {"sleep_ms": 0}, n=5)
    enqueue(conn, {"sleep_ms": 0, "fail": "permanent"})
    enqueue(conn, {"sleep_ms": 0}, n=3, run_at="2999-01-01T00:00:00Z")  # pending, never runnable
    w = fleet.start(HEALTH_PORT=port, MAX_CONCURRENT_JOBS=2)
    wait_until(
        lambda: (
            conn.execute(
                "select count(*) from audio_queue.jobs where status in ('completed','failed')"
            ).fetchone()[0]
            == 6
        ),
        timeout=20,
        what="6 jobs to finish",
    )
    base = f"http://127.0.0.1:{port}"

    status, ctype, body = wait_until(
        lambda: (r := get(base + "/healthz"))[0] == 200 and r, timeout=10, what="/healthz 200"
    )
    doc = json.loads(body)
    assert ctype == "application/json" and doc["status"] == "ok" and doc["running_jobs"] == 0
    assert doc["worker_id"] in w.log and doc["last_loop_s"] < 30

    status, ctype, text = get(base + "/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    assert sample(text, "audio_worker_jobs_total", outcome="completed") == 5
    assert sample(text, "audio_worker_jobs_total", outcome="failed") == 1
    assert sample(text, "audio_worker_job_duration_seconds_count", outcome="completed") == 5
    assert sample(text, "audio_worker_stage_duration_seconds_count", stage="sleep") == 6
    assert sample(text, "audio_worker_claims_total") == 6
    db_pending = conn.execute("select count(*) from audio_queue.jobs where status = 'pending'").fetchone()[0]
    assert db_pending == 3 and sample(text, "audio_worker_queue_jobs", status="pending") == db_pending
    assert sample(text, "audio_worker_queue_jobs", status="processing") == 0
    assert sample(text, "audio_worker_queue_oldest_pending_seconds") == 0  # none runnable yet

    assert get(base + "/nope")[0] == 404


def test_metrics_tell_a_cancel_from_a_lost_lease_without_reading_the_row(conn, fleet):
    """Both stop the work at the next heartbeat; release_job_v2 says which it was (migration 0013)."""
    port = free_port()
    cancel, lost = enqueue(conn, {"sleep_ms": 20000}, n=2)
    w = fleet.start(HEALTH_PORT=port, MAX_CONCURRENT_JOBS=2, LEASE_SECONDS=3)
    wait_until(
        lambda: (
            conn.execute("select count(*) from audio_queue.jobs where status = 'processing'").fetchone()[0]
            == 2
        ),
        timeout=20,
        what="both jobs to run",
    )
    conn.execute("select audio_queue.cancel_job(%s)", (cancel,))
    conn.execute(
        "update audio_queue.jobs set lease_id = gen_random_uuid() where id = %s", (lost,)
    )  # taken over
    text = wait_until(
        lambda: (
            (t := get(f"http://127.0.0.1:{port}/metrics")[2])
            and sample(t, "audio_worker_jobs_total", outcome="cancelled") == 1
            and sample(t, "audio_worker_jobs_total", outcome="refused") == 1
            and t
        ),
        timeout=20,
        what="the cancel and the lost lease in /metrics",
    )
    assert sample(text, "audio_worker_jobs_total", outcome="released") == 0
    status = dict(conn.execute("select id, status from audio_queue.jobs").fetchall())
    assert status[cancel] == "cancelled" and status[lost] == "processing"  # the new holder's
    assert "ended as cancelled, as requested" in w.log and "it is no longer ours" in w.log


def test_queue_depth_reads_live_statuses_and_the_oldest_runnable_age(conn):
    enqueue(conn, {}, n=2, run_at="2000-01-01T00:00:00Z")
    enqueue(conn, {}, n=1, run_at="2999-01-01T00:00:00Z")

    async def read():
        async with AsyncConnectionPool(conn.info.dsn, min_size=1, open=False) as pool:
            async with pool.connection() as c:
                return await observe_db.queue_depth(c)

    jobs, oldest = asyncio.run(read())
    assert jobs == {"pending": 3}
    assert oldest > 20 * 365 * 86400


def _source(pool: AsyncConnectionPool, last_loop: float) -> HealthSource:
    async def ping():
        async with pool.connection(timeout=2) as c:
            await observe_db.ping(c)

    async def depth():
        async with pool.connection(timeout=2) as c:
            return await observe_db.queue_depth(c)

    return HealthSource(
        worker_id="w1",
        last_loop=lambda: last_loop,
        stale_after_s=30,
        running_jobs=lambda: 0,
        stopping=lambda: False,
        ping=ping,
        queue_depth=depth,
    )


def test_healthz_503_when_the_database_is_unreachable_or_the_loop_is_stale(db_url):
    async def scenario():
        pool = AsyncConnectionPool(db_url, min_size=1, open=False)
        await pool.open(wait=True)
        ok = await health(_source(pool, time.monotonic()))
        stale = await health(_source(pool, time.monotonic() - 100))
        m = Metrics()
        m.job("completed", 0.5, {"render": 0.2})
        good_scrape = (await metrics_text(_source(pool, time.monotonic()), m)).decode()
        await pool.close()  # the database is now out of reach for this pool
        down = await health(_source(pool, time.monotonic()))
        bad_scrape = (await metrics_text(_source(pool, time.monotonic()), m)).decode()
        return ok, stale, down, good_scrape, bad_scrape

    ok, stale, down, good_scrape, bad_scrape = asyncio.run(scenario())
    assert ok[0] == 200 and ok[1]["status"] == "ok"
    assert stale[0] == 503 and "claim loop has not run" in stale[1]["reason"]
    assert down[0] == 503 and "database unreachable" in down[1]["reason"]
    assert sample(good_scrape, "audio_worker_queue_jobs", status="pending") == 0
    # A failed queue read leaves the queue gauges out and keeps everything else.
    assert sample(bad_scrape, "audio_worker_jobs_total", outcome="completed") == 1
    assert sample(bad_scrape, "audio_worker_stage_duration_seconds_count", stage="render") == 1
    assert sample(bad_scrape, "audio_worker_queue_jobs", status="pending") is None
    assert sample(bad_scrape, "audio_worker_queue_query_errors_total") == 1


def test_health_port_in_use_stops_the_worker_at_start(conn, fleet):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        w = fleet.start(HEALTH_PORT=s.getsockname()[1])
        assert w.wait(20) == 1
    assert "cannot serve the health endpoint" in w.log
