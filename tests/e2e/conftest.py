"""Fixtures for the pipeline's end-to-end tests: a moto S3 server, worker processes running
``worker.job.pipeline:render_job`` against the test database, and row helpers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.audio import sample_audio
from tests.fakes.server import FakeServer, Reply
from tests.support.jobs import job  # noqa: F401 - re-exported for the e2e and fault tests
from tests.support.s3 import S3Server
from tests.support.workers import WorkerFleet

PIPELINE = "worker.job.pipeline:render_job"


@pytest.fixture
def s3() -> Iterator[S3Server]:
    """A fresh S3 server (own buckets) per test, so "nothing in storage" means this test's job."""
    with S3Server() as server:
        yield server


@pytest.fixture
def fleet(db_url: str, tmp_path: Path) -> Iterator[WorkerFleet]:
    f = WorkerFleet(db_url, tmp_path)
    yield f
    f.close()


def storage_env(s3: S3Server, **overrides: Any) -> dict[str, str]:
    """The STORAGE_*/SUPABASE_* variables pointing a worker at ``s3`` (fast retries)."""
    s = s3.settings()
    env = {
        "SUPABASE_URL": str(s.supabase_url),
        "STORAGE_S3_ENDPOINT": s3.endpoint,
        "STORAGE_S3_REGION": s.storage_s3_region,
        "STORAGE_S3_ACCESS_KEY_ID": s.storage_s3_access_key_id,
        "STORAGE_S3_SECRET_ACCESS_KEY": s.storage_s3_secret_access_key.get_secret_value(),
        "SUPABASE_STORAGE_BUCKET": s3.bucket,
        "STORAGE_PREVIEW_BUCKET": s3.preview_bucket,
        "STORAGE_UPLOAD_ATTEMPTS": "2",
        "STORAGE_RETRY_DELAY_MS": "20",
        "STORAGE_CONNECT_TIMEOUT_S": "2",
        "STORAGE_READ_TIMEOUT_S": "10",
    }
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def pipeline_env(s3: S3Server, tmp_path: Path, *fakes: Any, **overrides: Any) -> dict[str, str]:
    """Everything a pipeline worker needs: storage, a private provider cache and render temp dir,
    fast provider retries, the fakes' variables."""
    env = {
        "JOB_HANDLER": PIPELINE,
        "RENDER_TMP_DIR": str(tmp_path / "render-tmp"),
        "PROVIDER_CACHE_DIR": str(tmp_path / "provider-cache"),
        "RETRY_DELAY_MS": "1",
        "RETRY_MAX_DELAY_MS": "5",
        "PROVIDER_READ_TIMEOUT_S": "5",
        **storage_env(s3),
    }
    for fake in fakes:
        env.update(fake.env())
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def enqueue(conn: Any, payload: dict[str, Any], **kw: Any) -> Any:
    args = "".join(f", p_{k} => %({k})s" for k in kw)
    return conn.execute(
        f"select audio_queue.enqueue_job(%(p)s::jsonb{args})", {"p": json.dumps(payload), **kw}
    ).fetchone()[0]


def run_now(conn: Any, job_id: Any) -> None:
    """Skip the retry backoff: make a pending job due now (and wake the workers)."""
    conn.execute("update audio_queue.jobs set run_at = now() where id = %s", (job_id,))
    conn.execute("select pg_notify('audio_queue_jobs', '')")


CACHE_PREFIX = "provider-cache/"  # PROVIDER_CACHE_PREFIX's default: paid audio kept on purpose


def job_temp_dirs(render_tmp: Path) -> list[Path]:
    """The jobs' temp dirs left under RENDER_TMP_DIR (inside each process's scratch dir, which
    lives as long as its process: see worker.job.workdir)."""
    return sorted(render_tmp.glob("audio-worker-*/*")) if render_tmp.exists() else []


def all_keys(s3: S3Server) -> list[str]:
    """Every job object in storage (the shared provider cache's objects are not a job's)."""
    return [
        f"{b}/{k}" for b in dict.fromkeys(s3.buckets) for k in s3.keys(b) if not k.startswith(CACHE_PREFIX)
    ]


def cache_keys(s3: S3Server) -> list[str]:
    """The shared provider cache's objects."""
    return [f"{b}/{k}" for b in dict.fromkeys(s3.buckets) for k in s3.keys(b) if k.startswith(CACHE_PREFIX)]


class AudioHost(FakeServer):
    """Serves a 300 Hz mp3 at any path; scripted replies override."""

    def respond(self, req):
        return Reply(200, content_type="audio/mpeg") if req.method == "GET" else Reply(405, b"")

    def audio_reply(self, req):
        return sample_audio("mp3", seconds=1.0, freq=300.0, rate=44100)


@pytest.fixture
def host() -> Iterator[AudioHost]:
    """A local HTTP server (127.0.0.1) handing out audio, for music ``url`` layers."""
    with AudioHost() as server:
        yield server
