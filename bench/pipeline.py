"""Full-pipeline benchmark: 1-minute tracks through the real queue, real worker processes, espeak,
ffmpeg and a local S3 server (moto, worker/local/s3.py).

    uv run python bench/pipeline.py [--jobs 12] [--seconds 60] [--slots 1] [--shared-cache]

Prints, for 1 and then 2 ``python -m worker run`` processes (``--slots`` jobs at once each,
default 1), jobs/hour and the share of a job's time spent outside ffmpeg.

``--shared-cache``: the provider cache's second level instead. The speech layer goes to the OpenAI
fake (tests/fakes, counting calls), one distinct text per job; the same N jobs run twice on one
worker, the second time with an empty local cache (a restarted dyno) and the shared level in the
local S3 server warm. Prints each run's provider calls (the second should make none) and jobs/hour.

Method:
- jobs/hour: N jobs enqueued at once into an idle fleet; N / (last ``completed_at`` - first
  ``started_at``), the server's own timestamps.
- time outside ffmpeg: ``FFMPEG_PATH`` points at a small shell wrapper that runs the real ffmpeg
  and appends each invocation's start and end time and its working directory to a log. The render
  runs ffmpeg in the job's temp dir (``job-<id>-...``), so every render pass is attributed to its
  job; invocations elsewhere (speech conversion by a provider, if any) go to the job whose
  ``started_at``..``completed_at`` interval holds them (split evenly when several do). Share outside = 1 - sum(ffmpeg wall time) / sum(job
  wall time, ``completed_at - started_at``). Everything not in an ffmpeg process counts as
  outside: claim, espeak, ffprobe, upload, completion, Python. The wrapper's own ``sh`` + ``date``
  cost (a few ms) is counted as ffmpeg time. The upload part of "outside" (master + preview to
  the local S3 server) is printed separately, from the workers' own "stored ... in X s" lines.
  Not a test: nothing here asserts.

Target (issue): time outside ffmpeg under 10% of a job.
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
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import psycopg

from tests.support.pg import TestDatabases
from worker.local.s3 import LocalS3
from worker.queue.db.migrate import migrate

TEXT = "Welcome. Settle in and let your eyes close. Breathe in slowly, and let the breath go. You are calm."

WRAPPER = """#!/bin/sh
s=$(date +%s.%N)
"{real}" "$@"
rc=$?
e=$(date +%s.%N)
echo "$s $e $rc $PWD" >> "{log}"
exit $rc
"""


def spec(seconds: float, provider: str = "espeak", text: str = TEXT, **master: object) -> dict:
    """A typical job: espeak voice, binaural ramp 10 -> 6 Hz, 528 Hz, pink noise."""
    return {
        "spec_version": 1, "duration_s": seconds, "fade_in_s": 3, "fade_out_s": 5,
        "layers": [
            {"type": "speech", "text": text, "provider": provider, "start_s": 2},
            {"type": "binaural", "carrier_hz": 200, "gain_db": -14,
             "schedule": [{"t_s": 0, "beat_hz": 10}, {"t_s": seconds * 0.8, "beat_hz": 6}]},
            {"type": "solfeggio", "frequency_hz": 528, "gain_db": -24},
            {"type": "noise", "color": "pink", "gain_db": -22},
        ],
        "output": {"master": {"format": "wav", "bit_depth": 24, **master}, "preview": {"bitrate_kbps": 128}},
    }  # fmt: skip


class Env:
    """A throwaway database, a local S3 server and an ffmpeg wrapper that logs invocations."""

    def __init__(self) -> None:
        self.dbs = TestDatabases()
        self.url = self.dbs.create("aw_bench_pipeline")
        migrate(self.url, log=lambda _m: None)
        self.s3 = LocalS3().start()
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
        self.ffmpeg_log = self.tmp / "ffmpeg.log"
        real = shutil.which("ffmpeg")
        if not real:
            raise SystemExit("bench: ffmpeg not found")
        wrapper = self.tmp / "ffmpeg"
        wrapper.write_text(WRAPPER.format(real=real, log=self.ffmpeg_log))
        wrapper.chmod(0o755)
        self.ffmpeg = str(wrapper)

    def worker_env(self, slots: int, cache: str = "cache", **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.url,
            "JOB_HANDLER": "worker.job.pipeline:render_job",
            "MAX_CONCURRENT_JOBS": str(slots),
            "LOG_LEVEL": "info",
            "POLL_INTERVAL_MS": "1000",
            "FFMPEG_PATH": self.ffmpeg,
            "RENDER_TMP_DIR": str(self.tmp / "render"),
            "PROVIDER_CACHE_DIR": str(self.tmp / cache),
            **self.s3.env(),
            **extra,
        }

    def start_worker(self, env: dict[str, str], log_name: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / log_name, "ab")
        return subprocess.Popen(
            [sys.executable, "-m", "worker", "run"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def close(self) -> None:
        self.s3.stop()
        self.dbs.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def wait_ready(conn: psycopg.Connection, timeout: float = 60) -> None:
    """Workers LISTEN once their start-up checks passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = conn.execute("select count(*) from pg_stat_activity where query ilike 'listen%%'").fetchone()[0]
        if n:
            return
        time.sleep(0.1)


