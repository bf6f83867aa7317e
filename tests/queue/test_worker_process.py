"""The worker as operators run it: real ``python -m worker run`` processes on a real database."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from tests.support.jobs import job
from tests.support.workers import WorkerFleet, wait_until


@pytest.fixture
def fleet(db_url, tmp_path):
    f = WorkerFleet(db_url, tmp_path)
    yield f
    f.close()


def enqueue(conn, payload: dict, n: int = 1, **kw) -> list:
    args = "".join(f", p_{k} => %({k})s" for k in kw)
    rows = conn.execute(
        f"select audio_queue.enqueue_job(%(p)s::jsonb{args}) from generate_series(1, %(n)s)",
        {"p": json.dumps(payload), "n": n, **kw},
    ).fetchall()
    return [r[0] for r in rows]


def counts(conn) -> dict[str, int]:
    return dict(conn.execute("select status, count(*) from audio_queue.jobs group by 1").fetchall())


def all_finished(conn) -> bool:
    return conn.execute(
        "select count(*) = 0 from audio_queue.jobs where status in ('pending','queued','processing')"
    ).fetchone()[0]


def test_jobs_complete_with_progress_and_stage_reported(conn, fleet):
    (jid,) = enqueue(conn, {"sleep_ms": 3000})
    w = fleet.start(LEASE_SECONDS=6)
    seen = wait_until(
        lambda: (r := job(conn, jid))["progress"] > 0 and r["status"] == "processing" and r,
        timeout=20,
        what="progress mid-job",
    )
    assert seen["stage"] == "sleep" and 0 < seen["progress"] < 100
    done = wait_until(
        lambda: (r := job(conn, jid))["status"] == "completed" and r, timeout=20, what="completion"
    )
    assert done["progress"] == 100 and done["result"]["slept_ms"] == 3000
    assert f"job={jid}" in w.log and "job completed" in w.log


def test_exactly_once_with_four_workers_of_two_slots_on_2000_jobs(conn, fleet):
    ids = enqueue(conn, {"sleep_ms": 0}, n=2000)
    workers = [fleet.start(MAX_CONCURRENT_JOBS=2, LOG_LEVEL="warning") for _ in range(4)]
    wait_until(lambda: all_finished(conn), timeout=240, interval=0.5, what="2000 jobs to finish")
    assert counts(conn) == {"completed": 2000}
    done = fleet.executions("done")
    assert set(done) == {str(i) for i in ids}
    assert max(done.values()) == 1, "a job was executed twice"
    assert conn.execute("select max(attempts) from audio_queue.jobs").fetchone()[0] == 1
    per_worker = conn.execute("select count(distinct result->>'attempt') from audio_queue.jobs").fetchone()
    assert per_worker[0] == 1
    assert all(w.proc.poll() is None for w in workers), "a worker died"


def test_kill_9_mid_job_is_rescued_and_completed_by_another_worker(conn, fleet):
    (jid,) = enqueue(conn, {"first_attempt_ms": 60000, "sleep_ms": 100, "child": True})
    a = fleet.start(LEASE_SECONDS=3, RESCUE_INTERVAL_SECONDS=1)
    wait_until(lambda: job(conn, jid)["status"] == "processing", timeout=20, what="claim by worker A")
    a.kill()
    b = fleet.start(LEASE_SECONDS=3, RESCUE_INTERVAL_SECONDS=1)
    done = wait_until(
        lambda: (r := job(conn, jid))["status"] == "completed" and r,
        timeout=30,
        what="rescue and completion by worker B",
    )
    assert done["attempts"] == 2 and done["rescue_count"] == 1
    assert "stopped heartbeating" in done["last_error"]
    assert fleet.executions("done")[str(jid)] == 1
    assert b.proc.poll() is None


def test_a_poison_job_that_kills_every_worker_ends_failed(conn, fleet):
    conn.execute("update audio_queue.settings set max_rescues = 2")
    (poison,) = enqueue(conn, {"fail": "kill"}, max_attempts=10)
    (good,) = enqueue(conn, {"sleep_ms": 10}, priority=-1)
    deaths = 0
    survivor = None
    deadline = time.monotonic() + 90
    while survivor is None:
        assert time.monotonic() < deadline and deaths <= 6, f"poison job still {job(conn, poison)['status']}"
        w = fleet.start(LEASE_SECONDS=3, RESCUE_INTERVAL_SECONDS=1, MAX_CONCURRENT_JOBS=1)
        wait_until(
            lambda: w.proc.poll() is not None or job(conn, poison)["status"] == "failed",  # noqa: B023 (called at once)
            timeout=20,
            what="the worker to die or the poison job to fail",
        )
        if w.proc.poll() is not None:
            deaths += 1
        else:
            survivor = w
    row = job(conn, poison)
    assert "rescue limit of 2" in row["error_message"]
    assert deaths == 3
    wait_until(lambda: job(conn, good)["status"] == "completed", timeout=20, what="the good job")
    survivor.signal(signal.SIGTERM)
    assert survivor.wait(30) == 0


def test_sigterm_lets_short_jobs_finish_releases_long_ones_and_exits_0(conn, fleet):
    (short,) = enqueue(conn, {"sleep_ms": 1500})
    (long_,) = enqueue(conn, {"sleep_ms": 61234, "child": True})
    w = fleet.start(SHUTDOWN_GRACE_SECONDS=3)
    wait_until(lambda: counts(conn).get("processing") == 2, timeout=20, what="both jobs running")
    time.sleep(0.3)
    started = time.monotonic()
    w.signal(signal.SIGTERM)
    time.sleep(0.2)
    w.signal(signal.SIGTERM)  # Heroku may send it more than once
    assert w.wait(timeout=15) == 0
    assert time.monotonic() - started < 3 + 6
    assert job(conn, short)["status"] == "completed"
    released = job(conn, long_)
    assert released["status"] == "pending" and released["attempts"] == 0 and released["lease_id"] is None
    leftover = subprocess.run(["pgrep", "-f", "sleep 121.234"], capture_output=True, text=True)
    assert leftover.stdout.strip() == "", "the job's child process outlived the worker"
    assert "already stopping" in w.log


def test_terminated_database_connections_lose_and_duplicate_nothing(conn, fleet, db_url):
    ids = enqueue(conn, {"sleep_ms": 20}, n=300)
    for _ in range(2):
        fleet.start(MAX_CONCURRENT_JOBS=4, LEASE_SECONDS=3, RESCUE_INTERVAL_SECONDS=1, LOG_LEVEL="info")
    wait_until(lambda: counts(conn).get("completed", 0) >= 20, timeout=30, what="the run to get going")
    dbname = conn.info.dbname
    killed = 0
    for _ in range(4):
        killed += conn.execute(
            "select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity "
            "where datname = %s and application_name like 'audio-worker%%' and pid <> pg_backend_pid()) t",
            (dbname,),
        ).fetchone()[0]
        time.sleep(0.4)
    assert killed >= 4
    wait_until(
        lambda: all_finished(conn), timeout=90, interval=0.5, what="all jobs to finish after the outage"
    )
    assert counts(conn) == {"completed": 300}
    done = fleet.executions("done")
    assert set(done) == {str(i) for i in ids} and max(done.values()) == 1
    assert all(w.proc.poll() is None for w in fleet.started)


def test_cancel_of_a_running_job_stops_it_at_the_next_heartbeat(conn, fleet):
    (jid,) = enqueue(conn, {"sleep_ms": 62345, "child": True})
    fleet.start(LEASE_SECONDS=3)
    wait_until(
        lambda: subprocess.run(["pgrep", "-f", "sleep 122.345"], capture_output=True).returncode == 0,
        timeout=20,
        what="the job's child process to start",
    )
    assert conn.execute("select audio_queue.cancel_job(%s)", (jid,)).fetchone()[0] is True
    row = wait_until(
        lambda: (r := job(conn, jid))["status"] == "cancelled" and r, timeout=10, what="cancellation"
    )
    assert row["error_message"] == "cancelled while processing"
    wait_until(
        lambda: subprocess.run(["pgrep", "-f", "sleep 122.345"], capture_output=True).returncode == 1,
        timeout=5,
        what="the job's child process to be killed",
    )
    assert fleet.executions("done")[str(jid)] == 0


def test_job_timeout_stops_the_work_and_retries_later(conn, fleet):
    (jid,) = enqueue(conn, {"first_attempt_ms": 60000, "sleep_ms": 10})
    fleet.start(JOB_TIMEOUT_MS=10000, LEASE_SECONDS=30)
    row = wait_until(
        lambda: (r := job(conn, jid))["status"] == "pending" and r["attempts"] == 1 and r,
        timeout=25,
        what="timeout",
    )
    assert row["last_error"] == "timed out after 10000 ms (JOB_TIMEOUT_MS)"
    assert row["run_at"] > row["updated_at"]  # backoff before the retry


def test_bad_payload_fails_at_once_naming_the_field_and_the_worker_moves_on(conn, fleet):
    (bad,) = enqueue(conn, {"sleep_ms": "soon"}, max_attempts=5)
    (good,) = enqueue(conn, {"sleep_ms": 10}, priority=-1)
    w = fleet.start()
    wait_until(lambda: job(conn, good)["status"] == "completed", timeout=20, what="the good job")
    row = job(conn, bad)
    assert row["status"] == "failed" and row["attempts"] == 1
    assert (
        row["error_message"]
        == "invalid payload: sleep_ms: must be a number of milliseconds between 0 and 3600000"
    )
    assert w.proc.poll() is None


def test_secrets_never_reach_logs_or_job_errors(conn, fleet, db_url):
    # Pw@SeKr/1t:x, percent-encoded as a URL needs it; trust auth ignores it, so the worker connects.
    encoded = "Pw%40SeKr%2F1t%3Ax"
    url = db_url.replace("postgresql://postgres@", f"postgresql://postgres:{encoded}@")
    forms = ("Pw@SeKr/1t:x", encoded, encoded.lower(), "SeKr")
    (leak,) = enqueue(conn, {"fail": "leak"})  # an error message that holds DATABASE_URL
    (ok,) = enqueue(conn, {"sleep_ms": 10}, priority=-1)
    w = fleet.start(DATABASE_URL=url, LOG_FORMAT="json")
    wait_until(lambda: job(conn, ok)["status"] == "completed", timeout=20, what="jobs")
    error = job(conn, leak)["error_message"]
    assert "postgres:***@127.0.0.1" in error and not any(f in error for f in forms), error
    w.signal(signal.SIGTERM)
    w.wait(20)
    assert "could not connect with" in w.log and not any(f in w.log for f in forms)
    lines = [json.loads(line) for line in w.log.splitlines() if line.startswith("{")]
    job_lines = [ln for ln in lines if ln["record"]["extra"].get("job_id") == str(ok)]
    assert job_lines and all(ln["record"]["extra"]["worker_id"].count(":") == 2 for ln in job_lines)


def test_transaction_pooler_mode_says_so_and_still_works_by_polling(conn, fleet):
    w = fleet.start(DATABASE_POOL_MODE="transaction", POLL_INTERVAL_MS=1000)
    wait_until(lambda: "transaction pooler" in w.log, timeout=20, what="start-up note")
    (jid,) = enqueue(conn, {"sleep_ms": 10})
    wait_until(lambda: job(conn, jid)["status"] == "completed", timeout=10, what="completion by polling")
    assert "LISTEN unavailable" in w.log


def test_a_result_that_is_not_json_fails_only_its_own_job(conn, fleet):
    good = enqueue(conn, {"sleep_ms": 200}, n=5)
    (bad,) = enqueue(conn, {"sleep_ms": 200, "fail": "notjson"})
    fleet.start(MAX_CONCURRENT_JOBS=6)
    wait_until(lambda: all_finished(conn), timeout=20, what="all jobs")
    assert all(job(conn, g)["status"] == "completed" for g in good)
    row = job(conn, bad)
    assert row["status"] == "failed" and row["error_message"].startswith(
        "handler returned a result that is not JSON"
    )


def test_sigterm_during_start_up_exits_0_without_claiming(conn, fleet):
    """From the first line of ``python -m worker`` (before that, the interpreter itself is starting
    and the default action applies) through imports and start-up checks, SIGTERM exits 0."""
    (jid,) = enqueue(conn, {"sleep_ms": 10})
    for delay in (0.0, 0.05, 0.1, 0.2, 0.3, 0.5):
        w = fleet.start()
        wait_until(w.catches_sigterm, timeout=20, interval=0.002, what="the first handler")
        time.sleep(delay)
        w.signal(signal.SIGTERM)
        assert w.wait(timeout=20) == 0, w.log[-1000:]
    assert job(conn, jid)["status"] in ("pending", "completed")
    assert job(conn, jid)["attempts"] <= 1


def test_a_slow_completion_write_does_not_hold_the_slot(conn, fleet):
    """A job's slot runs the next job as soon as its work is over, while its completion commits:
    one slot, the first job's completion held 2 s in the database, the second starts at once."""
    conn.execute(
        """
        create function audio_queue.test_slow_completion() returns trigger language plpgsql as $$
        begin perform pg_sleep(2); return new; end $$;
        create trigger test_slow_completion before update on audio_queue.jobs for each row
            when (new.status = 'completed' and old.status = 'processing' and new.payload ? 'slow_completion')
            execute function audio_queue.test_slow_completion();
        """
    )
    try:
        (first,) = enqueue(conn, {"sleep_ms": 100, "slow_completion": True}, priority=1)
        (second,) = enqueue(conn, {"sleep_ms": 100})
        fleet.start(MAX_CONCURRENT_JOBS=1)
        wait_until(lambda: all_finished(conn), timeout=30, what="both jobs to finish")
        a, b = job(conn, first), job(conn, second)
        assert a["status"] == b["status"] == "completed"
        # completed_at is the completion's transaction start: the commit came 2 s later.
        assert (b["started_at"] - a["completed_at"]).total_seconds() < 1.0
    finally:
        conn.execute("drop trigger test_slow_completion on audio_queue.jobs")
        conn.execute("drop function audio_queue.test_slow_completion()")
