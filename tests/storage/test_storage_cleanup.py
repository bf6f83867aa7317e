"""A job whose completion is refused, or that fails after uploading, leaves nothing in storage."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.storage.conftest import MiB
from tests.support.s3 import S3Server
from worker.errors import PermanentError
from worker.storage import Storage, StoredObject

pytestmark = pytest.mark.timeout(60)


class LeaseLost(Exception):
    """Stands in for the queue refusing a job's completion."""


def test_refused_completion_deletes_master_and_preview(
    s3: S3Server, storage: Storage, make_file: Callable[[str, int], Path]
) -> None:
    before = (s3.keys(), s3.keys(s3.preview_bucket))
    with pytest.raises(LeaseLost):
        with storage.cleanup_on_failure() as batch:
            batch.upload_file(
                make_file("m.wav", 11 * MiB), bucket=s3.bucket, key=storage.object_key("j1", "wav")
            )
            batch.upload_file(
                make_file("p.mp3", 1000), bucket=s3.preview_bucket, key=storage.object_key("j1", "mp3")
            )
            assert len(s3.keys()) == len(before[0]) + 1
            raise LeaseLost
    assert (s3.keys(), s3.keys(s3.preview_bucket)) == before


def test_failure_after_first_upload_deletes_it(
    s3: S3Server, storage: Storage, make_file: Callable[[str, int], Path]
) -> None:
    before = s3.keys()
    with pytest.raises(PermanentError, match="does not exist"):
        with storage.cleanup_on_failure() as batch:
            batch.upload_file(make_file("m.wav", 1000), bucket=s3.bucket, key=storage.object_key("j2", "wav"))
            batch.upload_file(make_file("p.mp3", 1000), bucket="missing-bucket-z", key="generated/j2.mp3")
    assert s3.keys() == before


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


def test_discard_after_refused_completion(
    s3: S3Server, storage: Storage, make_file: Callable[[str, int], Path]
) -> None:
    """The pipeline may learn of a lost lease from a return value rather than an exception."""
    with storage.cleanup_on_failure() as batch:
        stored: StoredObject = batch.upload_file(
            make_file("m.wav", 1000), bucket=s3.bucket, key=storage.object_key("j4", "wav")
        )
        completed = False  # e.g. complete_job() returned False: the lease was lost
        if not completed:
            batch.discard()
    assert stored.key not in s3.keys()
