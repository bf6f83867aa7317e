"""In process: a job cancelled between its two uploads (lease lost, cancel, timeout, shutdown)
leaves nothing in storage, even the upload that was still in flight when it was cancelled."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.e2e.conftest import all_keys, job_temp_dirs
from worker.errors import PermanentError
from worker.job import pipeline
from worker.providers import ProviderSettings
from worker.queue.db.queue import Job
from worker.queue.handlers import JobContext
from worker.render import RenderSettings
from worker.storage import Storage

TONES = {"spec_version": 1, "duration_s": 2, "layers": [{"type": "solfeggio", "frequency_hz": 528}]}


def make_job(payload: dict) -> Job:
    now = datetime.now(UTC)
    return Job(
        id=uuid.uuid4(),
        lease_id=uuid.uuid4(),
        payload=payload,
        attempts=1,
        max_attempts=3,
        priority=0,
        track_id=None,
        user_id=None,
        created_at=now,
        run_at=now,
    )


def pipeline_on(s3, tmp_path: Path, monkeypatch) -> Storage:
    """The pipeline configured for ``s3``, with its temp and cache dirs under ``tmp_path``."""
    storage = Storage(s3.settings())
    cfg = pipeline.PipelineConfig(
        render=RenderSettings(tmp_dir=tmp_path / "render-tmp"),
        providers=ProviderSettings(provider_cache_dir=tmp_path / "cache"),
        storage=storage,
    )
    monkeypatch.setattr(pipeline, "_config", cfg)
    return storage


@pytest.mark.timeout(60)
def test_cancel_during_the_preview_upload_deletes_both_files(s3, tmp_path: Path, monkeypatch):
    storage = pipeline_on(s3, tmp_path, monkeypatch)
    real_upload = storage.upload_file
    preview_started, preview_landed = threading.Event(), threading.Event()

    def slow_preview(path: Path, **kw):
        if path.suffix == ".mp3":
            preview_started.set()
            time.sleep(1.0)  # the cancel arrives while this upload is in flight
            obj = real_upload(path, **kw)
            preview_landed.set()
            return obj
        return real_upload(path, **kw)

    monkeypatch.setattr(storage, "upload_file", slow_preview)

    async def scenario() -> JobContext:
        ctx = JobContext(worker_id="test")
        task = asyncio.create_task(pipeline.render_job(make_job(TONES), ctx))
        assert await asyncio.to_thread(preview_started.wait, 30)
        task.cancel()  # what the claim loop does on a lost lease, a cancel, a timeout
        with pytest.raises(asyncio.CancelledError):
            await task
        for cleanup in ctx.discards:  # ... and then it runs the discards
            await cleanup()
        assert await asyncio.to_thread(preview_landed.wait, 30)
        for _ in range(200):  # the pipeline deletes the late upload once its thread ends
            await asyncio.sleep(0.05)
            if not pipeline._late_cleanups and not all_keys(s3):
                break
        return ctx

    ctx = asyncio.run(scenario())
    assert ctx.stage == "upload" and ctx.discards
    assert all_keys(s3) == []
    assert job_temp_dirs(tmp_path / "render-tmp") == []


@pytest.mark.timeout(60)
def test_master_upload_failing_while_the_preview_uploads_leaves_nothing(s3, tmp_path: Path, monkeypatch):
    # The files go up side by side: the master's failure must not hand the job to its discard
    # while the preview is still being written, or the preview would land after the deletion.
    storage = pipeline_on(s3, tmp_path, monkeypatch)
    real_upload = storage.upload_file

    def failing_master(path: Path, **kw):
        if path.suffix == ".mp3":
            sent = tmp_path / "on-the-wire.mp3"  # the body is on its way: the job's temp dir may go
            shutil.copyfile(path, sent)
            time.sleep(1.0)  # still in flight when the master has failed
            return real_upload(sent, **kw)
        raise PermanentError("storage refused the master")

    monkeypatch.setattr(storage, "upload_file", failing_master)

    async def scenario() -> JobContext:
        ctx = JobContext(worker_id="test")
        with pytest.raises(PermanentError, match="refused the master"):
            await pipeline.render_job(make_job(TONES), ctx)
        for cleanup in ctx.discards:  # what the claim loop does with a failed attempt
            await cleanup()
        return ctx

    ctx = asyncio.run(scenario())
    assert ctx.discards
    assert all_keys(s3) == []
    assert job_temp_dirs(tmp_path / "render-tmp") == []
