"""The provider cache's second level in Storage (real moto S3 server, real PostgreSQL, the OpenAI
fake counting calls): a dyno with an empty disk reads what another paid for, and identical requests
on different dynos at the same time pay once (the fleet lock), also through a transaction pooler; an
upload a killed worker left half-done is aborted once it is older than any upload lasts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import Reply
from tests.providers.conftest import run
from tests.support.s3 import S3Server
from worker.errors import PermanentError
from worker.providers import cache as provider_cache
from worker.providers import fetch_speech
from worker.providers.cache import ABANDONED_UPLOAD_AGE_S, FleetLock, SharedCache, cache_key
from worker.storage import Storage

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server


@pytest.fixture
def shared(s3: S3Server, migrated_url: str, tmp_path: Path) -> Iterator[SharedCache]:
    """Level 2 installed as the pipeline does, under a prefix of this test's own."""
    level = SharedCache(
        Storage(s3.settings()),
        bucket=s3.bucket,
        prefix=f"provider-cache/{tmp_path.name}",
        lock=FleetLock(migrated_url),
        poll_s=0.05,
    )
    provider_cache.install_shared(level)
    yield level
    provider_cache.install_shared(None)


def speak(settings: Any, out: Path, text: str = "Shared words.") -> Any:
    return fetch_speech(text=text, provider="openai", voice=None, model=None, out_dir=out, settings=settings)


def dyno(make_settings: Any, fake: Any, tmp_path: Path, name: str) -> Any:
    """A dyno's settings: its own (empty) local cache directory."""
    return make_settings(fake, provider_cache_dir=tmp_path / name / "cache")


def test_a_dyno_with_an_empty_disk_reads_what_another_paid_for(
    fake_openai: Any, make_settings: Any, tmp_path: Path, s3: S3Server, shared: SharedCache
) -> None:
    first = run(speak(dyno(make_settings, fake_openai, tmp_path, "a"), tmp_path / "a" / "out"))
    stored = [k for k in s3.keys() if k.startswith(shared.prefix + "/")]
    assert len(fake_openai.requests) == 1 and len(stored) == 1 and stored[0].endswith(".mp3")

    second = run(speak(dyno(make_settings, fake_openai, tmp_path, "b"), tmp_path / "b" / "out"))
    assert len(fake_openai.requests) == 1  # the restarted dyno paid nothing
    assert second.read_bytes() == first.read_bytes()
    assert list((tmp_path / "b" / "cache").rglob("*.mp3"))  # and keeps a local copy (level 1)

    run(speak(dyno(make_settings, fake_openai, tmp_path, "c"), tmp_path / "c" / "out", text="Other words."))
    assert len(fake_openai.requests) == 2  # a different request is a miss


@pytest.mark.parametrize("through", ["direct", "pgbouncer"])
def test_identical_requests_on_different_dynos_at_once_pay_once(
    through: str,
    fake_openai: Any,
    make_settings: Any,
    tmp_path: Path,
    shared: SharedCache,
    migrated_url: str,
    request: pytest.FixtureRequest,
) -> None:
    if through == "pgbouncer":
        shared.lock = FleetLock(request.getfixturevalue("pgbouncer").url(migrated_url))
    fake_openai.script(Reply(200, delay=0.5))  # the payer is slow: the others must wait, not pay

    async def three_dynos() -> list[Path]:
        return await asyncio.gather(
            *(speak(dyno(make_settings, fake_openai, tmp_path, n), tmp_path / n / "out") for n in "xyz")
        )

    paths = run(three_dynos())
    assert len(fake_openai.requests) == 1
    assert len({p.read_bytes() for p in paths}) == 1


