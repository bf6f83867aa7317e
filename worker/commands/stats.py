"""``python -m worker stats``: the queue at a glance (audio_queue.queue_stats()), the busiest users
(audio_queue.user_load()) and each provider account's fleet-wide slots (provider_slot_stats())."""

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
    ap.add_argument("--users", type=int, default=5, metavar="N", help="busiest users to show (default 5)")
    args = ap.parse_args(argv)
    try:
        with connect(PROG) as conn, conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(q("queue_stats")).fetchone()
            users = cur.execute(q("user_load"), {"limit": max(args.users, 0)}).fetchall()
            providers = cur.execute(q("provider_slot_stats")).fetchall()
    except CommandError as exc:
        return fail(PROG, str(exc))
    assert row is not None
    if args.json:
        out = to_json(row)
        out["users"] = [{**u, "user_id": None if u["user_id"] is None else str(u["user_id"])} for u in users]
        out["providers"] = providers
        print(json.dumps(out))
        return 0
    width = max(len(v) for v in LABELS.values())
    for key, label in LABELS.items():
        print(f"{label:<{width}}  {_human(row.get(key), key)}")
    if users:
        print("\nbusiest users          running  waiting")
        for u in users:
            who = str(u["user_id"]) if u["user_id"] is not None else "(no user)"
            print(f"  {who:<36}  {u['running']:>7}  {u['waiting']:>7}")
    if providers:
        print("\nprovider slots (fleet-wide)")
        for p in providers:
            print(f"  {p['provider']} [{p['account']}]  {_slots(p)}")
    return 0


def _slots(p: dict[str, Any]) -> str:
    """``2/4 in flight, 37/50 per 60 s`` for one provider account."""
    conc = f"{p['in_use']}/{p['max_concurrent'] if p['max_concurrent'] is not None else '-'} in flight"
    if p["max_requests"] is None:
        return conc
    return f"{conc}, {p['requests_in_window']}/{p['max_requests']} per {p['window_seconds']:g} s"
