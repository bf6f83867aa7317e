"""Supabase's S3 quirks, reproduced by a local fake over real HTTP (moto does not show them)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from loguru import logger

from tests.storage.conftest import MiB
from tests.storage.fake_supabase import FakeSupabaseS3
from worker.errors import JobError, PermanentError
from worker.storage import ObjectNotFound, Storage, StorageSettings, classify

pytestmark = pytest.mark.timeout(60)
SECRET = "sb-secret-VERY-PRIVATE-0123456789"


def settings_for(fake: FakeSupabaseS3, **overrides: Any) -> StorageSettings:
    values: dict[str, Any] = dict(
        supabase_url=fake.url,
        storage_s3_endpoint=fake.endpoint,
        storage_s3_access_key_id="test-access-key-id",
        storage_s3_secret_access_key=SECRET,
        storage_multipart_threshold_mb=5,
        storage_multipart_part_mb=5,
        storage_upload_attempts=3,
        storage_retry_delay_ms=10,
    )
    return StorageSettings(**(values | overrides))


@pytest.fixture
def fake() -> Iterator[FakeSupabaseS3]:
    with FakeSupabaseS3(max_put_bytes=6 * MiB, public_buckets=("audio-files",)) as server:
        yield server


def error_texts(exc: BaseException) -> str:
    texts = []
    while exc is not None:
        texts += [str(exc), repr(exc)]
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return "\n".join(texts)


def test_plain_botocore_reads_no_error_code_from_supabase(fake: FakeSupabaseS3) -> None:
    """Why the hook exists: without it Supabase's namespaced error XML yields an empty code."""
    client = boto3.client(
        "s3",
        endpoint_url=fake.endpoint,
        region_name="us-east-1",
        aws_access_key_id="wrong-key",
        aws_secret_access_key="x",
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
    )
    with pytest.raises(ClientError) as caught:
        client.head_object(Bucket="audio-files", Key="x")
    assert caught.value.response["Error"]["Code"] in {"", "403"}


@pytest.mark.parametrize("html", [False, True], ids=["supabase-xml", "proxy-html"])
def test_oversize_single_put_fails_with_a_true_hint_without_retrying(
    html: bool, make_file: Callable[[str, int], Path]
) -> None:
    with FakeSupabaseS3(max_put_bytes=1 * MiB, html_413=html) as fake:
        storage = Storage(settings_for(fake))
        with pytest.raises(PermanentError) as caught:
            storage.upload_file(make_file("m.wav", 2 * MiB), bucket="audio-files", key="generated/m.wav")
        message = str(caught.value)
        assert "too large" in message and "as flac" in message and "16-bit" in message
        assert "file size limit of the bucket or of the project" in message
        assert [r[0] for r in fake.requests] == ["PUT"]  # refused once, not retried
        assert not fake.objects


def test_large_master_goes_multipart_and_is_accepted(
    fake: FakeSupabaseS3, make_file: Callable[[str, int], Path]
) -> None:
    """11 MiB > the fake's 6 MiB single-PUT limit: multipart (with XML Content-Type) gets it through."""
    path = make_file("master.wav", 11 * MiB)
    stored = Storage(settings_for(fake)).upload_file(path, bucket="audio-files", key="generated/master.wav")

    data, content_type = fake.objects[("audio-files", "generated/master.wav")]
    assert data == path.read_bytes() and content_type == "audio/wav"
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    posts = [r for r in fake.requests if r[0] == "POST"]
    assert [q.split("=")[0] for _, _, q, _ in posts] == ["uploads", "uploadId"]
    assert posts[-1][3] == "application/xml"
    assert sum(1 for r in fake.requests if r[0] == "PUT") == 3


def test_small_files_are_stored_with_their_content_type(
    fake: FakeSupabaseS3, make_file: Callable[[str, int], Path]
) -> None:
    storage = Storage(settings_for(fake))
    for name, expected in {"p.mp3": "audio/mpeg", "m.flac": "audio/flac", "m.wav": "audio/wav"}.items():
        storage.upload_file(make_file(name, 1000), bucket="audio-files", key=f"generated/{name}")
        assert fake.objects[("audio-files", f"generated/{name}")][1] == expected


def test_delete_objects_really_deletes(fake: FakeSupabaseS3, make_file: Callable[[str, int], Path]) -> None:
    storage = Storage(settings_for(fake))
    objs = [
        storage.upload_file(make_file(n, 100), bucket="audio-files", key=f"generated/{n}")
        for n in ("a.wav", "b.mp3")
    ]
    storage.delete_objects(objs)
    assert not fake.objects
    assert [r[3] for r in fake.requests if r[0] == "POST"] == ["application/xml"]


