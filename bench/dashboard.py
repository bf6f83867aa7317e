"""Dashboard benchmark: its pages over a table of 1,000,000 finished jobs.

    uv run python bench/dashboard.py [--jobs 1000000] [--requests 60]

Makes a throwaway database, migrates it, fills ``audio_queue.jobs`` with finished jobs spread over
30 days (94 % completed, 5 % failed, 1 % cancelled; payloads and results of realistic size) plus a
live queue (200 due, 50 scheduled, 20 running) with generate_series, runs ``python -m worker web``
on 127.0.0.1 and times each page over HTTP from a signed-in client: p50/p95/max in ms. Not a test:
nothing here asserts a speed (the goal is the overview under 200 ms).
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/queue.py shadows the standard library's ``queue`` (which psycopg imports): run with the
# repository root, not bench/, on sys.path.
REPO = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO))

import argparse
import os
import re
import statistics
import subprocess
import tempfile
import time

import httpx
import psycopg
from psycopg.conninfo import conninfo_to_dict

from tests.support.pg import TestDatabases
from worker.local.ports import free_port
from worker.queue.db.migrate import migrate

PASSWORD = "bench-dashboard-password"

FILL = """
insert into audio_queue.jobs
    (status, payload, result, attempts, created_at, started_at, completed_at, error_message, last_error,
     user_id, track_id, progress)
select s.status,
       jsonb_build_object('spec_version', 1, 'duration_s', 600, 'layers', jsonb_build_array(
           jsonb_build_object('type', 'speech', 'text', repeat('breathe in slowly ', 4), 'provider', 'openai'),
           jsonb_build_object('type', 'binaural', 'carrier_hz', 200, 'beat_hz', 6),
           jsonb_build_object('type', 'noise', 'color', 'pink', 'gain_db', -22))),
       case when s.status = 'completed' then jsonb_build_object(
           'mp3_url', 'https://ref.supabase.co/storage/v1/object/public/audio/generated/' || i || '.mp3',
           'duration_s', 600, 'loudness', jsonb_build_object('integrated_lufs', -16.0, 'true_peak_dbtp', -1.6),
           'preview', jsonb_build_object('bucket', 'audio', 'key', 'generated/' || i || '.mp3')) end,
       1,
       s.ended - interval '95 seconds', s.ended - interval '90 seconds', s.ended,
       case when s.status = 'failed' then 'provider timeout after 3 attempts (job ' || i || ')' end,
       case when s.status = 'failed' then 'provider timeout after 3 attempts (job ' || i || ')' end,
       ('00000000-0000-0000-0000-' || lpad((i %% 5000)::text, 12, '0'))::uuid,
       gen_random_uuid(),
       100
  from generate_series(1, %(n)s) i,
       lateral (select case when i %% 100 < 94 then 'completed' when i %% 100 < 99 then 'failed'
                            else 'cancelled' end as status,
                       now() - make_interval(secs => (i::float8 / %(n)s) * 30 * 86400) as ended) s
"""


def fill(url: str, n: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.monotonic()
        conn.execute(FILL, {"n": n})
        conn.execute(
            "select audio_queue.enqueue_job('{\"sleep_ms\": 1}'::jsonb) from generate_series(1, 200)"
        )
        conn.execute(
            "select audio_queue.enqueue_job('{\"sleep_ms\": 1}'::jsonb, 0, now() + interval '1 day') "
            "from generate_series(1, 50)"
        )
        conn.execute("select count(*) from audio_queue.get_next_pending_job('bench-dyno.1', 20, 600)")
        conn.execute("vacuum analyze audio_queue.jobs")
        size = conn.execute("select pg_size_pretty(pg_total_relation_size('audio_queue.jobs'))").fetchone()
        print(
            f"filled {n:,} finished jobs + a live queue in {time.monotonic() - started:.0f} s ({size[0] if size else '?'})"
        )


def timed(client: httpx.Client, path: str, n: int) -> list[float]:
    client.get(path).raise_for_status()  # warm up (plans, pool)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = client.get(path)
        out.append((time.perf_counter() - t) * 1000)
        r.raise_for_status()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=1_000_000)
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--keep", action="store_true", help="keep the filled database (its URL is printed)")
    ap.add_argument("--reuse", metavar="URL", help="time the pages over a database a --keep run filled")
    args = ap.parse_args()
    dbs = TestDatabases()
    proc = None
    try:
        if args.reuse:
            url = args.reuse
            migrate(url, log=lambda _m: None)
        else:
            url = dbs.create("aw_bench_dash")
            migrate(url, log=lambda _m: None)
            fill(url, args.jobs)
            if args.keep:
                dbs.created.remove(conninfo_to_dict(url)["dbname"])  # not dropped at the end
                print(f"database kept: {url}")
        with psycopg.connect(url) as conn:
            failed_id = conn.execute(
                "select id from audio_queue.jobs where status = 'failed' limit 1"
            ).fetchone()
        port = free_port()
        env = {**os.environ, "DATABASE_URL": url, "DASHBOARD_PASSWORD": PASSWORD, "DASHBOARD_PORT": str(port),
               "HIREFIRE_TOKEN": "bench-token"}  # fmt: skip
        for var in ("PORT", "HEALTH_PORT"):
            env.pop(var, None)
        log = tempfile.NamedTemporaryFile(prefix="bench-dashboard-", suffix=".log", delete=False)
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker", "web"], cwd=REPO, env=env, stdout=log, stderr=log
        )
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    page = client.get("/login")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise SystemExit(f"the dashboard did not start; see {log.name}") from None
                    time.sleep(0.2)
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert token
            client.post(
                "/login", data={"csrf_token": token.group(1), "username": "admin", "password": PASSWORD}
            )
            pages = {
                "overview (/)": "/",
                "overview live part (/live)": "/live",
                "jobs, newest": "/jobs",
                "jobs, failed": "/jobs?status=failed",
                "jobs, one user": "/jobs?user=00000000-0000-0000-0000-000000000042",
                "jobs, error text": "/jobs?error=job+123456)",
                "job page": f"/jobs/{failed_id[0] if failed_id else ''}",
                "hirefire info": "/hirefire/bench-token/info",
            }
            print(f"{'page':<28} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}   ({args.requests} requests each)")
            for label, path in pages.items():
                ms = sorted(timed(client, path, args.requests))
                p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
                print(f"{label:<28} {statistics.median(ms):8.1f} {p95:8.1f} {ms[-1]:8.1f}")
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(15)
        dbs.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