def wait_done(conn: psycopg.Connection, n: int, procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        done, failed = conn.execute(
            "select count(*) filter (where status = 'completed'), "
            "count(*) filter (where status = 'failed') from audio_queue.jobs"
        ).fetchone()
        if failed:
            err = conn.execute(
                "select error_message from audio_queue.jobs where status = 'failed' limit 1"
            ).fetchone()
            raise SystemExit(f"bench: a job failed: {err[0]}")
        if done >= n:
            return
        if any(p.poll() is not None for p in procs):
            raise SystemExit("bench: a worker exited")
        if time.monotonic() > deadline:
            raise SystemExit("bench: timed out waiting for jobs")
        time.sleep(0.2)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(60)


def ffmpeg_calls(log: Path) -> list[tuple[float, float, str]]:
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        s, e, _rc, cwd = line.split(" ", 3)
        out.append((float(s), float(e), cwd))
    return out


STORED = re.compile(r" job=(\S+) stored \S+ \(\d+ bytes, [^)]*\) in ([\d.]+)s")


def upload_seconds(logs: list[Path]) -> float:
    """Sum of the worker's own "stored ... in X s" lines (both files of every job)."""
    return sum(float(m.group(2)) for log in logs for m in STORED.finditer(log.read_text(errors="replace")))


def run(
    env: Env,
    conn: psycopg.Connection,
    workers: int,
    jobs: int,
    seconds: float,
    slots: int,
    payloads: list[dict] | None = None,
    worker_env: dict[str, str] | None = None,
) -> dict:
    conn.execute("truncate audio_queue.jobs cascade")  # and the webhook outbox
    env.ffmpeg_log.unlink(missing_ok=True)
    logs = [env.tmp / f"worker-{workers}-{k}-{time.monotonic_ns()}.log" for k in range(workers)]
    procs = [env.start_worker(worker_env or env.worker_env(slots), log.name) for log in logs]
    try:
        wait_ready(conn)
        time.sleep(1.0)
        env.ffmpeg_log.unlink(missing_ok=True)  # start-up checks are not job time
        if payloads is None:
            payload = json.dumps(spec(seconds))
            conn.execute(
                "select audio_queue.enqueue_job(%s::jsonb) from generate_series(1, %s)", (payload, jobs)
            )
        else:
            for p in payloads:
                conn.execute("select audio_queue.enqueue_job(%s::jsonb)", (json.dumps(p),))
        wait_done(conn, jobs, procs, timeout=60 + jobs * seconds)
    finally:
        stop(procs)
    rows = conn.execute(
        "select id::text, extract(epoch from started_at), extract(epoch from completed_at), "
        "(result->'render'->>'render_seconds')::float from audio_queue.jobs"
    ).fetchall()
    first, last = min(float(r[1]) for r in rows), max(float(r[2]) for r in rows)
    job_s = {r[0]: float(r[2]) - float(r[1]) for r in rows}
    ff_s = dict.fromkeys(job_s, 0.0)
    unattributed = 0.0
    for s, e, cwd in ffmpeg_calls(env.ffmpeg_log):
        owner = next((jid for jid in job_s if f"job-{jid}-" in cwd), None)
        if owner is not None:
            ff_s[owner] += e - s
            continue
        holders = [r[0] for r in rows if float(r[1]) <= s and e <= float(r[2])]
        for jid in holders:
            ff_s[jid] += (e - s) / len(holders)
        if not holders:
            unattributed += e - s
    total_job, total_ff = sum(job_s.values()), sum(ff_s.values())
    return {
        "rate_h": len(rows) / (last - first) * 3600,
        "span_s": last - first,
        "n": len(rows),
        "job_mean_s": total_job / len(rows),
        "ff_mean_s": total_ff / len(rows),
        "upload_mean_s": upload_seconds(logs) / len(rows),
        "outside": 1 - total_ff / total_job,
        "render_mean_s": sum(r[3] or 0 for r in rows) / len(rows),
        "worst_outside": max(1 - ff_s[j] / job_s[j] for j in job_s),
        "unattributed_s": unattributed,
    }


def shared_cache_runs(env: Env, conn: psycopg.Connection, jobs: int, seconds: float) -> None:
    """The same ``jobs`` (distinct texts, OpenAI fake) twice on one worker: a cold run, then one
    with an empty local cache and the shared level (in the local S3 server) warm."""
    from tests.fakes import FakeOpenAI

    payloads = [spec(seconds, provider="openai", text=f"{TEXT} This is job {i}.") for i in range(jobs)]
    with FakeOpenAI() as openai:
        for label, cache in (
            ("cold caches", "cache-cold"),
            ("empty local cache, warm shared level", "cache-new"),
        ):
            before = len(openai.requests)
            worker_env = env.worker_env(1, cache=cache, **openai.env())
            r = run(env, conn, 1, jobs, seconds, 1, payloads=payloads, worker_env=worker_env)
            print(
                f"  {label}: {len(openai.requests) - before} provider calls for {r['n']} jobs; "
                f"{r['rate_h']:7.0f} jobs/hour ({r['span_s']:.1f} s), per job {r['job_mean_s']:.2f} s wall"
            )
    shared = sum(1 for k in env.s3.client().list_objects_v2(Bucket=env.s3.buckets[0]).get("Contents", [])
                 if k["Key"].startswith("provider-cache/"))  # fmt: skip
    print(f"  shared level: {shared} objects under provider-cache/")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=12, help="jobs per run")
    ap.add_argument("--seconds", type=float, default=60, help="track length")
    ap.add_argument("--slots", type=int, default=1, help="MAX_CONCURRENT_JOBS of each worker process")
    ap.add_argument(
        "--shared-cache",
        action="store_true",
        help="run the same jobs twice (OpenAI fake): cold, then an empty local cache with the shared level warm",
    )
    args = ap.parse_args()
    env = Env()
    try:
        with psycopg.connect(env.url, autocommit=True) as conn:
            print(
                f"pipeline bench: {args.jobs} jobs per run, {args.seconds:g} s tracks "
                f"({'OpenAI-fake' if args.shared_cache else 'espeak'} voice, binaural "
                f"ramp, 528 Hz, pink noise; wav 24-bit + mp3 128k), {args.slots} slot(s) per worker, "
                f"{os.cpu_count()} cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
            )
            if args.shared_cache:
                shared_cache_runs(env, conn, args.jobs, args.seconds)
            for k in () if args.shared_cache else (1, 2):
                r = run(env, conn, k, args.jobs, args.seconds, args.slots)
                print(
                    f"  worker processes={k}: {r['rate_h']:7.0f} jobs/hour ({r['n']} jobs in {r['span_s']:.1f} s); "
                    f"per job {r['job_mean_s']:.2f} s wall, {r['ff_mean_s']:.2f} s in ffmpeg "
                    f"(render_seconds {r['render_mean_s']:.2f}); outside ffmpeg {r['outside']:.1%} "
                    f"(worst job {r['worst_outside']:.1%}; upload {r['upload_mean_s']:.2f} s per job)"
                    + (
                        f"; {r['unattributed_s']:.2f} s of ffmpeg outside any job"
                        if r["unattributed_s"]
                        else ""
                    )
                )
            print(f"  load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        env.close()


if __name__ == "__main__":
    main()
