"""Rolling deploys: the SQL a worker of every landed schema version sends still works on the newest.

Heroku's release phase migrates while the previous release's dynos keep claiming and completing
jobs (README "Upgrading"). ``calls/vNNNN.sql`` is, frozen, the ``queries.sql`` that the worker of
schema version NNNN shipped (recovered from git history: the last one before migration NNNN+1
landed). Every statement of every snapshot runs here against the database migrated to the newest
schema, with the arguments that worker passed, and its effect on the rows is checked.

When ``worker/queue/db/queries.sql`` changes, freeze it: copy it to ``calls/v<newest migration
number>.sql`` (``test_queries_sql_is_frozen_for_this_schema_version`` says the exact command) and
give any new statement a scenario in ``SCENARIOS``. Snapshots of released versions never change.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tests.support.jobs import job, scalar
from worker.queue.db.migrate import required_version
from worker.queue.db.queries import QUERIES_FILE, parse_queries

CALLS = Path(__file__).with_name("calls")
REPO = Path(__file__).resolve().parents[2]


def snapshots() -> dict[int, dict[str, str]]:
    """Schema version -> that release's statements by name."""
    return {
        int(f.stem[1:]): parse_queries(f.read_text()) for f in sorted(CALLS.glob("v[0-9][0-9][0-9][0-9].sql"))
    }


# -- helpers that set the scene with today's functions -----------------------------------------


def enqueue(conn: psycopg.Connection, n: int = 1, **kw: Any) -> list[uuid.UUID]:
    args = "".join(f", p_{k} => %({k})s" for k in kw)
    rows = conn.execute(
        f"select audio_queue.enqueue_job('{{\"spec_version\": 1}}'::jsonb{args}) from generate_series(1, %(n)s)",
        {"n": n, **kw},
    ).fetchall()
    return [r[0] for r in rows]


def claim(conn: psycopg.Connection, n: int = 1) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute("select * from audio_queue.get_next_pending_job('setup', %s, 60)", (n,)).fetchall()


