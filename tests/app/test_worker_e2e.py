"""One job the whole way as an app's user lives it, on the Supabase-like cluster: the server side
enqueues for user A (as service_role, like the Edge Function), a real ``python -m worker run``
renders it (espeak speech, full-length MP3, peaks, chapters) into S3, and then, as Supabase's
servers ask on A's behalf: the client API shows the job completed with every delivered file,
Realtime holds A's broadcasts (status changes, progress at most once a second) on A's topics only,
Storage lets A read exactly the job's files. User B sees none of it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.app.jobs import CLIENT_FIELDS, DELIVERABLES, A, B
from tests.app.supabase import request
from tests.app.test_realtime_storage import can_join
from tests.e2e.conftest import pipeline_env
from tests.support.s3 import S3Server
from tests.support.workers import WorkerFleet, wait_until

pytestmark = pytest.mark.timeout(120)

SPEC = {
    "spec_version": 1,
    "duration_s": 5,
    "layers": [{"type": "speech", "text": "Breathe in slowly. And breathe out.", "provider": "espeak"}],
    "chapters": "speech",
    "output": {"full": True, "peaks": True, "preview": {"seconds": 3}},
}


@pytest.fixture
def s3() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server


# Every change of a job's status, progress or stage as committed (the rows the broadcast trigger
# sees), logged by a test-only trigger, to replay the throttle against the worker's real traffic.
CHANGE_LOG = """
create schema e2e_log;
create table e2e_log.changes (n bigserial, at timestamptz, status text, progress integer, stage text,
                              status_changed boolean);
create function e2e_log.log() returns trigger language plpgsql as $$
begin
    insert into e2e_log.changes (at, status, progress, stage, status_changed)
    values (now(), new.status, new.progress, new.stage, new.status is distinct from old.status);
    return null;
end $$;
create trigger zz_e2e_log after update on audio_queue.jobs for each row
    when (new.user_id is not null and (new.status is distinct from old.status
          or new.progress is distinct from old.progress or new.stage is distinct from old.stage))
    execute function e2e_log.log();
"""


@pytest.fixture
def changes(supa: psycopg.Connection) -> Iterator[None]:
    supa.execute(CHANGE_LOG)
    try:
        yield
    finally:
        supa.execute("drop schema e2e_log cascade")


def throttled(conn: psycopg.Connection) -> list[tuple[str, int, str | None]]:
    """What the broadcasts must be, from the logged changes: a status change always, any other
    change only a second or more after the last message sent."""
    out: list[tuple[str, int, str | None]] = []
    last = None
    for at, status, progress, stage, status_changed in conn.execute(
        "select at, status, progress, stage, status_changed from e2e_log.changes order by n"
    ):
        if status_changed or last is None or (at - last).total_seconds() >= 1.0:
            out.append((status, progress, stage))
            last = at
    return out


def broadcasts(conn: psycopg.Connection, topic: str) -> list[tuple[Any, dict[str, Any]]]:
    """(inserted_at, payload) of the job messages sent on ``topic``, oldest first."""
    rows = conn.execute(
        "select inserted_at, payload from realtime.messages where topic = %s and event = 'job' "
        "and extension = 'broadcast' and private order by inserted_at, id",
        (topic,),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def delivered(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every uploaded file a raw result lists, whatever its name (anything with a bucket and key)."""
    return {k: v for k, v in result.items() if isinstance(v, dict) and {"bucket", "key"} <= v.keys()}


