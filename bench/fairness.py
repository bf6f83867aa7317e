"""Fair-share benchmark: a heavy user's backlog against light users, through real worker processes.

    uv run python bench/fairness.py [--heavy 300] [--light 20] [--workers 4] [--slots 2]
                                    [--job-ms 200] [--provider-ms 100] [--max-concurrent 3]

One user enqueues ``--heavy`` short jobs, then ``--light`` users enqueue one job each. Every job
fetches speech from a local fake of ElevenLabs (``tests.handlers:speak``: the provider call the
pipeline makes, fleet-wide slots included, then ``--job-ms`` of work), on ``--workers`` processes
of ``--slots`` slots, with ELEVENLABS_MAX_CONCURRENT=``--max-concurrent`` for the whole fleet.

Prints, with fair claiming on and then off (audio_queue.settings.fair_claiming):
- the light users' enqueue-to-start wait, p50/p95, and that p95 in jobs' durations (target with
  fairness on: at most 2);
- the peak number of requests the fake provider saw at once against the fleet-wide limit
  (target: never above), and how many requests broke the limit.
Waits come from the jobs' own timestamps (started_at - created_at). Not a test.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO))

import argparse
import json
import os
import signal
import statistics
import subprocess
import time
import uuid

import psycopg

from tests.fakes import FakeElevenLabs, Reply
from tests.fakes.audio import sample_audio
from tests.fakes.server import RecordedRequest
from tests.support.pg import TestDatabases
from worker.queue.db.migrate import migrate

HEAVY = uuid.UUID("aaaaaaaa-0000-0000-0000-000000000001")


class Provider(FakeElevenLabs):
    """The fake with one encoded clip for every reply (encoding one per request would cost the
    two cores more than the jobs themselves)."""

    clip = sample_audio("mp3")

    def audio_reply(self, req: RecordedRequest) -> bytes:
        return self.clip


def run(url: str, fake: FakeElevenLabs, args: argparse.Namespace, fair: bool) -> tuple[list[float], float]:
    """One round; returns the light users' waits (s) and the mean job duration (s)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("truncate audio_queue.jobs cascade")
        conn.execute("truncate audio_queue.provider_leases, audio_queue.provider_requests")
        conn.execute("update audio_queue.settings set fair_claiming = %s", (fair,))
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "JOB_HANDLER": "tests.handlers:speak",
            "MAX_CONCURRENT_JOBS": str(args.slots),
            "POLL_INTERVAL_MS": "1000",
            "LOG_LEVEL": "warning",
            "PROVIDER_CACHE_ENABLED": "false",
            "ELEVENLABS_MAX_CONCURRENT": str(args.max_concurrent),
            "ELEVENLABS_RATE_LIMIT": "100000",
            **fake.env(),
        }
        procs = [
            subprocess.Popen([sys.executable, "-m", "worker", "run"], cwd=REPO, env=env)
            for _ in range(args.workers)
        ]
        try:
            # Workers first, idle on LISTEN: the waits measure the queue, not Python's start-up.
            while (
                conn.execute(
                    "select count(*) from pg_stat_activity where datname = current_database() "
                    "and query ilike 'listen%%'"
                ).fetchone()[0]
                < args.workers
            ):
                if any(p.poll() is not None for p in procs):
                    raise SystemExit("bench: a worker exited at start")
                time.sleep(0.1)
            payload = json.dumps({"text": "A short line.", "sleep_ms": args.job_ms})
            conn.execute(
                "select audio_queue.enqueue_job(%s::jsonb, p_user_id => %s) from generate_series(1, %s)",
                (payload, HEAVY, args.heavy),
            )
            light = [uuid.uuid4() for _ in range(args.light)]
            for u in light:
                conn.execute("select audio_queue.enqueue_job(%s::jsonb, p_user_id => %s)", (payload, u))
            deadline = time.monotonic() + 600
            total = args.heavy + args.light
            while (
                conn.execute(
                    "select count(*) from audio_queue.jobs where status in ('completed', 'failed')"
                ).fetchone()[0]
                < total
            ):
                if time.monotonic() > deadline:
                    raise SystemExit("bench: timed out")
                time.sleep(0.1)
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait(60)
        failed = conn.execute("select count(*) from audio_queue.jobs where status = 'failed'").fetchone()[0]
        if failed:
            raise SystemExit(f"bench: {failed} jobs failed")
        waits = [
            r[0]
            for r in conn.execute(
                "select extract(epoch from started_at - created_at)::float8 from audio_queue.jobs "
                "where user_id <> %s",
                (HEAVY,),
            ).fetchall()
        ]
        mean = conn.execute(
            "select avg(extract(epoch from completed_at - started_at))::float8 from audio_queue.jobs"
        ).fetchone()[0]
    return sorted(waits), mean


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heavy", type=int, default=300)
    ap.add_argument("--light", type=int, default=20)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--job-ms", type=int, default=200)
    ap.add_argument("--provider-ms", type=int, default=100)
    ap.add_argument("--max-concurrent", type=int, default=3)
    args = ap.parse_args()

    dbs = TestDatabases()
    try:
        url = dbs.create()
        migrate(url, log=lambda _m: None)
        with Provider() as fake:
            fake.always(Reply(200, delay=args.provider_ms / 1000))
            fake.max_concurrent = args.max_concurrent
            print(
                f"{args.heavy} jobs of one user, then {args.light} users with one job; "
                f"{args.workers} workers x {args.slots} slots; provider limit {args.max_concurrent} at once"
            )
            # Every slot runs the backlog when the light jobs arrive, and the slots free one by one
            # over a job's duration: the n-th light job cannot start before about n / slots jobs'
            # durations, whatever the claim order.
            nth = max(int(args.light * 0.95), 1)
            print(
                f"  floor for the light users' p95 (job {nth} of {args.light} on "
                f"{args.workers * args.slots} busy slots): {nth / (args.workers * args.slots):.1f} jobs' duration"
            )
            for fair in (True, False):
                fake.peak_in_flight, fake.excess = 0, []
                waits, mean = run(url, fake, args, fair)
                p50, p95 = statistics.median(waits), waits[max(int(len(waits) * 0.95) - 1, 0)]
                print(
                    f"  fair claiming {'on ' if fair else 'off'}: light users wait p50 {p50:.2f} s, "
                    f"p95 {p95:.2f} s = {p95 / mean:.1f} jobs' duration (job {mean:.2f} s); "
                    f"provider peak {fake.peak_in_flight}/{args.max_concurrent} at once, "
                    f"{len(fake.excess)} over the limit"
                )
    finally:
        dbs.close()


if __name__ == "__main__":
    main()