def test_wrong_key_is_permanent_says_what_to_fix_and_never_shows_the_secret(
    fake: FakeSupabaseS3, make_file: Callable[[str, int], Path]
) -> None:
    logs: list[str] = []
    handler = logger.add(lambda m: logs.append(str(m)), level="DEBUG")
    try:
        storage = Storage(settings_for(fake, storage_s3_access_key_id="someone-elses-key"))
        with pytest.raises(PermanentError) as caught:
            storage.upload_file(make_file("a.wav", 100), bucket="audio-files", key="generated/a.wav")
        problems = storage.check()
    finally:
        logger.remove(handler)
    message = str(caught.value)
    assert "access denied" in message and "AccessDenied" in message  # code parsed through the namespace
    assert "STORAGE_S3_ACCESS_KEY_ID" in message
    assert problems and "access denied" in problems[0]
    everything = (
        error_texts(caught.value) + "\n".join(problems + logs) + repr(storage) + repr(storage.settings)
    )
    assert SECRET not in everything


def test_secret_absent_from_every_storage_error(
    fake: FakeSupabaseS3, make_file: Callable[[str, int], Path]
) -> None:
    small, big = make_file("s.wav", 100), make_file("b.wav", 7 * MiB)
    cases = [  # (settings overrides, file, bucket)
        ({}, small, "no-such-bucket"),
        ({"storage_multipart_threshold_mb": 10}, big, "audio-files"),
        ({"storage_s3_access_key_id": "other"}, small, "audio-files"),
        ({"storage_s3_endpoint": "http://127.0.0.1:9"}, small, "audio-files"),
    ]
    texts = []
    for overrides, path, bucket in cases:
        storage = Storage(settings_for(fake, storage_upload_attempts=2, **overrides))
        with pytest.raises(JobError) as caught:
            storage.upload_file(path, bucket=bucket, key="generated/x.wav")
        texts.append(error_texts(caught.value))
    assert "'no-such-bucket' does not exist" in texts[0] and "too large" in texts[1]
    assert "access denied" in texts[2] and "unreachable" in texts[3]
    assert SECRET not in "\n".join(texts)


def test_check_reports_missing_bucket(fake: FakeSupabaseS3) -> None:
    problems = Storage(settings_for(fake, storage_preview_bucket="previews")).check()
    assert problems == [p for p in problems if "'previews' does not exist" in p] and len(problems) == 1


def test_master_over_the_plan_limit_fails_multipart_with_hint_and_leaves_nothing(
    make_file: Callable[[str, int], Path],
) -> None:
    with FakeSupabaseS3(max_put_bytes=6 * MiB, max_object_bytes=8 * MiB) as fake:
        storage = Storage(settings_for(fake, storage_multipart_concurrency=1))
        with pytest.raises(PermanentError, match="as flac .* or at 16-bit") as caught:
            storage.upload_file(make_file("m.wav", 11 * MiB), bucket="audio-files", key="generated/m.wav")
        assert "11.5 MB" in str(caught.value)
        assert not fake.objects and not fake.uploads  # refused part, then the upload was aborted
        assert fake.requests[-1][0] == "DELETE"


def raw_client(fake: FakeSupabaseS3) -> Any:
    """boto3 without the worker's hooks: what botocore alone sends."""
    return boto3.client(
        "s3",
        endpoint_url=fake.endpoint,
        region_name="us-east-1",
        aws_access_key_id="test-access-key-id",
        aws_secret_access_key="x",
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
    )


def test_imitation_refuses_delete_objects_without_xml_and_completes_multipart_without_it(
    fake: FakeSupabaseS3,
) -> None:
    """As the real server: DeleteObjects without application/xml is a 400 InvalidRequest (nothing
    deleted); CompleteMultipartUpload without it is a 200 that assembles every uploaded part."""
    client = raw_client(fake)
    client.put_object(Bucket="audio-files", Key="generated/a.wav", Body=b"a")
    with pytest.raises(ClientError) as caught:
        client.delete_objects(Bucket="audio-files", Delete={"Objects": [{"Key": "generated/a.wav"}]})
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert ("audio-files", "generated/a.wav") in fake.objects

    upload = client.create_multipart_upload(Bucket="audio-files", Key="generated/m.wav")["UploadId"]
    etags = [
        client.upload_part(
            Bucket="audio-files", Key="generated/m.wav", UploadId=upload, PartNumber=n, Body=body
        )["ETag"]
        for n, body in ((1, b"first-"), (2, b"second"))
    ]
    client.complete_multipart_upload(
        Bucket="audio-files",
        Key="generated/m.wav",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etags[0]}]},  # body unread: both parts
    )
    assert fake.objects[("audio-files", "generated/m.wav")][0] == b"first-second"
    assert [r[3] for r in fake.requests if r[0] == "POST" and "uploadId" in r[2]] == [None]