def test_when_the_payer_fails_a_waiting_dyno_pays_instead(
    fake_openai: Any, make_settings: Any, tmp_path: Path, shared: SharedCache
) -> None:
    """The lock ends with the payer's attempt, not with a timeout: the next one in line pays."""
    fake_openai.script(
        Reply(400, {"error": {"message": "refused", "type": "invalid_request_error"}}, delay=0.3)
    )

    async def two_dynos() -> list[Any]:
        return await asyncio.gather(
            *(speak(dyno(make_settings, fake_openai, tmp_path, n), tmp_path / n / "out") for n in "pq"),
            return_exceptions=True,
        )

    results = run(two_dynos())
    assert sum(isinstance(r, PermanentError) for r in results) == 1
    assert sum(isinstance(r, Path) for r in results) == 1
    assert len(fake_openai.requests) == 2


def test_storage_down_is_a_miss_not_a_failure(
    fake_openai: Any, make_settings: Any, tmp_path: Path, s3: S3Server
) -> None:
    level = SharedCache(
        Storage(s3.settings(storage_s3_endpoint="http://127.0.0.1:9", storage_upload_attempts=1)),
        bucket=s3.bucket,
        prefix="provider-cache",
    )
    provider_cache.install_shared(level)
    try:
        path = run(speak(dyno(make_settings, fake_openai, tmp_path, "d"), tmp_path / "d" / "out"))
    finally:
        provider_cache.install_shared(None)
    assert path.exists() and len(fake_openai.requests) == 1


def test_the_pipeline_installs_level_2_by_default_when_storage_is_configured(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch, migrated_url: str
) -> None:
    from worker.job import pipeline
    from worker.providers import ProviderSettings

    monkeypatch.setenv("DATABASE_URL", migrated_url)
    for overrides, installed in (({}, True), ({"provider_cache_shared": False}, False)):
        cfg = pipeline.PipelineConfig(
            render=None,  # type: ignore[arg-type]
            providers=ProviderSettings(),
            storage=Storage(s3.settings(**overrides)),
        )
        pipeline.install_shared_cache(cfg)
        level = provider_cache.shared_level()
        try:
            assert (level is not None) == installed
            if level is not None:
                assert (level.bucket, level.prefix) == (s3.bucket, "provider-cache")
                assert level.lock is not None and level.wait_s == 900
        finally:
            provider_cache.install_shared(None)


def test_uploads_a_killed_worker_left_half_done_are_aborted_and_nothing_else(
    s3: S3Server, shared: SharedCache, tmp_path: Path
) -> None:
    """A worker killed while sharing a large file (multipart) leaves an incomplete upload that no
    job lists and that holds its parts' bytes. Those begun longer ago than any upload lasts go; an
    upload still in progress finishes, and uploads the cache did not start stay."""

    def key(text: str) -> str:
        return shared.object_key(cache_key(provider="openai", text=text), "mp3")

    def aged(object_key: str, seconds: float) -> str:
        upload_id = s3.start_upload(s3.bucket, object_key)
        s3.backdate_upload(s3.bucket, upload_id, seconds)
        return upload_id

    aged(key("dead"), ABANDONED_UPLOAD_AGE_S + 60)
    live = aged(key("live"), ABANDONED_UPLOAD_AGE_S - 600)  # slow, but not beyond the limit
    not_the_caches = [f"{shared.prefix}/notes/todo.mp3", f"other-{tmp_path.name}/{key('job')}"]
    for other in not_the_caches:
        aged(other, ABANDONED_UPLOAD_AGE_S + 60)

    assert run(shared.abort_abandoned_uploads()) == 1
    assert s3.uploads(s3.bucket, shared.prefix + "/") == sorted([key("live"), not_the_caches[0]])
    assert s3.uploads(s3.bucket, f"other-{tmp_path.name}/") == [not_the_caches[1]]

    client = s3.client()  # the upload in progress still completes
    parts = client.list_parts(Bucket=s3.bucket, Key=key("live"), UploadId=live)["Parts"]
    client.complete_multipart_upload(
        Bucket=s3.bucket,
        Key=key("live"),
        UploadId=live,
        MultipartUpload={"Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in parts]},
    )
    assert key("live") in s3.keys()
    assert run(shared.abort_abandoned_uploads()) == 0
