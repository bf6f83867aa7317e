"""``python -m worker stats``: the queue at a glance (audio_queue.queue_stats())."""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

from psycopg.rows import dict_row

from worker.commands._db import CommandError, connect, fail
from worker.queue.db.queries import q

PROG = "stats"
LABELS = {
    "pending": "pending (due now)",
    "scheduled": "scheduled (later)",
    "processing": "processing",
    "stuck": "stuck (lease expired)",
    "completed_24h": "completed, last 24 h",
    "failed_24h": "failed, last 24 h",
    "cancelled_24h": "cancelled, last 24 h",
    "failure_rate_24h": "failure rate, 24 h",
    "avg_duration_24h": "average job time, 24 h",
    "oldest_pending_age": "oldest pending waits",
}


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else round(value.total_seconds(), 3)


def _human(value: Any, key: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, timedelta):
        s = value.total_seconds()
        return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"
    if key == "failure_rate_24h":
        return f"{float(value) * 100:.1f}%"
    return str(value)


def to_json(row: dict[str, Any]) -> dict[str, Any]:
    """Counts as ints, the rate as a float, durations as seconds (keys end in ``_s``)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, timedelta) or (
            value is None and key in ("oldest_pending_age", "avg_duration_24h")
        ):
            out[f"{key}_s"] = _seconds(value)
        elif isinstance(value, Decimal):
            out[key] = float(value)
        else:
            out[key] = value
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m worker stats", description=__doc__)
    ap.add_argument("--json", action="store_true", help="print one JSON object (durations in seconds)")
    args = ap.parse_args(argv)
    try:
        with connect(PROG) as conn, conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(q("queue_stats")).fetchone()
    except CommandError as exc:
        return fail(PROG, str(exc))
    assert row is not None
    if args.json:
        print(json.dumps(to_json(row)))
    else:
        width = max(len(v) for v in LABELS.values())
        for key, label in LABELS.items():
            print(f"{label:<{width}}  {_human(row.get(key), key)}")
    return 0
