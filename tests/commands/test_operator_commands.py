"""``python -m worker enqueue | status | stats`` as an operator runs them, against a real database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "worker" / "render" / "examples" / "guided-meditation.json"


def worker(
    db_url: str, *args: str, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {"DATABASE_URL": db_url}
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        cwd=REPO,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def claim(conn: psycopg.Connection) -> tuple[uuid.UUID, uuid.UUID]:
    row = conn.execute("select id, lease_id from audio_queue.get_next_pending_job('test', 1, 60)").fetchone()
    assert row is not None
    return row[0], row[1]


def complete(
    conn: psycopg.Connection,
    job_id: uuid.UUID,
    lease_id: uuid.UUID,
    *,
    error: str | None = None,
    result: dict | None = None,
) -> None:
    conn.execute(
        "select audio_queue.complete_job(%s, %s, %s, %s, false)",
        (job_id, Jsonb(result) if result is not None else None, error, lease_id),
    )


def test_enqueue_prints_the_id_of_a_stored_job(db_url, conn):
    out = worker(
        db_url,
        "enqueue",
        str(SPEC),
        "--priority",
        "5",
        "--run-at",
        "2030-01-01T00:00:00Z",
        "--idempotency-key",
        "k-1",
        "--max-attempts",
        "4",
    )
    assert out.returncode == 0, out.stderr
    job_id = uuid.UUID(out.stdout.strip())
    row = conn.execute(
        "select status, priority, run_at, idempotency_key, max_attempts, payload "
        "from audio_queue.jobs where id = %s",
        (job_id,),
    ).fetchone()
    assert row is not None
    status, priority, run_at, key, max_attempts, payload = row
    assert (status, priority, key, max_attempts) == ("pending", 5, "k-1", 4)
    assert run_at.year == 2030
    assert payload == json.loads(SPEC.read_text())
    again = worker(db_url, "enqueue", str(SPEC), "--idempotency-key", "k-1")
    assert again.stdout.strip() == str(job_id), "same idempotency key while pending: same job"


def test_enqueue_reads_stdin(db_url, conn):
    out = worker(db_url, "enqueue", "-", stdin=SPEC.read_text())
    assert out.returncode == 0, out.stderr
    assert conn.execute("select count(*) from audio_queue.jobs").fetchone()[0] == 1


def test_a_bad_spec_is_refused_naming_the_field_and_nothing_is_enqueued(db_url, conn, tmp_path):
    spec = json.loads(SPEC.read_text())
    spec["layers"][1]["carrier_hz"] = -3
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(spec))
    out = worker(db_url, "enqueue", str(bad))
    assert out.returncode == 1
    assert "layers[1].carrier_hz" in out.stderr
    assert conn.execute("select count(*) from audio_queue.jobs").fetchone()[0] == 0
    skipped = worker(db_url, "enqueue", str(bad), "--no-validate")
    assert skipped.returncode == 0, skipped.stderr


def test_enqueue_refuses_a_run_at_without_zone_and_unreadable_files(db_url, tmp_path):
    out = worker(db_url, "enqueue", str(SPEC), "--run-at", "2030-01-01T00:00:00")
    assert out.returncode == 2 and "time zone" in out.stderr
    missing = worker(db_url, "enqueue", str(tmp_path / "nope.json"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr


def test_status_of_a_completed_job_shows_urls(db_url, conn):
    job_id = uuid.UUID(worker(db_url, "enqueue", str(SPEC)).stdout.strip())
    jid, lease = claim(conn)
    assert jid == job_id
    complete(conn, jid, lease, result={"wav_url": "https://x/master.wav", "mp3_url": "https://x/preview.mp3"})
    out = worker(db_url, "status", str(job_id))
    assert out.returncode == 0, out.stderr
    assert f"job {job_id}: completed" in out.stdout
    assert (
        "100%" in out.stdout
        and "https://x/master.wav" in out.stdout
        and "https://x/preview.mp3" in out.stdout
    )
    js = json.loads(worker(db_url, "status", str(job_id), "--json").stdout)
    assert js["status"] == "completed" and js["result"]["mp3_url"] == "https://x/preview.mp3"


def test_status_of_a_failed_job_shows_the_error_and_wait_exits_1(db_url, conn):
    job_id = worker(db_url, "enqueue", str(SPEC)).stdout.strip()
    jid, lease = claim(conn)
    complete(conn, jid, lease, error="invalid payload: layers[0].text: required")
    out = worker(db_url, "status", job_id)
    assert out.returncode == 0
    assert "failed" in out.stdout and "layers[0].text: required" in out.stdout
    assert worker(db_url, "status", job_id, "--wait").returncode == 1


def test_status_of_an_unknown_or_malformed_id_exits_1(db_url):
    unknown = worker(db_url, "status", str(uuid.uuid4()))
    assert unknown.returncode == 1 and "no job" in unknown.stderr
    bad = worker(db_url, "status", "not-a-uuid")
    assert bad.returncode == 1 and "not a job id" in bad.stderr


@pytest.mark.timeout(60)
def test_status_wait_follows_progress_until_another_process_completes_the_job(db_url, conn):
    job_id = worker(db_url, "enqueue", str(SPEC)).stdout.strip()
    jid, lease = claim(conn)
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {"DATABASE_URL": db_url}
    status = subprocess.Popen(
        [sys.executable, "-m", "worker", "status", job_id, "--wait", "--interval", "0.1"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert status.stdout is not None
    lines: list[str] = []

    def until(text: str) -> None:
        """Read what --wait prints until ``text``: each change is made once the previous one showed."""
        while not lines or text not in lines[-1]:
            line = status.stdout.readline()
            assert line, f"status exited before printing {text!r}: {lines}"
            lines.append(line.rstrip("\n"))

    until("processing")  # it follows the claimed job
    for pct, stage in ((30, "mix"), (80, "master")):
        conn.execute("select audio_queue.update_job_progress(%s, %s, %s, %s)", (jid, pct, stage, lease))
        until(f"processing {stage} {pct}%")
    assert status.poll() is None, "returned before the job was completed"
    complete(conn, jid, lease, result={"mp3_url": "https://x/p.mp3"})
    until(f"job {job_id}: completed")
    assert status.wait(30) == 0, status.stderr.read() if status.stderr else ""


def test_stats_prints_counts(db_url, conn):
    for _ in range(3):
        worker(db_url, "enqueue", str(SPEC))
    worker(db_url, "enqueue", str(SPEC), "--run-at", "2099-01-01T00:00:00+00:00")
    jid, lease = claim(conn)
    complete(conn, jid, lease, error="boom")
    out = worker(db_url, "stats")
    assert out.returncode == 0, out.stderr
    counts, users = out.stdout.split("\n\n")[:2]
    figures = {
        line.rsplit("  ", 1)[0].strip(): line.rsplit("  ", 1)[1].strip() for line in counts.splitlines()
    }
    assert figures["pending (due now)"] == "2"
    assert figures["scheduled (later)"] == "1"
    assert figures["failed, last 24 h"] == "1"
    assert figures["failure rate, 24 h"] == "100.0%"
    assert users.splitlines()[1].split() == ["(no", "user)", "0", "3"]  # 2 due + 1 scheduled wait
    js = json.loads(worker(db_url, "stats", "--json").stdout)
    assert (js["pending"], js["scheduled"], js["failed_24h"], js["failure_rate_24h"]) == (2, 1, 1, 1.0)
    assert js["users"] == [{"user_id": None, "running": 0, "waiting": 3}]


def test_stats_shows_the_busiest_users_and_provider_slots(db_url, conn):
    heavy, light = uuid.UUID(int=7), uuid.UUID(int=8)
    for user, n in ((heavy, 3), (light, 1)):
        for _ in range(n):
            worker(db_url, "enqueue", str(SPEC), "--user-id", str(user), "--no-validate")
    conn.execute(
        "truncate audio_queue.provider_leases, audio_queue.provider_requests, audio_queue.provider_limits"
    )
    conn.execute("select * from audio_queue.acquire_provider_slot('elevenlabs', 'acct1', 2, 100, 60, 30)")
    out = worker(db_url, "stats")
    assert out.returncode == 0, out.stderr
    assert f"{heavy}        0        3" in out.stdout and f"{light}        0        1" in out.stdout
    assert "elevenlabs [acct1]  1/2 in flight, 1/100 per 60 s" in out.stdout
    js = json.loads(worker(db_url, "stats", "--json").stdout)
    assert js["users"][0] == {"user_id": str(heavy), "running": 0, "waiting": 3}
    assert js["providers"][0]["in_use"] == 1


@pytest.mark.parametrize("cmd", [["stats"], ["status", str(uuid.UUID(int=1))], ["enqueue", str(SPEC)]])
def test_database_errors_name_the_server_but_never_the_password(cmd):
    out = worker("postgresql://svc:s3cr3t-pw@127.0.0.1:1/db", *cmd)
    assert out.returncode == 1
    assert "svc@127.0.0.1:1/db" in out.stderr
    assert "s3cr3t-pw" not in out.stderr + out.stdout