@pytest.mark.parametrize("size", [1000, 7 * MiB], ids=["single-put", "multipart-create"])
def test_bucket_with_allowed_mime_types_refuses_other_types_permanently(
    size: int, make_file: Callable[[str, int], Path]
) -> None:
    with FakeSupabaseS3(allowed_mime_types={"audio-files": ("audio/mpeg",)}) as fake:
        storage = Storage(settings_for(fake))
        with pytest.raises(PermanentError, match="allowed MIME types") as caught:
            storage.upload_file(make_file("m.flac", size), bucket="audio-files", key="generated/m.flac")
        assert "InvalidMimeType, HTTP 415" in str(caught.value)
        assert len(fake.requests) == 1 and not fake.objects and not fake.uploads  # not retried
        storage.upload_file(make_file("p.mp3", 1000), bucket="audio-files", key="generated/p.mp3")


def test_presigned_and_public_urls_download_the_object(
    make_file: Callable[[str, int], Path],
) -> None:
    path = make_file("p.mp3", 70_000)
    with FakeSupabaseS3(buckets=("audio-files", "private"), public_buckets=("audio-files",)) as fake:
        public = Storage(settings_for(fake)).upload_file(path, bucket="audio-files", key="generated/p.mp3")
        assert public.url == f"{fake.url}/storage/v1/object/public/audio-files/generated/p.mp3"
        signed = Storage(settings_for(fake, storage_url_mode="signed")).upload_file(
            path, bucket="private", key="generated/p.mp3"
        )
        assert "X-Amz-Signature=" in signed.url
        for url in (public.url, signed.url):
            response = httpx.get(url, timeout=10)
            assert response.status_code == 200 and response.content == path.read_bytes()
            assert response.headers["content-type"] == "audio/mpeg"
        # the private bucket has no public URL: the real server's answer
        refused = httpx.get(public.url.replace("/audio-files/", "/private/"), timeout=10)
        assert refused.status_code == 400 and refused.json()["error"] == "Bucket not found"


def test_check_catches_public_url_mode_on_a_private_bucket() -> None:
    with FakeSupabaseS3(buckets=("audio-files", "previews"), public_buckets=("audio-files",)) as fake:
        ready = Storage(settings_for(fake, storage_preview_bucket="audio-files")).check()
        problems = Storage(settings_for(fake, storage_preview_bucket="previews")).check()
        signed = Storage(settings_for(fake, storage_preview_bucket="previews", storage_url_mode="signed"))
        assert ready == [] and signed.check() == []
    assert len(problems) == 1, problems
    assert "bucket 'previews' is not public" in problems[0] and "STORAGE_URL_MODE=signed" in problems[0]


def test_too_large_messages_fit_the_file() -> None:
    wav, flac, mp3 = (
        str(
            classify(ClientError(TOO_LARGE, "PutObject"), action="upload", bucket="b", size=63_000_000, key=k)
        )
        for k in ("generated/j.wav", "generated/j.flac", "generated/j.mp3")
    )
    assert "63.0 MB" in wav and "as flac" in wav
    assert "as flac" not in flac and "16-bit" in flac
    assert "bitrate" in mp3 and "flac" not in mp3


def test_404_from_head_of_a_missing_object_is_not_a_missing_bucket(fake: FakeSupabaseS3) -> None:
    with pytest.raises(ClientError) as caught:
        raw_client(fake).head_object(Bucket="audio-files", Key="generated/nothing.wav")
    error = classify(caught.value, action="read", bucket="audio-files", key="generated/nothing.wav")
    assert isinstance(error, ObjectNotFound) and "does not exist" not in str(error)
    assert "no object 'generated/nothing.wav' in bucket 'audio-files'" in str(error)


TOO_LARGE = {"Error": {"Code": "EntityTooLarge"}, "ResponseMetadata": {"HTTPStatusCode": 413}}
