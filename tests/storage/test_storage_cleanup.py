"""Cleanup leaves nothing behind: objects are deleted, and incomplete multipart uploads of their keys
(a process killed mid-upload) are found by listing and aborted, without any stored upload id."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.s3 import S3Server
from worker.storage import Storage, StoredObject

pytestmark = pytest.mark.timeout(60)


def handle(bucket: str, key: str) -> StoredObject:
    return StoredObject(bucket=bucket, key=key, size=0, sha256="", content_type="", url="")


def test_delete_objects_is_idempotent_and_quiet(
    s3: S3Server, storage: Storage, make_file: Callable[[str, int], Path]
) -> None:
    stored = storage.upload_file(
        make_file("a.flac", 1000), bucket=s3.bucket, key=storage.object_key("j3", "flac")
    )
    ghost = stored.model_copy(update={"key": "generated/never-uploaded.wav"})
    elsewhere = stored.model_copy(update={"bucket": "missing-bucket-z"})
    storage.delete_objects([stored, ghost, elsewhere])
    storage.delete_objects([stored])
    assert stored.key not in s3.keys()


def test_purge_aborts_incomplete_uploads_of_exactly_its_keys_and_deletes_the_objects(
    s3: S3Server, storage: Storage, make_file: Callable[[str, int], Path]
) -> None:
    master, preview = "generated/p1_1.wav", "generated/p1_1.mp3"
    s3.start_upload(s3.bucket, master)
    s3.start_upload(s3.bucket, master)  # a retried attempt of the same key: both go
    s3.start_upload(s3.bucket, master + ".other")  # shares the prefix, not the key: stays
    storage.upload_file(make_file("p.mp3", 1000), bucket=s3.preview_bucket, key=preview)

    storage.purge([handle(s3.bucket, master), handle(s3.preview_bucket, preview)])

    assert s3.uploads(s3.bucket, master) == [master + ".other"]
    assert preview not in s3.keys(s3.preview_bucket)
    storage.purge([handle(s3.bucket, master), handle("missing-bucket-z", master)])  # again: quiet
    assert storage.abort_incomplete_uploads(s3.bucket, master + ".other") == 1
    assert s3.uploads(s3.bucket, "generated/p1_") == []
