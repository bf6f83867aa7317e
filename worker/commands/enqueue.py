"""``python -m worker enqueue SPEC.json``: validate a render spec and put it in the queue; prints the job id."""

from __future__ import annotations

import argparse
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from psycopg.types.json import Jsonb

from worker.commands._db import CommandError, connect, fail
from worker.errors import PayloadError
from worker.queue.db.queries import q
from worker.queue.payload import decode_payload

PROG = "enqueue"


def _run_at(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 time: {text!r} (e.g. 2026-01-31T09:00:00Z)"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone: add Z or +HH:MM")
    return value


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m worker enqueue", description=__doc__)
    ap.add_argument("spec", help="render spec JSON file, or - for stdin")
    ap.add_argument("--priority", type=int, default=0, help="higher runs first (default 0)")
    ap.add_argument(
        "--run-at",
        type=_run_at,
        default=None,
        metavar="ISO8601",
        help="not before this time, e.g. 2026-01-31T09:00:00Z (default now)",
    )
    ap.add_argument(
        "--idempotency-key",
        default=None,
        help="while a job with this key is pending or processing, its id is returned instead",
    )
    ap.add_argument(
        "--max-attempts", type=int, default=3, help="attempts before the job fails (1-100, default 3)"
    )
    ap.add_argument("--track-id", type=uuid.UUID, default=None, help="track uuid stored with the job")
    ap.add_argument("--user-id", type=uuid.UUID, default=None, help="user uuid stored with the job")
    ap.add_argument("--no-validate", action="store_true", help="skip the render spec check")
    return ap


def _read(path: str) -> dict[str, Any]:
    """The payload object in the file (or stdin); PayloadError when a worker could not decode it."""
    return decode_payload(sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes())


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        payload = _read(args.spec)
    except OSError as exc:
        return fail(PROG, f"cannot read {args.spec}: {exc.strerror or exc}")
    except (PayloadError, UnicodeDecodeError) as exc:
        return fail(PROG, f"{args.spec}: {exc} (nothing enqueued)")
    if not args.no_validate:
        from worker.render import parse_spec

        try:
            parse_spec(payload)
        except PayloadError as exc:
            return fail(PROG, f"{args.spec}: {exc} (nothing enqueued)")
    if not 1 <= args.max_attempts <= 100:
        return fail(PROG, f"--max-attempts must be between 1 and 100 (got {args.max_attempts})")
    params = {
        "payload": Jsonb(payload),
        "priority": args.priority,
        "run_at": args.run_at,
        "idempotency_key": args.idempotency_key,
        "max_attempts": args.max_attempts,
        "track_id": args.track_id,
        "user_id": args.user_id,
    }
    try:
        with connect(PROG) as conn:
            row = conn.execute(q("enqueue_job"), params).fetchone()
    except CommandError as exc:
        return fail(PROG, str(exc))
    assert row is not None
    print(row[0])
    return 0
