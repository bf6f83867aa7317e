"""The DBA runbook: every sql/*.sql file runs with plain psql and does what its header says."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.jobs import scalar

SQL = Path(__file__).resolve().parents[2] / "sql"
pytestmark = pytest.mark.skipif(shutil.which("psql") is None, reason="psql is not installed")


def psql(url: str, name: str, **vars: str) -> str:
    cmd = ["psql", url, "-X", "-v", "ON_ERROR_STOP=1", "-f", str(SQL / name)]
    for k, v in vars.items():
        cmd += ["-v", f"{k}={v}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def make_failed(conn, error="provider said no") -> str:
    jid = scalar(conn, "select audio_queue.enqueue_job('{}'::jsonb)")
    lease = scalar(conn, "select lease_id from audio_queue.get_next_pending_job('w')")
    scalar(conn, "select audio_queue.complete_job(%s, null, %s, %s)", jid, error, lease)
    return str(jid)


def test_every_runbook_file_runs(db_url):
    for f in sorted(SQL.glob("*.sql")):
        psql(db_url, f.name)


def test_stats_shows_counts_and_failure_rate(db_url, conn):
    make_failed(conn)
    scalar(conn, "select audio_queue.enqueue_job('{}'::jsonb)")
    out = psql(db_url, "stats.sql")
    assert "pending            | 1" in out and "failed_24h         | 1" in out
    assert "failure_rate_24h   | 1.0000" in out


def test_requeue_one_failed_job_by_id(db_url, conn):
    jid = make_failed(conn, "quota exhausted")
    other = make_failed(conn)
    assert "1" in psql(db_url, "requeue_failed.sql", job_id=f"'{jid}'")
    row = conn.execute(
        "select status, attempts, last_error from audio_queue.jobs where id = %s", (jid,)
    ).fetchone()
    assert row == ("pending", 0, "requeued by hand after: quota exhausted")
    assert scalar(conn, "select status from audio_queue.jobs where id = %s", other) == "failed"
    psql(db_url, "requeue_failed.sql", since="'1 hour'")
    assert scalar(conn, "select status from audio_queue.jobs where id = %s", other) == "pending"


def test_recent_failures_lists_the_error(db_url, conn):
    make_failed(conn, "ElevenLabs: voice_not_found")
    assert "ElevenLabs: voice_not_found" in psql(db_url, "recent_failures.sql")


def test_cancel_job_by_id(db_url, conn):
    jid = scalar(conn, "select audio_queue.enqueue_job(%s::jsonb)", json.dumps({"a": 1}))
    psql(db_url, "cancel_job.sql", job_id=f"'{jid}'")
    assert scalar(conn, "select status from audio_queue.jobs where id = %s", jid) == "cancelled"


def test_stuck_jobs_and_reset(db_url, conn):
    jid = scalar(conn, "select audio_queue.enqueue_job('{}'::jsonb)")
    scalar(conn, "select id from audio_queue.get_next_pending_job('gone-worker')")
    conn.execute("update audio_queue.jobs set lease_expires_at = now() - interval '1 s'")
    assert "gone-worker" in psql(db_url, "stuck_jobs.sql")
    assert "1" in psql(db_url, "reset_stuck_jobs.sql")
    assert scalar(conn, "select status from audio_queue.jobs where id = %s", jid) == "pending"


def test_purge_keeps_recent_and_unfinished_jobs(db_url, conn):
    old = make_failed(conn)
    recent = make_failed(conn)
    waiting = scalar(conn, "select audio_queue.enqueue_job('{}'::jsonb)")
    conn.execute(
        "update audio_queue.jobs set completed_at = now() - interval '40 days' where id = %s", (old,)
    )
    psql(db_url, "purge_finished.sql")
    left = {str(r[0]) for r in conn.execute("select id from audio_queue.jobs")}
    assert left == {recent, str(waiting)}