def test_a_users_job_rendered_by_a_real_worker_is_theirs_to_see_watch_and_download(
    supa: psycopg.Connection, supa_url: str, s3: S3Server, tmp_path: Path, changes: None
) -> None:
    with request(supa_url, "service_role") as server:  # the Edge Function's call, user from the token
        row = server.execute(
            "select audio_queue.enqueue_job(%s::jsonb, p_user_id => %s) as id", (json.dumps(SPEC), A)
        ).fetchone()
        assert row
        job_id: uuid.UUID = row["id"]

    fleet = WorkerFleet(supa_url, tmp_path)
    try:
        worker = fleet.start(**pipeline_env(s3, tmp_path))
        status = wait_until(
            lambda: (
                (
                    s := supa.execute(
                        "select status from audio_queue.jobs where id = %s", (job_id,)
                    ).fetchone()[0]
                )
                in ("completed", "failed")
                and s
            ),
            timeout=60,
            what="the job to finish",
        )
        assert status == "completed", worker.log[-3000:]
    finally:
        fleet.close()
    raw = supa.execute("select result from audio_queue.jobs where id = %s", (job_id,)).fetchone()[0]
    files = delivered(raw)
    assert set(files) == set(DELIVERABLES), files  # a new deliverable must reach the client API too

    # The client API, as PostgREST calls it for A: completed, every file with its URL, no internals.
    with request(supa_url, "authenticated", A) as r:
        (job,) = r.execute("select * from audio_api.get_job(%s)", (job_id,)).fetchall()
        assert [j["id"] for j in r.execute("select * from audio_api.list_jobs()").fetchall()] == [job_id]
    assert set(job) == CLIENT_FIELDS and job["status"] == "completed" and job["progress"] == 100
    result = job["result"]
    for name, stored in files.items():
        assert result[name] == {k: stored[k] for k in ("bucket", "key", "size", "content_type", "url")}
    assert result["preview_url"] == files["preview"]["url"] and result["master_url"] == files["master"]["url"]
    assert [c["title"] for c in result["chapters"]] == ["Breathe in slowly. And breathe out."]
    assert "render" not in result and "sha256" not in json.dumps(result)
    full = httpx.get(result["full"]["url"], timeout=10)  # the URL the app plays
    assert full.status_code == 200 and full.headers["content-type"] == "audio/mpeg"
    assert len(full.content) == result["full"]["size"]

    # Realtime: A's topics carry the job's story; progress at most once a second.
    job_topic, user_topic = f"audio-job:{job_id}", f"audio-jobs:{A}"
    on_job, on_user = broadcasts(supa, job_topic), broadcasts(supa, user_topic)
    statuses = [p["status"] for _, p in on_job]
    assert statuses[0] == "processing" and statuses[-1] == "completed", statuses
    assert [p["status"] for _, p in on_user] == ["pending", *statuses]
    assert on_job[-1][1]["result"] == result and set(on_job[-1][1]) - {"id"} <= CLIENT_FIELDS
    sent = [(p["status"], p["progress"], p["stage"]) for _, p in on_job]
    assert sent == throttled(supa)  # the worker's every change, thinned to one a second
    for (t0, p0), (t1, p1) in zip(on_job, on_job[1:]):
        if p0["status"] == p1["status"]:
            assert (t1 - t0).total_seconds() >= 1.0, (p0, p1)
    text = json.dumps([p for _, p in on_job + on_user])
    assert "secret" not in text and "lease" not in text and "worker" not in text and "sha256" not in text
    assert can_join(supa_url, job_topic, "authenticated", A) and can_join(
        supa_url, user_topic, "authenticated", A
    )
    assert not can_join(supa_url, job_topic, "authenticated", B)
    assert not can_join(supa_url, user_topic, "authenticated", B)

    # Storage: rows for every uploaded object, as Supabase Storage keeps them beside S3.
    uploaded = [(b, k) for b in dict.fromkeys(s3.buckets) for k in s3.keys(b)]
    for bucket in dict.fromkeys(s3.buckets):
        supa.execute("insert into storage.buckets (id, name) values (%s, %s)", (bucket, bucket))
    for bucket, key in uploaded:
        supa.execute("insert into storage.objects (bucket_id, name) values (%s, %s)", (bucket, key))
    assert {(f["bucket"], f["key"]) for f in files.values()} <= set(uploaded)

    def readable(sub: uuid.UUID) -> set[tuple[str, str]]:
        with request(supa_url, "authenticated", sub) as r:  # Storage's lookup for createSignedUrl
            return {
                (o["bucket_id"], o["name"]) for o in r.execute("select * from storage.objects").fetchall()
            }

    assert readable(A) == {(f["bucket"], f["key"]) for f in files.values()}
    assert readable(B) == set()

    # B, whatever they ask: nothing.
    with request(supa_url, "authenticated", B) as r:
        assert r.execute("select * from audio_api.get_job(%s)", (job_id,)).fetchall() == []
        assert r.execute("select * from audio_api.list_jobs()").fetchall() == []
        assert r.execute("select * from audio_api.cancel_job(%s)", (job_id,)).fetchall() == []
