"""``python -m worker status JOB_ID``: a job's status, progress, stage, attempts, URLs and error.

With ``--wait`` it follows the job, printing each stage/progress change, until it is completed
(exit 0), failed or cancelled (exit 1).
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any

from psycopg.rows import dict_row

from worker.commands._db import CommandError, connect, fail
from worker.queue.db.queries import q

PROG = "status"
FINAL = {"completed", "failed", "cancelled"}
FIELDS = (
    "id",
    "status",
    "progress",
    "stage",
    "attempts",
    "max_attempts",
    "priority",
    "run_at",
    "created_at",
    "started_at",
    "completed_at",
    "wav_url",
    "mp3_url",
    "result_url",
    "error_message",
    "last_error",
    "result",
    "track_id",
    "user_id",
    "idempotency_key",
)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m worker status",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("job_id", help="the id `python -m worker enqueue` printed")
    ap.add_argument("--wait", action="store_true", help="follow progress until the job is final")
    ap.add_argument("--json", action="store_true", help="print the job as one JSON object")
    ap.add_argument(
        "--interval", type=float, default=0.5, help="seconds between polls with --wait (default 0.5)"
    )
    ap.add_argument(
        "--timeout", type=float, default=None, help="give up waiting after this many seconds (exit 1)"
    )
    return ap


def job_view(row: dict[str, Any]) -> dict[str, Any]:
    """The operator-facing fields of a jobs row, JSON-able."""
    view: dict[str, Any] = json.loads(json.dumps({k: row.get(k) for k in FIELDS}, default=str))
    return view


def describe(job: dict[str, Any]) -> str:
    """Human lines: status, progress, stage, attempts, URLs, error."""
    lines = [
        f"job {job['id']}: {job['status']}",
        f"  progress  {job['progress']}%" + (f" ({job['stage']})" if job.get("stage") else ""),
        f"  attempts  {job['attempts']} of {job['max_attempts']}",
        f"  created   {job['created_at']}",
    ]
    for key in ("started_at", "completed_at"):
        if job.get(key):
            lines.append(f"  {key.removesuffix('_at'):<9} {job[key]}")
    if job["status"] in ("pending", "queued"):
        lines.append(f"  run at    {job['run_at']}")
    for label, column in (("master", "wav_url"), ("preview", "mp3_url")):  # wav_url: the master, WAV or FLAC
        if job.get(column):
            lines.append(f"  {label:<9} {job[column]}")
    if job.get("error_message"):
        lines.append(f"  error     {job['error_message']}")
    elif job.get("last_error") and job["status"] != "completed":
        lines.append(f"  last error (will retry) {job['last_error']}")
    return "\n".join(lines)


def fetch(conn: Any, job_id: uuid.UUID) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(q("get_job"), {"job_id": job_id}).fetchone()
    return job_view(row) if row else None


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        job_id = uuid.UUID(args.job_id)
    except ValueError:
        return fail(PROG, f"{args.job_id!r} is not a job id (a uuid)")
    try:
        with connect(PROG) as conn:
            job = fetch(conn, job_id)
            if job is None:
                return fail(PROG, f"no job {job_id}")
            if args.wait:
                job = _follow(conn, job, args)
                if job is None:
                    return fail(PROG, f"job {job_id} is not final after {args.timeout:g} s")
    except CommandError as exc:
        return fail(PROG, str(exc))
    print(json.dumps(job, indent=2) if args.json else describe(job))
    if args.wait:
        return 0 if job["status"] == "completed" else 1
    return 0


def _follow(conn: Any, job: dict[str, Any], args: argparse.Namespace) -> dict[str, Any] | None:
    """Poll until the job is final, printing changes (unless --json); None on --timeout."""
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    seen: tuple[Any, ...] = ()
    while True:
        now = (job["status"], job["stage"], job["progress"])
        if now != seen and not args.json:
            stage = f" {job['stage']}" if job.get("stage") else ""
            print(f"{job['status']}{stage} {job['progress']}%", flush=True)
            seen = now
        if job["status"] in FINAL:
            return job
        if deadline is not None and time.monotonic() > deadline:
            return None
        time.sleep(max(0.05, args.interval))
        job = fetch(conn, uuid.UUID(job["id"])) or job
