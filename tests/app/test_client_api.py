"""The client API as Supabase's servers call it (role authenticated, JWT claims in the request):
a user sees, cancels and pages through only their own jobs, and sees nothing a worker knows."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.app.jobs import CLIENT_FIELDS, DELIVERABLES, SECRET, A, B, claim, complete, enqueue, result_for
from tests.app.supabase import request
from tests.support.s3 import S3Server
from worker.job.inputs import fetch_input
from worker.providers import ProviderSettings, registry
from worker.queue.outcomes import failure_of
from worker.render.parse import parse_spec
from worker.storage import Storage


def test_a_user_sees_only_their_own_jobs_and_never_what_the_worker_knows(supa, supa_url):
    a_jobs = [enqueue(supa, A, n=i) for i in range(3)]
    b_job = enqueue(supa, B)
    enqueue(supa, None)

    with request(supa_url, "authenticated", A) as r:
        (mine,) = r.execute("select * from audio_api.get_job(%s)", (a_jobs[0],)).fetchall()
        listed = r.execute("select * from audio_api.list_jobs()").fetchall()
        assert r.execute("select * from audio_api.get_job(%s)", (b_job,)).fetchall() == []
        assert r.execute("select * from audio_api.get_job(null)").fetchall() == []
    assert set(mine) == CLIENT_FIELDS and mine["id"] == a_jobs[0] and mine["status"] == "pending"
    assert [j["id"] for j in listed] == a_jobs[::-1]
    assert SECRET not in json.dumps(listed, default=str)

    with request(supa_url, "authenticated", B) as r:
        assert [j["id"] for j in r.execute("select * from audio_api.list_jobs(100)").fetchall()] == [b_job]
        for jid in a_jobs:
            assert r.execute("select * from audio_api.get_job(%s)", (jid,)).fetchall() == []
    with request(supa_url, "authenticated", None) as r:  # a token without a subject
        assert r.execute("select * from audio_api.list_jobs()").fetchall() == []
    for fn in ("audio_api.list_jobs()", f"audio_api.get_job('{a_jobs[0]}')"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), request(supa_url, "anon") as r:
            r.execute(f"select * from {fn}")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), request(supa_url, "authenticated", A) as r:
        r.execute("select payload from audio_queue.jobs")


def test_list_jobs_pages_by_keyset_newest_first(supa, supa_url):
    jobs = [enqueue(supa, A, n=i) for i in range(5)]
    supa.execute("update audio_queue.jobs set created_at = '2026-01-01'")  # ties: ordered by id
    expected = sorted(jobs, reverse=True)
    seen: list[uuid.UUID] = []
    with request(supa_url, "authenticated", A) as r:
        page = r.execute("select * from audio_api.list_jobs(2)").fetchall()
        while page:
            seen += [j["id"] for j in page]
            last = page[-1]
            page = r.execute(
                "select * from audio_api.list_jobs(2, %s, %s)", (last["created_at"], last["id"])
            ).fetchall()
        assert r.execute("select count(*) from audio_api.list_jobs(1000)").fetchone()["count"] == 5
        only_failed = r.execute("select * from audio_api.list_jobs(p_statuses => '{failed}')").fetchall()
    assert seen == expected and only_failed == []


def test_results_and_errors_are_the_client_safe_part(supa, supa_url):
    done = enqueue(supa, A)
    complete(supa)
    enqueue(supa, A)
    provider = complete(
        supa, error=f'elevenlabs 401: {{"detail": "invalid key {SECRET}"}} on dyno-7.secret-host'
    )
    enqueue(supa, A)
    bad = complete(supa, error="invalid payload: layers[0].beat_hz: must be between 0.5 and 40")
    cancelled = enqueue(supa, A)
    supa.execute("select audio_queue.cancel_job(%s)", (cancelled,))

    with request(supa_url, "authenticated", A) as r:
        by_id = {j["id"]: j for j in r.execute("select * from audio_api.list_jobs()").fetchall()}
    result = by_id[done]["result"]
    stored = result_for(done)
    assert result["preview_url"] == stored["mp3_url"] and result["master_url"] == stored["master_url"]
    # Every delivered file, the full-length MP3 and the peaks file too: where it is and its URL.
    assert {name: result[name] for name in DELIVERABLES} == {
        name: {k: stored[name][k] for k in ("bucket", "key", "size", "content_type", "url")}
        for name in DELIVERABLES
    }
    assert result["duration_s"] == 60.0 and result["loudness"]["integrated_lufs"] == -16.0
    assert result["chapters"] == [{"title": "Intro", "start_s": 0.0, "end_s": 30.0}]
    assert (
        "render" not in result and "sha256" not in json.dumps(result) and "covers/" not in json.dumps(result)
    )
    assert by_id[done]["error"] is None and by_id[done]["progress"] == 100

    assert by_id[provider]["error"]["code"] == "render_failed"
    assert by_id[bad]["error"] == {
        "code": "invalid_request",
        "message": "Invalid request: layers[0].beat_hz: must be between 0.5 and 40",
    }
    assert by_id[cancelled]["error"]["code"] == "cancelled"
    everything = json.dumps(list(by_id.values()), default=str)
    assert SECRET not in everything and "secret-host" not in everything and "elevenlabs" not in everything


def test_a_user_cancels_only_their_own_jobs(supa, supa_url):
    waiting = enqueue(supa, A)
    running = enqueue(supa, A)
    supa.execute("update audio_queue.jobs set run_at = now() + interval '1 hour' where id = %s", (waiting,))
    assert claim(supa)[0] == running
    others = enqueue(supa, B)

    with request(supa_url, "authenticated", B) as r:
        assert r.execute("select * from audio_api.cancel_job(%s)", (waiting,)).fetchall() == []
        assert r.execute("select * from audio_api.cancel_job(%s)", (running,)).fetchall() == []
    with request(supa_url, "authenticated", A) as r:
        (w,) = r.execute("select * from audio_api.cancel_job(%s)", (waiting,)).fetchall()
        (p,) = r.execute("select * from audio_api.cancel_job(%s)", (running,)).fetchall()
        assert r.execute("select * from audio_api.cancel_job(%s)", (others,)).fetchall() == []
    assert w["status"] == "cancelled" and w["error"]["code"] == "cancelled"
    assert p["status"] == "processing" and p["cancel_requested"] is True
    states = dict(supa.execute("select id, status from audio_queue.jobs").fetchall())
    assert states[others] == "pending"
    with pytest.raises(psycopg.errors.InsufficientPrivilege), request(supa_url, "anon") as r:
        r.execute("select * from audio_api.cancel_job(%s)", (others,))


def worker_message(work: Coroutine[Any, Any, Any]) -> str:
    """The error_message the worker's claim loop writes when ``work`` fails on the payload."""

    async def run() -> asyncio.Task[Any]:
        task = asyncio.create_task(work)
        await asyncio.wait([task])
        return task

    failure = failure_of(asyncio.run(run()))
    assert failure is not None and failure.kind == "payload rejected", failure
    return failure.message


