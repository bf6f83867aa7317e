"""Storage going away mid-job: bounded retries, then RetryableError; it recovers when storage does."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from loguru import logger

from tests.storage.conftest import MiB
from tests.support.s3 import S3Server
from worker.errors import RetryableError
from worker.local.ports import free_port
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
    outage_s3: S3Server, make_file: Callable[[str, int], Path], warnings: list[str]
) -> None:
    s3 = outage_s3
    storage = Storage(s3.settings(storage_upload_attempts=3, storage_retry_delay_ms=50))
    master = storage.upload_file(
        make_file("m.wav", 11 * MiB), bucket=s3.bucket, key=storage.object_key("j", "wav")
    )
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
    assert (
        s3.client().get_object(Bucket=s3.preview_bucket, Key=preview.key)["Body"].read()
        == preview_path.read_bytes()
    )
    storage.delete_objects([master, preview])
    assert master.key not in s3.keys() and preview.key not in s3.keys(s3.preview_bucket)
    assert not s3.client().list_multipart_uploads(Bucket=s3.bucket).get("Uploads")  # nothing half-done left


def test_short_outage_is_ridden_out_by_retries(
    outage_s3: S3Server, make_file: Callable[[str, int], Path]
) -> None:
    s3 = outage_s3
    storage = Storage(s3.settings(storage_upload_attempts=5, storage_retry_delay_ms=200))
    path = make_file("m.flac", 11 * MiB)
    s3.disconnect()
    threading.Timer(0.3, s3.reconnect).start()
    stored = storage.upload_file(path, bucket=s3.bucket, key=storage.object_key("k", "flac"))
    assert s3.client().get_object(Bucket=s3.bucket, Key=stored.key)["Body"].read() == path.read_bytes()


def test_closed_port_fails_fast_with_retryable_error(make_file: Callable[[str, int], Path]) -> None:
    with S3Server() as s3:
        settings = s3.settings(
            storage_s3_endpoint=f"http://127.0.0.1:{free_port()}", storage_upload_attempts=2
        )
    started = time.monotonic()
    with pytest.raises(RetryableError):
        Storage(settings).upload_file(
            make_file("a.wav", 1000), bucket=settings.master_bucket, key="generated/a.wav"
        )
    assert time.monotonic() - started < 5
    assert "unreachable" in Storage(settings).check()[0]


def test_cut_while_parts_are_in_flight_resends_them_whole(
    outage_s3: S3Server, make_file: Callable[[str, int], Path], warnings: list[str]
) -> None:
    """Connections cut mid-multipart: each interrupted part is sent again from its slice of the
    file, and the stored object is byte-for-byte the file with the sha256 the result records."""
    s3 = outage_s3
    storage = Storage(
        s3.settings(storage_upload_attempts=6, storage_retry_delay_ms=150, storage_multipart_concurrency=3)
    )
    path = make_file("long.wav", 60 * MiB)
    watcher = s3.client()

    def cut_after_first_part() -> None:  # then the other parts in flight are cut mid-body
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for upload in watcher.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", []):
                if watcher.list_parts(Bucket=s3.bucket, Key=upload["Key"], UploadId=upload["UploadId"]).get(
                    "Parts"
                ):
                    s3.disconnect()
                    time.sleep(0.4)
                    s3.reconnect()
                    return
            time.sleep(0.005)

    cutter = threading.Thread(target=cut_after_first_part)
    cutter.start()
    stored = storage.upload_file(path, bucket=s3.bucket, key="generated/long.wav")
    cutter.join()

    data = s3.client().get_object(Bucket=s3.bucket, Key=stored.key)["Body"].read()
    assert data == path.read_bytes() and stored.sha256 == hashlib.sha256(data).hexdigest()
    assert any("part" in w and "retrying" in w for w in warnings), warnings
    assert not s3.client().list_multipart_uploads(Bucket=s3.bucket).get("Uploads")
