"""Jobs as the worker moves them, for the app-side tests: enqueue, claim, complete (admin SQL)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg

from worker.storage.client import StoredObject

CLIENT_FIELDS = {
    "id",
    "status",
    "progress",
    "stage",
    "track_id",
    "cancel_requested",
    "created_at",
    "started_at",
    "completed_at",
    "result",
    "error",
}
SECRET = "placeholder-provider-key-not-real"


def enqueue(conn: psycopg.Connection, user: uuid.UUID | None, **payload: Any) -> uuid.UUID:
    body = {"spec_version": 1, "secret_prompt": SECRET, **payload}
    row = conn.execute(
        "select audio_queue.enqueue_job(%s::jsonb, p_user_id => %s)", (json.dumps(body), user)
    ).fetchone()
    assert row
    return row[0]


def claim(conn: psycopg.Connection) -> tuple[uuid.UUID, uuid.UUID]:
    row = conn.execute(
        "select id, lease_id from audio_queue.get_next_pending_job('dyno-7.secret-host', 1, 60)"
    ).fetchone()
    assert row
    return row[0], row[1]


DELIVERABLES = ("master", "preview", "full", "peaks")  # the files build_result lists


def stored(job_id: uuid.UUID, name: str, bucket: str, ext: str, content_type: str) -> dict[str, Any]:
    """One uploaded file as the worker lists it in a result (StoredObject)."""
    key = f"generated/{job_id}_1{'' if name in ('master', 'preview') else '_' + name}.{ext}"
    return StoredObject(
        bucket=bucket, key=key, size=10, sha256="ab" * 32, content_type=content_type,
        url=f"https://x.test/{key}",
    ).model_dump(mode="json")  # fmt: skip


def result_for(job_id: uuid.UUID, bucket: str = "audio-files") -> dict[str, Any]:
    """A result shaped like worker.job.pipeline.build_result's, with every deliverable, and a
    {bucket, key} pair in the render details that is not a delivered file."""
    master = stored(job_id, "master", bucket, "flac", "audio/flac")
    preview = stored(job_id, "preview", bucket, "mp3", "audio/mpeg")
    return {
        "wav_url": master["url"],
        "master_url": master["url"],
        "mp3_url": preview["url"],
        "result_url": preview["url"],
        "master": master,
        "preview": preview,
        "full": stored(job_id, "full", bucket, "mp3", "audio/mpeg"),
        "peaks": stored(job_id, "peaks", bucket, "json", "application/json"),
        "chapters": [{"title": "Intro", "start_s": 0.0, "end_s": 30.0, "internal": "x"}],
        "duration_s": 60.0,
        "sample_rate": 44100,
        "loudness": {"integrated_lufs": -16.0, "true_peak_dbtp": -1.5},
        "render": {
            "ffmpeg": "/usr/bin/ffmpeg",
            "passes": 2,
            "cover": {"bucket": bucket, "key": f"covers/{job_id}.png"},
        },
    }


def complete(
    conn: psycopg.Connection, result: dict[str, Any] | None = None, error: str | None = None
) -> uuid.UUID:
    job_id, lease = claim(conn)
    conn.execute(
        "select audio_queue.complete_job(%s, %s::jsonb, %s, %s)",
        (job_id, json.dumps(result or result_for(job_id)) if error is None else None, error, lease),
    )
    return job_id


A, B = uuid.UUID(int=0xA), uuid.UUID(int=0xB)
