"""Live progress over Realtime Broadcast and downloads from private buckets, checked the way
Supabase's Realtime and Storage servers check them: as the user's role, with RLS."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.app.jobs import CLIENT_FIELDS, DELIVERABLES, SECRET, A, B, claim, complete, enqueue, result_for
from tests.app.supabase import request


def messages(conn: psycopg.Connection, topic: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        "select payload from realtime.messages where topic = %s and extension = 'broadcast' and private "
        "and event = 'job' order by inserted_at, id",
        (topic,),
    ).fetchall()
    return [r[0] for r in rows]


def can_join(url: str, topic: str, role: str, sub: uuid.UUID | None) -> bool:
    """Realtime's read check for a private channel: insert a probe message as the server, then
    select it back as the user with realtime.topic set (RLS decides), and roll back."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "insert into realtime.messages (topic, extension) values (%s, 'broadcast') returning id", (topic,)
        ).fetchone()
        assert row
        claims = {"role": role, **({"sub": str(sub)} if sub else {})}
        conn.execute(
            "select set_config('role', %s, true), set_config('realtime.topic', %s, true), "
            "set_config('request.jwt.claims', %s, true)",
            (role, topic, json.dumps(claims)),
        )
        seen = conn.execute(
            "select id from realtime.messages where topic = %s and extension = 'broadcast' and id = %s",
            (topic, row[0]),
        ).fetchall()
        conn.rollback()
        return len(seen) == 1


def test_status_and_throttled_progress_go_to_the_job_and_user_topics(supa):
    job = enqueue(supa, A)
    enqueue(supa, None)  # jobs without a user are not broadcast
    job_topic, user_topic = f"audio-job:{job}", f"audio-jobs:{A}"
    assert [m["status"] for m in messages(supa, user_topic)] == ["pending"]

    _, lease = claim(supa)
    started = time.monotonic()
    for p in range(1, 21):
        supa.execute("select audio_queue.update_job_progress(%s, %s, 'render', %s)", (job, p * 4, lease))
    elapsed = time.monotonic() - started
    progress = messages(supa, job_topic)
    assert progress[0]["status"] == "processing"
    # At most one progress message a second (the claim's status message opened the window).
    assert len(progress) - 1 <= int(elapsed) + 1

    supa.execute(
        "update audio_queue.jobs set broadcast_at = now() - interval '2 seconds' where id = %s", (job,)
    )
    supa.execute("select audio_queue.update_job_progress(%s, 90, 'upload', %s)", (job, lease))
    assert (
        messages(supa, job_topic)[-1]["progress"] == 90 and messages(supa, job_topic)[-1]["stage"] == "upload"
    )

    supa.execute("update audio_queue.jobs set broadcast_at = now() where id = %s", (job,))
    supa.execute(
        "select audio_queue.complete_job(%s, %s::jsonb, null, %s)",
        (job, json.dumps({"mp3_url": "https://x.test/p.mp3", "render": {"host": "secret-host"}}), lease),
    )
    last = messages(supa, job_topic)[-1]  # a status change is never throttled
    assert last["status"] == "completed" and last["result"] == {"preview_url": "https://x.test/p.mp3"}
    assert set(last) == CLIENT_FIELDS
    assert messages(supa, user_topic)[-1] == last
    everything = json.dumps(messages(supa, job_topic) + messages(supa, user_topic))
    assert SECRET not in everything and "secret-host" not in everything and "lease" not in everything


