"""Worker memory benchmark: peak memory of a real ``python -m worker run`` rendering a long track vs
a short one, through the whole pipeline (queue, espeak, ffmpeg, upload to a local S3 server).

    uv run python bench/memory.py [--minutes 5 60]

For each length a fresh worker process (1 slot) renders one job (the spec of bench/pipeline.py:
espeak voice, binaural ramp, 528 Hz, pink noise; master wav 16-bit + mp3 128k, full length), and
the bench prints:
- the worker's own peak RSS: ``VmHWM`` from /proc/<pid>/status, read just before it is stopped;
- the peak of its whole process tree (worker + ffmpeg/espeak children), summed RSS sampled every
  20 ms (bench/render.py's TreeSampler);
- the job's wall time.
The S3 server runs in this bench process, not in the worker, so upload buffers on the server side
are not counted. Target (issue): 60-minute peak equal to the 5-minute one within 10%. Not a test.
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
import time

import psycopg

from bench.pipeline import Env, spec, stop, wait_done, wait_ready
from bench.render import TreeSampler


def hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def measure(env: Env, conn: psycopg.Connection, minutes: float) -> dict:
    conn.execute("truncate audio_queue.jobs cascade")  # and the webhook outbox
    proc = env.start_worker(env.worker_env(1, JOB_TIMEOUT_MS="7200000"), f"worker-mem-{minutes:g}.log")
    try:
        wait_ready(conn)
        time.sleep(1.0)
        idle = hwm_kb(proc.pid)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        conn.execute(
            "select audio_queue.enqueue_job(%s::jsonb)", (json.dumps(spec(minutes * 60, bit_depth=16)),)
        )
        wait_done(conn, 1, [proc], timeout=600 + minutes * 60)
        sampler.stop.set()
        sampler.join()
        peak = hwm_kb(proc.pid)
    finally:
        stop([proc])
    wall, size = conn.execute(
        "select extract(epoch from completed_at - started_at)::float, "
        "(result->'master'->>'size')::bigint from audio_queue.jobs"
    ).fetchone()
    return {
        "idle_kb": idle,
        "worker_kb": peak,
        "tree_kb": sampler.peak_kb,
        "wall_s": wall,
        "master_mb": size / 2**20,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, nargs="+", default=[5, 60], help="track lengths to compare")
    args = ap.parse_args()
    env = Env()
    try:
        with psycopg.connect(env.url, autocommit=True) as conn:
            print(
                f"memory bench: one worker process, one job per length; {os.cpu_count()} cores, "
                f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
            )
            figs = []
            for m in args.minutes:
                f = measure(env, conn, m)
                figs.append(f)
                print(
                    f"  {m:>4g} min: worker VmHWM {f['worker_kb'] / 1024:.0f} MB (idle {f['idle_kb'] / 1024:.0f} MB), "
                    f"process tree peak {f['tree_kb'] / 1024:.0f} MB; job {f['wall_s']:.1f} s, "
                    f"master {f['master_mb']:.0f} MB"
                )
            if len(figs) >= 2:
                a, b = figs[0], figs[-1]
                print(
                    f"  {args.minutes[-1]:g} min / {args.minutes[0]:g} min: worker {b['worker_kb'] / a['worker_kb']:.2f}, "
                    f"process tree {b['tree_kb'] / a['tree_kb']:.2f} (target: within 10%)"
                )
            print(f"  load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        env.close()


if __name__ == "__main__":
    main()
