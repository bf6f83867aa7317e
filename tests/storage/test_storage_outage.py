"""Storage going away mid-job: bounded retries, then RetryableError; it recovers when storage does."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from loguru import logger

from tests.storage.conftest import MiB
from tests.support.s3 import S3Server
from worker.errors import RetryableError
from worker.ports import free_port
from worker.storage import Storage

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def outage_s3() -> Iterator[S3Server]:
    with S3Server() as server:  # own server: these tests cut its connections
        yield server


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    messages: list[str] = []
    handler = logger.add(lambda m: messages.append(str(m)), level="WARNING")
    yield messages
    logger.remove(handler)


def test_outage_mid_job_retries_then_retryable_error_then_recovers(
        outage_s3: S3Server, make_file: Callable[[str, int], Path], warnings: list[str]) -> None:
    s3 = outage_s3
    storage = Storage(s3.settings(storage_upload_attempts=3, storage_retry_delay_ms=50))
    master = storage.upload_file(make_file("m.wav", 11 * MiB), bucket=s3.bucket, key=storage.object_key("j", "wav"))
    preview_path = make_file("p.mp3", 200_000)

    s3.disconnect()
    started = time.monotonic()
    with pytest.raises(RetryableError, match="storage unreachable"):
        storage.upload_file(preview_path, bucket=s3.preview_bucket, key=storage.object_key("j", "mp3"))
    assert time.monotonic() - started < 10
    assert sum("retrying" in w for w in warnings) == 2  # 3 attempts
    with pytest.raises(RetryableError):  # multipart too
        storage.upload_file(make_file("m2.wav", 11 * MiB), bucket=s3.bucket, key="generated/m2.wav")
    storage.delete_objects([master])  # best effort: logs, never raises during the outage

    s3.reconnect()
    preview = storage.upload_file(preview_path, bucket=s3.preview_bucket, key=storage.object_key("j", "mp3"))
    assert s3.client().get_object(Bucket=s3.preview_bucket, Key=preview.key)["Body"].read() == \
        preview_path.read_bytes()
    storage.delete_objects([master, preview])
    assert master.key not in s3.keys() and preview.key not in s3.keys(s3.preview_bucket)
    assert not s3.client().list_multipart_uploads(Bucket=s3.bucket).get("Uploads")  # nothing half-done left


def test_short_outage_is_ridden_out_by_retries(outage_s3: S3Server,
                                               make_file: Callable[[str, int], Path]) -> None:
    s3 = outage_s3
    storage = Storage(s3.settings(storage_upload_attempts=5, storage_retry_delay_ms=200))
    path = make_file("m.flac", 11 * MiB)
    s3.disconnect()
    threading.Timer(0.3, s3.reconnect).start()
    stored = storage.upload_file(path, bucket=s3.bucket, key=storage.object_key("k", "flac"))
    assert s3.client().get_object(Bucket=s3.bucket, Key=stored.key)["Body"].read() == path.read_bytes()


def test_closed_port_fails_fast_with_retryable_error(make_file: Callable[[str, int], Path]) -> None:
    with S3Server() as s3:
        settings = s3.settings(storage_s3_endpoint=f"http://127.0.0.1:{free_port()}", storage_upload_attempts=2)
    started = time.monotonic()
    with pytest.raises(RetryableError):
        Storage(settings).upload_file(make_file("a.wav", 1000), bucket=settings.master_bucket, key="generated/a.wav")
    assert time.monotonic() - started < 5
    assert "unreachable" in Storage(settings).check()[0]