def rejected(call: Any) -> str:
    """The error_message for a payload refused while the spec is read (synchronously)."""

    async def work() -> None:
        call()

    return worker_message(work())


SPEC = {"spec_version": 1, "duration_s": 10}


@pytest.mark.timeout(60)
def test_invalid_requests_name_field_and_rule_without_worker_internals(supa, supa_url, tmp_path: Path):
    """Real worker messages for a bad request carry operator hints (setting names, "set X=... to
    allow", tool hints), storage bucket and key names and the list of providers the worker
    knows: the operator keeps all of it in error_message, the user gets the field and the rule."""
    spec = parse_spec(
        {
            **SPEC,
            "layers": [
                {
                    "type": "speech",
                    "text": "Breathe in slowly.",
                    "provider": "espeak",
                    "voice": "nosuchvoice",
                },
                {"type": "music", "url": "http://127.0.0.1:9/loop.mp3"},
                {"type": "music", "object": "loops/missing-bed.wav"},
            ],
        }
    )
    speech, url, obj = spec.layers
    short = ProviderSettings(speech_max_chars=5)
    with S3Server() as s3:
        storage = Storage(s3.settings())
        bucket = s3.bucket
        messages = {
            "layers[0].text: must be at most 5 characters": worker_message(
                fetch_input(speech, tmp_path, providers=short, storage=None)
            ),
            "layers[0].voice: espeak-ng has no voice 'nosuchvoice'": worker_message(
                fetch_input(speech, tmp_path, providers=ProviderSettings(), storage=None)
            ),
            "layers[1].url: refers to a private or local address (127.0.0.1)": worker_message(
                fetch_input(url, tmp_path, providers=ProviderSettings(), storage=None)
            ),
            "layers[2].object: not found in storage": worker_message(
                fetch_input(obj, tmp_path, providers=ProviderSettings(), storage=storage)
            ),
            "layers[0].provider: unknown speech provider": rejected(
                lambda: parse_spec({**SPEC, "layers": [{"type": "speech", "text": "Hi", "provider": "nope"}]})
            ),
            "provider: unknown music provider": rejected(
                lambda: registry.resolve("music", "nope", ProviderSettings())
            ),
        }
    providers = [", ".join(registry.names(kind)) for kind in ("speech", "music")]
    internals = ["SPEECH_MAX_CHARS", "INPUT_URL_ALLOW_PRIVATE", "set ", "espeak-ng --voices", bucket,
                 "missing-bed", *providers]  # fmt: skip
    # The worker's own words hold every one of these (so the test shows each is taken out).
    assert all(any(word in m for m in messages.values()) for word in internals), messages

    jobs = {}
    for expected, message in messages.items():
        enqueue(supa, A)
        jobs[complete(supa, error=message)] = (expected, message)
    with request(supa_url, "authenticated", A) as r:
        seen = {j["id"]: j["error"] for j in r.execute("select * from audio_api.list_jobs()").fetchall()}
    operator = dict(supa.execute("select id, error_message from audio_queue.jobs").fetchall())

    assert {seen[job_id]["message"]: operator[job_id] for job_id in jobs} == {
        f"Invalid request: {expected}": message for expected, message in jobs.values()
    }  # the user reads field and rule; the operator still reads the whole story
    assert {seen[job_id]["code"] for job_id in jobs} == {"invalid_request"}
    shown = json.dumps(list(seen.values()))
    assert [word for word in internals if word in shown] == []
