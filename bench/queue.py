"""Queue benchmark: no-op jobs through the real SQL functions and real worker processes.

    uv run python bench/queue.py [--jobs 20000] [--slots 10] [--samples 300] [--webhook]
                                 [--users N] [--compare-fair]

Prints, in one run on one throwaway database:
- jobs/s with 1 and 4 ``python -m worker run`` processes, fair claiming on (the default; with
  ``--compare-fair`` also off), jobs without a user or spread over ``--users`` users (JOB_HANDLER=tests.handlers:noop);
- jobs/s of pgbench running the same claim/complete function calls (the database's own ceiling);
- enqueue-to-start latency p50/p95 for an idle worker woken by NOTIFY.

With ``--webhook`` the workers run with WEBHOOK_URL pointing at a local receiver (answers 204):
every job end also writes a webhook_outbox row and the workers post it, so the rates include the
outbox's cost; the run waits for the outbox to drain and prints how long that took.

Rates and latencies come from the jobs' own timestamps (the server's clock): first started_at to
last completed_at, and started_at - created_at. Not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file's name shadows the standard library's ``queue`` (which psycopg imports): run it with
# the repository root, not bench/, on sys.path.
REPO = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO))

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg

from tests.support.pg import TestDatabases
from worker.queue.db.migrate import migrate

PGBENCH_SCRIPT = """\
select id, lease_id from audio_queue.get_next_pending_job('pgbench', 1, 60) \\gset
select audio_queue.complete_job(':id'::uuid, '{"ok": true}'::jsonb, null, ':lease_id'::uuid);
"""


def reset(conn: psycopg.Connection) -> None:
    conn.execute("truncate audio_queue.jobs cascade")  # and the webhook outbox
    conn.execute("vacuum analyze audio_queue.jobs")


USERS = 0  # set by --users: jobs spread round-robin over this many users (0: no user_id)


def enqueue(conn: psycopg.Connection, n: int) -> None:
    if USERS:
        conn.execute(
            "select audio_queue.enqueue_job('{}'::jsonb, p_user_id => "
            "('00000000-0000-0000-0000-' || lpad(to_hex(i %% %s + 1), 12, '0'))::uuid) "
            "from generate_series(1, %s) i",
            (USERS, n),
        )
        return
    conn.execute("select audio_queue.enqueue_job('{}'::jsonb) from generate_series(1, %s)", (n,))


def set_fair(conn: psycopg.Connection, on: bool) -> None:
    conn.execute("update audio_queue.settings set fair_claiming = %s", (on,))


def rate(conn: psycopg.Connection) -> tuple[float, int]:
    first, last, n = conn.execute(
        "select min(started_at), max(completed_at), count(*) from audio_queue.jobs where status = 'completed'"
    ).fetchone()
    return n / (last - first).total_seconds(), n


def wait_done(conn: psycopg.Connection, n: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while conn.execute("select count(*) from audio_queue.jobs where status = 'completed'").fetchone()[0] < n:
        if time.monotonic() > deadline:
            raise SystemExit("bench: timed out waiting for jobs")
        time.sleep(0.05)


WEBHOOK_URL: str | None = None  # set by --webhook


class _Sink(BaseHTTPRequestHandler):
    received = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        _Sink.received += 1
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def start_receiver() -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def wait_outbox_empty(conn: psycopg.Connection, timeout: float = 600) -> float:
    started = time.monotonic()
    while conn.execute("select count(*) from audio_queue.webhook_outbox").fetchone()[0]:
        if time.monotonic() - started > timeout:
            raise SystemExit("bench: webhook notices not delivered in time")
        time.sleep(0.05)
    return time.monotonic() - started


def start_workers(url: str, k: int, slots: int) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "JOB_HANDLER": "tests.handlers:noop",
        "MAX_CONCURRENT_JOBS": str(slots),
        "LOG_LEVEL": "warning",
        "POLL_INTERVAL_MS": "1000",
    }
    if WEBHOOK_URL:
        env["WEBHOOK_URL"] = WEBHOOK_URL
    return [subprocess.Popen([sys.executable, "-m", "worker", "run"], cwd=REPO, env=env) for _ in range(k)]


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(60)


def bench_workers(url: str, conn: psycopg.Connection, k: int, jobs: int, slots: int) -> float:
    reset(conn)
    enqueue(conn, jobs)
    procs = start_workers(url, k, slots)
    try:
        wait_done(conn, jobs)
        if WEBHOOK_URL:
            drained = wait_outbox_empty(conn)
            print(f"    webhook notices: all delivered {drained:.1f} s after the last job completed")
    finally:
        stop(procs)
    r, _ = rate(conn)
    return r


def bench_pgbench(url: str, conn: psycopg.Connection, clients: int, jobs: int) -> float | None:
    exe = shutil.which("pgbench")
    if not exe:
        return None
    reset(conn)
    enqueue(conn, jobs)
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(PGBENCH_SCRIPT)
    try:
        subprocess.run(
            [
                exe,
                "-n",
                "-c",
                str(clients),
                "-j",
                str(min(clients, 2)),
                "-t",
                str(jobs // clients),
                "-f",
                f.name,
                url,
            ],
            check=True,
            capture_output=True,
            timeout=600,
        )
    finally:
        os.unlink(f.name)
    r, _ = rate(conn)
    return r


def bench_latency(url: str, conn: psycopg.Connection, samples: int) -> tuple[float, float]:
    reset(conn)
    procs = start_workers(url, 1, 2)
    try:
        time.sleep(2.0)  # let it start and go idle
        for _ in range(samples):
            enqueue(conn, 1)
            time.sleep(0.02)
        wait_done(conn, samples, timeout=60)
    finally:
        stop(procs)
    lat = [
        r[0] * 1000
        for r in conn.execute(
            "select extract(epoch from started_at - created_at) from audio_queue.jobs"
        ).fetchall()
    ]
    lat.sort()
    return statistics.median(lat), lat[int(len(lat) * 0.95) - 1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=20000, help="jobs per throughput run")
    ap.add_argument("--slots", type=int, default=10, help="MAX_CONCURRENT_JOBS of each worker")
    ap.add_argument("--samples", type=int, default=300, help="jobs in the latency run")
    ap.add_argument(
        "--webhook", action="store_true", help="workers post a webhook per job to a local receiver"
    )
    ap.add_argument(
        "--users", type=int, default=0, help="spread the jobs over N users (fair claiming has N groups)"
    )
    ap.add_argument(
        "--compare-fair", action="store_true", help="also run the worker rates with fair claiming off"
    )
    args = ap.parse_args()
    global WEBHOOK_URL, USERS
    USERS = args.users
    receiver = start_receiver() if args.webhook else None
    if receiver is not None:
        WEBHOOK_URL = f"http://127.0.0.1:{receiver.server_address[1]}/hook"

    dbs = TestDatabases()
    url = dbs.create("aw_bench")
    try:
        migrate(url, log=lambda _m: None)
        with psycopg.connect(url, autocommit=True) as conn:
            print(
                f"queue bench: {args.jobs} no-op jobs per run, {args.slots} slots per worker, {os.cpu_count()} cores"
                + (", webhooks on (local receiver)" if WEBHOOK_URL else "")
                + (f", jobs of {USERS} users" if USERS else ", jobs without a user")
            )
            for fair in (True, False) if args.compare_fair else (True,):
                set_fair(conn, fair)
                for k in (1, 4):
                    r = bench_workers(url, conn, k, args.jobs, args.slots)
                    print(
                        f"  fair claiming {'on ' if fair else 'off'}, worker processes={k}: {r:8.0f} jobs/s"
                    )
            set_fair(conn, True)
            pg = bench_pgbench(url, conn, 4, args.jobs)
            print(
                f"  pgbench, 4 clients, same claim/complete calls: {pg:8.0f} jobs/s"
                if pg
                else "  pgbench: not installed"
            )
            p50, p95 = bench_latency(url, conn, args.samples)
            print(
                f"  enqueue-to-start latency, idle worker (NOTIFY): p50 {p50:.2f} ms, p95 {p95:.2f} ms "
                f"({args.samples} jobs)"
            )
    finally:
        dbs.close()
        if receiver is not None:
            receiver.shutdown()


if __name__ == "__main__":
    main()