def test_a_user_joins_only_their_own_topics(supa, supa_url):
    a_job, b_job = enqueue(supa, A), enqueue(supa, B)
    assert can_join(supa_url, f"audio-job:{a_job}", "authenticated", A)
    assert can_join(supa_url, f"audio-jobs:{A}", "authenticated", A)
    assert not can_join(supa_url, f"audio-job:{b_job}", "authenticated", A)
    assert not can_join(supa_url, f"audio-jobs:{B}", "authenticated", A)
    assert can_join(supa_url, f"audio-job:{b_job}", "authenticated", B)
    for topic in (f"audio-job:{a_job}", f"audio-jobs:{A}", "audio-job:not-a-uuid", "audio-jobs:", "anything"):
        assert not can_join(supa_url, topic, "anon", A), topic
        assert not can_join(supa_url, topic, "authenticated", None), topic
    assert not can_join(supa_url, "audio-job:not-a-uuid", "authenticated", A)
    # Clients cannot broadcast on the job topics (no insert policy): only the database sends.
    with pytest.raises(psycopg.errors.InsufficientPrivilege), request(supa_url, "authenticated", A) as r:
        r.execute(
            "insert into realtime.messages (topic, extension) values (%s, 'broadcast')", (f"audio-jobs:{A}",)
        )


def test_a_user_downloads_only_the_files_their_own_completed_jobs_delivered(supa, supa_url):
    supa.execute("insert into storage.buckets (id, name) values ('audio-files', 'audio-files')")
    a_done, b_done, a_waiting = enqueue(supa, A), enqueue(supa, B), enqueue(supa, A)
    for _ in range(2):
        complete(supa)
    keys = {jid: [result_for(jid)[n]["key"] for n in DELIVERABLES] for jid in (a_done, b_done, a_waiting)}
    # A {bucket, key} pair elsewhere in a result (here the render details) is not a delivered file.
    decoys = [result_for(jid)["render"]["cover"]["key"] for jid in (a_done, b_done)]
    for name in [*(k for names in keys.values() for k in names), *decoys, "other/file.mp3"]:
        supa.execute("insert into storage.objects (bucket_id, name) values ('audio-files', %s)", (name,))

    def visible(role: str, sub: uuid.UUID | None) -> set[str]:
        with request(supa_url, role, sub) as r:  # Storage's lookup for createSignedUrl, under RLS
            return {row["name"] for row in r.execute("select name from storage.objects").fetchall()}

    assert visible("authenticated", A) == set(keys[a_done]) and len(keys[a_done]) == 4
    assert visible("authenticated", B) == set(keys[b_done])
    assert visible("anon", None) == set() and visible("authenticated", None) == set()
    with request(supa_url, "authenticated", A) as r:
        one = r.execute(
            "select id from storage.objects where bucket_id = 'audio-files' and name = %s", (keys[b_done][0],)
        ).fetchall()
        assert one == []

        def can(bucket: str, name: str) -> bool:
            row = r.execute("select audio_api.can_download(%s, %s) as ok", (bucket, name)).fetchone()
            return bool(row and row["ok"])

        assert all(can("audio-files", k) for k in keys[a_done])
        assert not any(can("audio-files", k) for k in [*keys[b_done], *keys[a_waiting], *decoys])
        assert not can("other-bucket", keys[a_done][0])


def test_on_plain_postgresql_nothing_is_installed_and_nothing_fails(supabase):
    url = supabase.database(supabase=False, migrated=True)  # no auth, realtime or storage schema
    with psycopg.connect(url, autocommit=True) as conn:

        def installed() -> set[str]:
            rows = conn.execute(
                "select tgname from pg_trigger where tgrelid = 'audio_queue.jobs'::regclass "
                "union all select policyname from pg_policies"
            ).fetchall()
            return {r[0] for r in rows} & {
                "jobs_broadcast_change",
                "jobs_broadcast_insert",
                "audio_jobs_watch_own",
                "audio_jobs_download_own",
            }

        assert installed() == set()
        job = enqueue(conn, A)
        _, lease = claim(conn)
        conn.execute("select audio_queue.update_job_progress(%s, 50, 'render', %s)", (job, lease))
        # Realtime and Storage added later: one call installs the rest.
        conn.execute((Path(__file__).parent / "supabase_schemas.sql").read_bytes())
        conn.execute("call audio_queue.install_app_integrations()")
        assert len(installed()) == 4
        conn.execute("select audio_queue.update_job_progress(%s, 60, 'render', %s)", (job, lease))
        assert messages(conn, f"audio-job:{job}")[-1]["progress"] == 60
    supabase.dbs.drop(url)