def run(conn: psycopg.Connection, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    return conn.execute(sql, params).fetchall()


def one(conn: psycopg.Connection, sql: str, **params: Any) -> Any:
    rows = run(conn, sql, **params)
    assert len(rows) == 1, rows
    return rows[0][0]


OBJECTS = [{"bucket": "audio-files", "key": "generated/x.wav"}]


# -- one scenario per statement --------------------------------------------------------------------


def s_claim(conn: psycopg.Connection, sql: str) -> None:
    (first,) = enqueue(conn)  # separate transactions: first has the older run_at
    (second,) = enqueue(conn)
    cur = conn.cursor(row_factory=dict_row)
    rows = cur.execute(sql, {"worker_id": "old-worker", "limit": 1, "lease_seconds": 30}).fetchall()
    assert [r["id"] for r in rows] == [first]
    row = job(conn, first)
    assert row["status"] == "processing" and row["attempts"] == 1 and row["locked_by"] == "old-worker"
    assert row["lease_id"] == rows[0]["lease_id"] and row["lease_expires_at"] is not None
    assert job(conn, second)["status"] == "pending"


def s_heartbeat(conn: psycopg.Connection, sql: str) -> None:
    enqueue(conn)
    (j,) = claim(conn)
    assert one(conn, sql, job_id=j["id"], progress=40, stage="mix", lease_id=j["lease_id"]) is True
    row = job(conn, j["id"])
    assert row["progress"] == 40 and row["stage"] == "mix" and row["lease_expires_at"] > j["lease_expires_at"]
    assert one(conn, sql, job_id=j["id"], progress=50, stage=None, lease_id=uuid.uuid4()) is False
    conn.execute("select audio_queue.cancel_job(%s)", (j["id"],))
    assert one(conn, sql, job_id=j["id"], progress=60, stage=None, lease_id=j["lease_id"]) is False


def s_complete_job(conn: psycopg.Connection, sql: str) -> None:
    enqueue(conn, 4, max_attempts=2)
    ok, retry, bad, unfenced = claim(conn, 4)
    result = {"wav_url": "https://s/a.wav", "mp3_url": "https://s/a.mp3"}
    args = {"result": Jsonb(result), "error": None, "retryable": False}
    assert one(conn, sql, job_id=ok["id"], lease_id=ok["lease_id"], **args) is True
    assert one(conn, sql, job_id=ok["id"], lease_id=ok["lease_id"], **args) is True  # repeat after lost reply
    assert one(conn, sql, job_id=ok["id"], lease_id=uuid.uuid4(), **args) is False  # stale holder
    row = job(conn, ok["id"])
    assert row["status"] == "completed" and row["mp3_url"] == row["result_url"] == "https://s/a.mp3"
    err = {"result": None, "error": "provider 503", "retryable": True}
    assert one(conn, sql, job_id=retry["id"], lease_id=retry["lease_id"], **err) is True
    row = job(conn, retry["id"])
    assert (
        row["status"] == "pending"
        and row["last_error"] == "provider 503"
        and row["run_at"] > row["updated_at"]
    )
    err = {"result": None, "error": "bad spec", "retryable": False}
    assert one(conn, sql, job_id=bad["id"], lease_id=bad["lease_id"], **err) is True
    assert job(conn, bad["id"])["status"] == "failed" and job(conn, bad["id"])["error_message"] == "bad spec"
    # without a lease (what the README's 3-argument call passes): counts, and so does its repeat
    free = {"result": Jsonb({"wav_url": "https://s/u.wav"}), "error": None, "retryable": False}
    assert one(conn, sql, job_id=unfenced["id"], lease_id=None, **free) is True
    assert one(conn, sql, job_id=unfenced["id"], lease_id=None, **free) is True
    assert job(conn, unfenced["id"])["wav_url"] == "https://s/u.wav"


def s_release_job(conn: psycopg.Connection, sql: str) -> None:
    enqueue(conn)
    (j,) = claim(conn)
    assert one(conn, sql, job_id=j["id"], lease_id=j["lease_id"]) is True
    row = job(conn, j["id"])
    assert row["status"] == "pending" and row["attempts"] == 0 and row["lease_id"] is None
    assert one(conn, sql, job_id=j["id"], lease_id=j["lease_id"]) is False


def s_enqueue_job(conn: psycopg.Connection, sql: str) -> None:
    track, user = uuid.uuid4(), uuid.uuid4()
    params = {
        "payload": Jsonb({"spec_version": 1, "duration_s": 5}),
        "priority": 3,
        "run_at": None,
        "idempotency_key": "order-1",
        "max_attempts": 4,
        "track_id": track,
        "user_id": user,
    }
    jid = one(conn, sql, **params)
    row = job(conn, jid)
    assert row["status"] == "pending" and row["priority"] == 3 and row["max_attempts"] == 4
    assert row["track_id"] == track and row["user_id"] == user and row["payload"]["duration_s"] == 5
    assert one(conn, sql, **params) == jid  # same idempotency key while live: same job


def s_cancel_job(conn: psycopg.Connection, sql: str) -> None:
    (running,) = enqueue(conn)
    (waiting,) = enqueue(conn)
    (j,) = claim(conn)
    assert j["id"] == running
    assert one(conn, sql, job_id=waiting) is True
    assert job(conn, waiting)["status"] == "cancelled"
    assert one(conn, sql, job_id=running) is True
    assert job(conn, running)["cancel_requested"] is True and job(conn, running)["status"] == "processing"


def s_rescue_if_leader(conn: psycopg.Connection, sql: str) -> None:
    enqueue(conn)
    (j,) = claim(conn)
    conn.execute(
        "update audio_queue.jobs set lease_expires_at = now() - interval '1 second' where id = %s", (j["id"],)
    )
    assert one(conn, sql) == 1
    row = job(conn, j["id"])
    assert row["status"] == "pending" and row["rescue_count"] == 1
    assert one(conn, sql) == 0


def s_schema_version(conn: psycopg.Connection, sql: str) -> None:
    assert one(conn, sql) == required_version()


def s_schema_exists(conn: psycopg.Connection, sql: str) -> None:
    assert one(conn, sql) is True


def s_get_job(conn: psycopg.Connection, sql: str) -> None:
    (jid,) = enqueue(conn)
    cur = conn.cursor(row_factory=dict_row)
    row = cur.execute(sql, {"job_id": jid}).fetchone()
    assert row is not None and row["id"] == jid and row["status"] == "pending"


def s_complete_jobs(conn: psycopg.Connection, sql: str) -> None:
    enqueue(conn, 2)
    a, b = claim(conn, 2)
    params = {
        "job_ids": [a["id"], b["id"]],
        "lease_ids": [a["lease_id"], uuid.uuid4()],
        "results": [Jsonb({"wav_url": "https://s/a.wav"}), Jsonb({})],
    }
    assert one(conn, sql, **params) == [True, False]
    assert job(conn, a["id"])["status"] == "completed" and job(conn, a["id"])["wav_url"] == "https://s/a.wav"
    assert job(conn, b["id"])["status"] == "processing"


def s_complete_job_v2(conn: psycopg.Connection, sql: str) -> None:
    enqueue(conn, 4, max_attempts=2)
    ok, retry, bad, cancelled = claim(conn, 4)
    done = {"result": Jsonb({"wav_url": "https://s/a.wav"}), "error": None, "retryable": False}
    assert one(conn, sql, job_id=ok["id"], lease_id=ok["lease_id"], **done) == "completed"
    assert one(conn, sql, job_id=ok["id"], lease_id=ok["lease_id"], **done) == "completed"  # repeat
    assert one(conn, sql, job_id=ok["id"], lease_id=uuid.uuid4(), **done) == "lost"  # stale holder
    flaky = {"result": None, "error": "provider 503", "retryable": True}
    assert one(conn, sql, job_id=retry["id"], lease_id=retry["lease_id"], **flaky) == "retrying"
    assert job(conn, retry["id"])["status"] == "pending"
    wrong = {"result": None, "error": "bad spec", "retryable": False}
    assert one(conn, sql, job_id=bad["id"], lease_id=bad["lease_id"], **wrong) == "failed"
    conn.execute("select audio_queue.cancel_job(%s)", (cancelled["id"],))
    assert one(conn, sql, job_id=cancelled["id"], lease_id=cancelled["lease_id"], **done) == "cancelled"
    assert job(conn, cancelled["id"])["status"] == "cancelled"
    assert one(conn, sql, job_id=uuid.uuid4(), lease_id=uuid.uuid4(), **done) == "lost"


def s_release_job_v2(conn: psycopg.Connection, sql: str) -> None:
    enqueue(conn, 2)
    a, b = claim(conn, 2)
    assert one(conn, sql, job_id=a["id"], lease_id=a["lease_id"]) == "released"
    row = job(conn, a["id"])
    assert row["status"] == "pending" and row["attempts"] == 0 and row["lease_id"] is None
    assert one(conn, sql, job_id=a["id"], lease_id=a["lease_id"]) == "lost"
    conn.execute("select audio_queue.cancel_job(%s)", (b["id"],))
    assert one(conn, sql, job_id=b["id"], lease_id=b["lease_id"]) == "cancelled"
    assert job(conn, b["id"])["status"] == "cancelled"


def s_complete_jobs_v2(conn: psycopg.Connection, sql: str) -> None:
    enqueue(conn, 3)
    a, b, c = claim(conn, 3)
    conn.execute("select audio_queue.cancel_job(%s)", (c["id"],))
    params = {
        "job_ids": [a["id"], b["id"], c["id"]],
        "lease_ids": [a["lease_id"], uuid.uuid4(), c["lease_id"]],
        "results": [Jsonb({"wav_url": "https://s/a.wav"}), Jsonb({}), Jsonb({})],
    }
    assert one(conn, sql, **params) == ["completed", "lost", "cancelled"]
    assert job(conn, a["id"])["wav_url"] == "https://s/a.wav" and job(conn, b["id"])["status"] == "processing"
    assert one(conn, sql, job_ids=[], lease_ids=[], results=[]) == []


def s_queue_stats(conn: psycopg.Connection, sql: str) -> None:
    enqueue(conn, 3)
    claim(conn)
    cur = conn.cursor(row_factory=dict_row)
    row = cur.execute(sql).fetchone()
    assert row["pending"] == 2 and row["processing"] == 1


def s_queue_depth(conn: psycopg.Connection, sql: str) -> None:
    enqueue(conn, 3)
    claim(conn)
    depth = {r[0]: r[1] for r in run(conn, sql)}
    assert depth == {"pending": 2, "processing": 1}


def s_health_check(conn: psycopg.Connection, sql: str) -> None:
    assert one(conn, sql) == 1


def s_record_objects(conn: psycopg.Connection, sql: str) -> None:
    enqueue(conn)
    (j,) = claim(conn)
    assert one(conn, sql, job_id=j["id"], lease_id=j["lease_id"], objects=Jsonb(OBJECTS)) is True
    assert job(conn, j["id"])["pending_objects"] == OBJECTS
    assert one(conn, sql, job_id=j["id"], lease_id=uuid.uuid4(), objects=Jsonb(OBJECTS)) is False


def s_forget_objects(conn: psycopg.Connection, sql: str) -> None:
    enqueue(conn)
    (j,) = claim(conn)
    conn.execute("select audio_queue.record_objects(%s, %s, %s)", (j["id"], j["lease_id"], Jsonb(OBJECTS)))
    assert one(conn, sql, job_id=j["id"], objects=Jsonb(OBJECTS)) is True
    assert job(conn, j["id"])["pending_objects"] == []


def s_orphaned_objects(conn: psycopg.Connection, sql: str) -> None:
    enqueue(conn)
    (j,) = claim(conn)
    conn.execute("select audio_queue.record_objects(%s, %s, %s)", (j["id"], j["lease_id"], Jsonb(OBJECTS)))
    conn.execute("select audio_queue.complete_job(%s, null, 'gave up', %s)", (j["id"], j["lease_id"]))
    assert run(conn, sql, limit=10) == [(j["id"], "failed", OBJECTS)]


def s_enable_webhook_outbox(conn: psycopg.Connection, sql: str) -> None:
    assert one(conn, sql) is True
    assert one(conn, sql) is False
    enqueue(conn)
    (j,) = claim(conn)
    conn.execute("select audio_queue.complete_job(%s, '{}'::jsonb, null, %s)", (j["id"], j["lease_id"]))
    assert (
        scalar(conn, "select status from audio_queue.webhook_outbox where job_id = %s", j["id"])
        == "completed"
    )


def _notice(conn: psycopg.Connection) -> tuple[uuid.UUID, dict[str, Any]]:
    conn.execute("select audio_queue.enable_webhook_outbox()")
    enqueue(conn)
    (j,) = claim(conn)
    conn.execute("select audio_queue.complete_job(%s, '{}'::jsonb, null, %s)", (j["id"], j["lease_id"]))
    cur = conn.cursor(row_factory=dict_row)
    (n,) = cur.execute("select * from audio_queue.claim_webhook_notices('setup', 10, 60)").fetchall()
    return j["id"], n


def s_claim_webhook_notices(conn: psycopg.Connection, sql: str) -> None:
    conn.execute("select audio_queue.enable_webhook_outbox()")
    enqueue(conn)
    (j,) = claim(conn)
    conn.execute("select audio_queue.complete_job(%s, '{}'::jsonb, null, %s)", (j["id"], j["lease_id"]))
    cur = conn.cursor(row_factory=dict_row)
    rows = cur.execute(sql, {"worker_id": "old-worker", "limit": 10, "lease_seconds": 60}).fetchall()
    assert [(r["job_id"], r["status"], r["attempts"]) for r in rows] == [(j["id"], "completed", 1)]
    assert cur.execute(sql, {"worker_id": "other", "limit": 10, "lease_seconds": 60}).fetchall() == []


def s_webhook_delivered(conn: psycopg.Connection, sql: str) -> None:
    _, n = _notice(conn)
    assert one(conn, sql, id=n["id"], delivery_id=n["delivery_id"]) is True
    assert scalar(conn, "select count(*) from audio_queue.webhook_outbox") == 0


def s_webhook_attempt_failed(conn: psycopg.Connection, sql: str) -> None:
    _, n = _notice(conn)
    params = {"id": n["id"], "delivery_id": n["delivery_id"], "error": "HTTP 500"}
    assert one(conn, sql, retry_in=30.0, give_up=False, **params) is True
    row = conn.execute(
        "select last_error, claimed_by, next_attempt_at > now() from audio_queue.webhook_outbox"
    ).fetchone()
    assert row == ("HTTP 500", None, True)
    assert one(conn, sql, retry_in=1.0, give_up=True, **params) is True
    assert scalar(conn, "select count(*) from audio_queue.webhook_outbox") == 0


def s_provider_call_lock(conn: psycopg.Connection, sql: str) -> None:
    key = "ab" * 32
    assert one(conn, sql, key=key) is True  # autocommit: released with its statement
    with psycopg.connect(conn.info.dsn, password=conn.info.password) as holder:  # a payer's open transaction
        assert one(holder, sql, key=key) is True
        assert one(conn, sql, key=key) is False
        assert one(conn, sql, key="cd" * 32) is True  # another request is not blocked
    assert one(conn, sql, key=key) is True  # the payer's connection ended: free again


def _slot(conn: psycopg.Connection, sql: str, max_concurrent: int | None = 1) -> tuple[Any, Any]:
    params = {
        "provider": "elevenlabs",
        "account": "compat",
        "max_concurrent": max_concurrent,
        "max_requests": 100,
        "window_seconds": 60.0,
        "lease_seconds": 30,
        "job_id": None,
        "worker_id": "old-worker",
    }
    (row,) = run(conn, sql, **params)
    return row[0], row[1]


def s_acquire_provider_slot(conn: psycopg.Connection, sql: str) -> None:
    conn.execute("truncate audio_queue.provider_leases, audio_queue.provider_requests")
    lease, wait = _slot(conn, sql)
    assert lease is not None and wait == 0
    refused, wait = _slot(conn, sql)
    assert refused is None and wait > 0


def _held(conn: psycopg.Connection) -> Any:
    conn.execute("truncate audio_queue.provider_leases, audio_queue.provider_requests")
    return scalar(
        conn, "select lease_id from audio_queue.acquire_provider_slot('openai', 'compat', 1, null, null, 30)"
    )


def s_renew_provider_slot(conn: psycopg.Connection, sql: str) -> None:
    assert one(conn, sql, lease_id=_held(conn), lease_seconds=60) is True
    assert one(conn, sql, lease_id=uuid.uuid4(), lease_seconds=60) is False


def s_release_provider_slot(conn: psycopg.Connection, sql: str) -> None:
    lease = _held(conn)
    assert one(conn, sql, lease_id=lease) is True
    assert scalar(conn, "select count(*) from audio_queue.provider_leases") == 0


def s_user_load(conn: psycopg.Connection, sql: str) -> None:
    user = uuid.uuid4()
    enqueue(conn, 2, user_id=user)
    claim(conn)
    assert run(conn, sql, limit=5) == [(user, 1, 1)]


def s_provider_slot_stats(conn: psycopg.Connection, sql: str) -> None:
    _held(conn)
    rows = {r[0]: r for r in run(conn, sql)}
    assert rows["openai"][2:4] == (1, 1)


Scenario = Callable[[psycopg.Connection, str], None]

# Statement name (as in queries.sql; renamed statements keep their old names too) -> scenario.
SCENARIOS: dict[str, Scenario] = {
    "claim_jobs": s_claim,
    "get_next_pending_job": s_claim,
    "heartbeat": s_heartbeat,
    "update_job_progress": s_heartbeat,
    "complete_job": s_complete_job,
    "release_job": s_release_job,
    "enqueue_job": s_enqueue_job,
    "cancel_job": s_cancel_job,
    "rescue_if_leader": s_rescue_if_leader,
    "schema_version": s_schema_version,
    "schema_exists": s_schema_exists,
    "get_job": s_get_job,
    "complete_jobs": s_complete_jobs,
    "complete_job_v2": s_complete_job_v2,
    "release_job_v2": s_release_job_v2,
    "complete_jobs_v2": s_complete_jobs_v2,
    "queue_stats": s_queue_stats,
    "queue_depth": s_queue_depth,
    "health_check": s_health_check,
    "record_objects": s_record_objects,
    "forget_objects": s_forget_objects,
    "orphaned_objects": s_orphaned_objects,
    "enable_webhook_outbox": s_enable_webhook_outbox,
    "claim_webhook_notices": s_claim_webhook_notices,
    "webhook_delivered": s_webhook_delivered,
    "webhook_attempt_failed": s_webhook_attempt_failed,
    "provider_call_lock": s_provider_call_lock,
    "acquire_provider_slot": s_acquire_provider_slot,
    "renew_provider_slot": s_renew_provider_slot,
    "release_provider_slot": s_release_provider_slot,
    "user_load": s_user_load,
    "provider_slot_stats": s_provider_slot_stats,
}


def frozen_calls() -> list[Any]:
    """One case per distinct (name, SQL text), naming every schema version that sent it."""
    seen: dict[tuple[str, str], list[int]] = {}
    for version, statements in snapshots().items():
        for name, sql in statements.items():
            seen.setdefault((name, sql), []).append(version)
    return [
        pytest.param(name, sql, versions, id=f"{name}-v{min(versions):04d}..v{max(versions):04d}")
        for (name, sql), versions in seen.items()
    ]


@pytest.mark.parametrize(("name", "sql", "versions"), frozen_calls())
def test_a_frozen_call_of_an_earlier_worker_works_on_the_newest_schema(conn, name, sql, versions):
    scenario = SCENARIOS.get(name)
    assert scenario is not None, (
        f"statement {name!r} (sent by workers of schema versions {versions}) has no scenario: "
        "add one to SCENARIOS in tests/compat/test_compat_calls.py"
    )
    scenario(conn, sql)


def test_every_landed_schema_version_has_its_frozen_calls():
    """v0001..v0007 were recovered from git history; a later version that did not change
    queries.sql has no file of its own (its workers sent the calls of the previous file)."""
    assert set(range(1, 8)) <= set(snapshots())
    assert max(snapshots()) <= required_version()


def test_queries_sql_is_frozen_for_this_schema_version():
    """The guard: a change to queries.sql must come with its frozen copy, so the next release's
    test keeps running these exact calls against the schema of the release after it."""
    latest = max(snapshots())
    newest = CALLS / f"v{latest:04d}.sql"
    target = CALLS / f"v{required_version():04d}.sql"
    current = QUERIES_FILE.read_text()
    if newest.read_text() == current:
        return
    refresh = f"cp {QUERIES_FILE.relative_to(REPO)} {target.relative_to(REPO)}"
    pytest.fail(
        f"worker/queue/db/queries.sql differs from its latest frozen copy {newest.name}. Freeze it for "
        f"schema version {required_version()} (`{refresh}`), give new statements a scenario in "
        "tests/compat/test_compat_calls.py, and keep every older statement working: a migration "
        "never breaks the calls of the previous release's workers (README: Upgrading)."
        + (
            f" {target.name} already exists: if it was released, do not change the calls it holds, "
            "only add statements."
            if target.exists()
            else ""
        ),
        pytrace=False,
    )


def test_snapshot_files_are_queries_sql_files():
    for f in CALLS.iterdir():
        assert f.suffix == ".sql" and f.stem[0] == "v" and f.stem[1:].isdigit(), f.name
        assert json.dumps(parse_queries(f.read_text()))  # parses
