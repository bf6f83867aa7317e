"""Uploads against a real S3 HTTP server (moto): bytes, content types, checksums, multipart, URLs."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.storage.conftest import MiB
from tests.support.s3 import SECRET_ACCESS_KEY, S3Server
from worker.errors import PermanentError
from worker.storage import Storage

pytestmark = pytest.mark.timeout(60)


def fetch(s3: S3Server, bucket: str, key: str) -> tuple[bytes, str, str]:
    obj = s3.client().get_object(Bucket=bucket, Key=key)
    return obj["Body"].read(), obj["ContentType"], obj["ETag"]


def test_single_put_stores_bytes_content_type_and_checksum(
    s3: S3Server, storage: Storage, make_file: Callable[[str, int], Path]
) -> None:
    path = make_file("small.wav", 300_000)
    key = storage.object_key("job-1", "wav", timestamp_ms=1700000000123)
    stored = storage.upload_file(path, bucket=s3.bucket, key=key)

    assert key == "generated/job-1_1700000000123.wav"
    data, content_type, etag = fetch(s3, s3.bucket, key)
    assert data == path.read_bytes()
    assert content_type == "audio/wav"
    assert "-" not in etag  # one PUT, not multipart
    assert (stored.bucket, stored.key, stored.size) == (s3.bucket, key, 300_000)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.url == f"{s3.supabase_url}/storage/v1/object/public/{s3.bucket}/{key}"
    response = httpx.get(stored.url, timeout=10)  # the public URL serves the object
    assert response.status_code == 200 and response.content == path.read_bytes()


def test_multipart_above_threshold(
    s3: S3Server, storage: Storage, make_file: Callable[[str, int], Path]
) -> None:
    path = make_file("master.flac", 11 * MiB)
    stored = storage.upload_file(path, bucket=s3.bucket, key=storage.object_key("job-2", "flac"))

    data, content_type, etag = fetch(s3, s3.bucket, stored.key)
    assert data == path.read_bytes()
    assert content_type == "audio/flac"
    assert etag.strip('"').endswith("-3")  # 5 + 5 + 1 MiB parts
    assert stored.size == 11 * MiB and stored.sha256 == hashlib.sha256(data).hexdigest()
    assert not s3.client().list_multipart_uploads(Bucket=s3.bucket).get("Uploads")


def test_real_audio_files_get_their_content_types(s3: S3Server, storage: Storage, tmp_path: Path) -> None:
    expected = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg"}
    for ext, content_type in expected.items():
        path = tmp_path / f"tone.{ext}"
        subprocess.run(
            [
                "ffmpeg",
                "-nostdin",
                "-loglevel",
                "error",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:duration=0.5",
                str(path),
            ],
            check=True,
            timeout=30,
        )
        stored = storage.upload_file(path, bucket=s3.preview_bucket, key=storage.object_key("job-3", ext))
        data, stored_type, _ = fetch(s3, s3.preview_bucket, stored.key)
        assert (stored_type, stored.content_type, data) == (content_type, content_type, path.read_bytes())


def test_explicit_content_type_wins(
    s3: S3Server, storage: Storage, make_file: Callable[[str, int], Path]
) -> None:
    path = make_file("render.bin", 1000)
    stored = storage.upload_file(path, bucket=s3.bucket, key="generated/x.bin", content_type="audio/wav")
    assert fetch(s3, s3.bucket, stored.key)[1] == "audio/wav"


def test_signed_url_downloads_the_object(s3: S3Server, make_file: Callable[[str, int], Path]) -> None:
    storage = Storage(s3.settings(storage_url_mode="signed", storage_signed_url_ttl_s=600))
    path = make_file("preview.mp3", 50_000)
    stored = storage.upload_file(path, bucket=s3.preview_bucket, key=storage.object_key("job-4", "mp3"))

    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in stored.url and "X-Amz-Expires=600" in stored.url
    response = httpx.get(stored.url, timeout=10)
    assert response.status_code == 200 and response.content == path.read_bytes()


def test_object_keys_are_unique_and_prefixed(s3: S3Server) -> None:
    storage = Storage(s3.settings(storage_path_prefix="/renders/v1/"))
    key = storage.object_key("0b7c9f5e-1d2a-4e1b-9a7b-2f9c1e0d3a4b", "MP3")
    assert re.fullmatch(r"renders/v1/0b7c9f5e-1d2a-4e1b-9a7b-2f9c1e0d3a4b_\d{13}\.mp3", key)
    assert Storage(s3.settings(storage_path_prefix="")).object_key("j", "wav", timestamp_ms=5) == "j_5.wav"
    with pytest.raises(ValueError):
        storage.object_key("../etc", "wav")


def test_missing_bucket_is_permanent_and_named(
    s3: S3Server, storage: Storage, make_file: Callable[[str, int], Path]
) -> None:
    with pytest.raises(PermanentError, match="bucket 'no-such-bucket-x' does not exist"):
        storage.upload_file(make_file("a.wav", 10), bucket="no-such-bucket-x", key="generated/a.wav")


def test_check_reports_ready_and_missing_bucket(s3: S3Server) -> None:
    assert Storage(s3.settings()).check() == []
    problems = Storage(s3.settings(storage_preview_bucket="not-created-y")).check()
    assert len(problems) == 1 and "'not-created-y' does not exist" in problems[0]
    assert "credentials missing" in Storage(s3.settings(storage_s3_access_key_id="")).check()[0]
    cache = Storage(s3.settings(provider_cache_bucket="no-cache-bucket")).check()  # the shared cache's
    assert len(cache) == 1 and "'no-cache-bucket' does not exist" in cache[0]
    assert (
        Storage(s3.settings(provider_cache_bucket="no-cache-bucket", provider_cache_shared=False)).check()
        == []
    )


_UPLOAD_AND_REPORT_PEAK = """
import json, sys, tracemalloc
from pathlib import Path
from worker.storage import Storage, StorageSettings
values = json.loads(sys.argv[1])
storage = Storage(StorageSettings(_env_file=None, **values))
tracemalloc.start()
stored = storage.upload_file(Path(sys.argv[2]), bucket=values["supabase_storage_bucket"], key=sys.argv[3])
print(json.dumps({"peak": tracemalloc.get_traced_memory()[1], "sha256": stored.sha256}))
"""


def test_multipart_upload_never_holds_a_part_in_memory(
    s3: S3Server, make_file: Callable[[str, int], Path]
) -> None:
    """A long master (8 parts of 5 MiB, 4 in flight) costs the worker the same memory as a short one:
    parts are streamed from disk, so the upload's peak allocation stays below one part."""
    path = make_file("long.wav", 40 * MiB)
    values = s3.settings(storage_multipart_concurrency=4).model_dump(mode="json")
    values["storage_s3_secret_access_key"] = SECRET_ACCESS_KEY
    out = subprocess.run(
        [sys.executable, "-c", _UPLOAD_AND_REPORT_PEAK, json.dumps(values), str(path), "generated/long.wav"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])

    data, _, etag = fetch(s3, s3.bucket, "generated/long.wav")
    assert etag.strip('"').endswith("-8") and data == path.read_bytes()
    assert report["sha256"] == hashlib.sha256(data).hexdigest()
    assert report["peak"] < 5 * MiB, f"upload allocated {report['peak'] / MiB:.1f} MiB at its peak"


def test_check_catches_public_url_mode_on_a_private_bucket(s3: S3Server) -> None:
    """STORAGE_URL_MODE=public on a private bucket would complete jobs with URLs that answer
    "Bucket not found": check says so, and is fine with signed URLs."""
    assert Storage(s3.settings()).check() == []
    s3.make_private(s3.preview_bucket)
    try:
        problems = Storage(s3.settings()).check()
        assert Storage(s3.settings(storage_url_mode="signed")).check() == []
    finally:
        s3.public_buckets.add(s3.preview_bucket)
    assert len(problems) == 1 and f"bucket {s3.preview_bucket!r} is not public" in problems[0]
