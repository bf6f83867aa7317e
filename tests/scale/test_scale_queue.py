"""Bad input at scale through the real queue: thousands of generated payloads, valid and invalid,
enqueued in bulk with ``audio_queue.enqueue_job``, processed by two real ``python -m worker run``
processes running the real pipeline (espeak, ffmpeg, a local S3 server).

Every invalid job must fail on its first attempt with "invalid payload: <the field we broke>: ...",
every valid one must complete with its master and preview in the buckets, no worker may exit, and
no error may hold a secret.

Counts (fixed: generation is derandomized): 250 x 10 = 2500 invalid specs, 6 non-object payloads
put in with a plain INSERT (enqueue_job refuses them, tested separately), 72 valid tone/noise specs
and 8 with an espeak voice (1-1.5 s tracks, each rendered by ffmpeg).
"""

from __future__ import annotations

import json
import random
import time

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.e2e.conftest import pipeline_env
from tests.scale.payloads import Bad, collect, invalid_batch, names_field, valid_spec
from tests.support.s3 import SECRET_ACCESS_KEY

INVALID_BATCHES, BATCH = 250, 10
VALID, VALID_SPEECH = 72, 8
NON_OBJECTS = [[], [{"spec_version": 1}], "spec", 5, 1.5, True]


def test_enqueue_job_refuses_a_payload_that_is_not_an_object(conn):
    for payload in [*NON_OBJECTS, None]:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="p_payload must be a JSON object"):
            conn.execute("select audio_queue.enqueue_job(%s::jsonb)", (json.dumps(payload),))
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="p_payload must be a JSON object"):
        conn.execute("select audio_queue.enqueue_job(null)")
    assert conn.execute("select count(*) from audio_queue.jobs").fetchone()[0] == 0


@pytest.mark.timeout(240)
def test_thousands_of_generated_payloads_through_the_real_queue(conn, fleet, s3, tmp_path):
    bads: list[Bad] = [b for batch in collect(invalid_batch(BATCH), INVALID_BATCHES) for b in batch]
    bads += [Bad(p, "payload", "non_object") for p in NON_OBJECTS]
    goods = collect(valid_spec(), VALID) + collect(valid_spec(speech=True), VALID_SPEECH)
    cases: list[tuple[str, object]] = [("bad", b) for b in bads] + [("good", g) for g in goods]
    random.Random(7).shuffle(cases)

    # enqueue everything in one statement (non-objects with a plain INSERT, which enqueue_job refuses)
    payloads = [(c.payload if kind == "bad" else c) for kind, c in cases]
    ids = _enqueue(conn, payloads)
    assert len(ids) == len(cases) == len(set(ids))

    env = pipeline_env(s3, tmp_path, MAX_CONCURRENT_JOBS=3, LOG_LEVEL="info")
    workers = [fleet.start(**env) for _ in range(2)]
    deadline = time.monotonic() + 180
    while conn.execute(
        "select count(*) from audio_queue.jobs where status in ('pending', 'queued', 'processing')"
    ).fetchone()[0]:
        dead = [w for w in workers if w.proc.poll() is not None]
        assert not dead, f"a worker exited ({dead[0].proc.returncode}):\n{dead[0].log[-3000:]}"
        assert time.monotonic() < deadline, "jobs still waiting after 180 s"
        time.sleep(0.25)
    assert all(w.proc.poll() is None for w in workers), "a worker exited"

    rows = {
        r["id"]: r
        for r in conn.cursor(row_factory=dict_row)
        .execute("select id, status, attempts, error_message, result from audio_queue.jobs")
        .fetchall()
    }
    problems: list[str] = []
    stored: set[str] = set()
    for jid, (kind, case) in zip(ids, cases):
        row = rows[jid]
        if kind == "bad":
            msg = row["error_message"] or ""
            if row["status"] != "failed" or row["attempts"] != 1 or not names_field(msg, case):
                problems.append(
                    f"{case.kind} (broke {case.field}): {row['status']}, attempts {row['attempts']}, "
                    f"{msg[:200]!r}; payload {json.dumps(case.payload)[:300]}"
                )
        else:
            if row["status"] != "completed" or row["attempts"] != 1:
                problems.append(
                    f"valid spec {row['status']}, attempts {row['attempts']}: "
                    f"{row['error_message']!r}; spec {json.dumps(case)}"
                )
                continue
            r = row["result"]
            stored |= {
                f"{r['master']['bucket']}/{r['master']['key']}",
                f"{r['preview']['bucket']}/{r['preview']['key']}",
            }
    assert not problems, f"{len(problems)} of {len(cases)} jobs went wrong:\n" + "\n".join(problems[:25])

    # both objects of every completed job are stored, and nothing else (failed jobs left nothing)
    in_buckets = {f"{b}/{k}" for b in dict.fromkeys(s3.buckets) for k in _all_keys(s3, b)}
    assert in_buckets == stored and len(stored) == 2 * len(goods)

    # no secret in any error or log line; no handler crash (an "unexpected error" would be retried)
    errors = "\n".join(r["error_message"] or "" for r in rows.values())
    logs = "\n".join(w.log for w in workers)
    assert SECRET_ACCESS_KEY not in errors and SECRET_ACCESS_KEY not in logs
    assert "unexpected error" not in errors and "handler raised" not in logs


def _enqueue(conn: psycopg.Connection, payloads: list[object]) -> list[object]:
    """One round trip: enqueue_job for objects, a plain INSERT for anything else; ids in order."""
    objects = [(i, p) for i, p in enumerate(payloads) if isinstance(p, dict)]
    others = [(i, p) for i, p in enumerate(payloads) if not isinstance(p, dict)]
    ids: dict[int, object] = {}
    for i, jid in conn.execute(
        "select (t.e ->> 0)::int, audio_queue.enqueue_job(t.e -> 1) "
        "from jsonb_array_elements(%s::jsonb) with ordinality as t(e, n) order by n",
        (json.dumps(objects),),
    ).fetchall():
        ids[i] = jid
    for i, p in others:
        ids[i] = conn.execute(
            "insert into audio_queue.jobs (payload) values (%s::jsonb) returning id", (json.dumps(p),)
        ).fetchone()[0]
    return [ids[i] for i in range(len(payloads))]


def _all_keys(s3, bucket: str) -> list[str]:
    keys: list[str] = []
    for page in s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys
