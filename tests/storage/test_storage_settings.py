"""Storage settings: env names, defaults, derived endpoint, validation, no secret in repr."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from worker.storage import Storage, StorageSettings

pytestmark = pytest.mark.timeout(30)
ENV = (
    "SUPABASE_URL",
    "STORAGE_S3_ENDPOINT",
    "STORAGE_S3_REGION",
    "STORAGE_S3_ACCESS_KEY_ID",
    "STORAGE_S3_SECRET_ACCESS_KEY",
    "SUPABASE_STORAGE_BUCKET",
    "STORAGE_PREVIEW_BUCKET",
    "STORAGE_PATH_PREFIX",
    "STORAGE_URL_MODE",
    "STORAGE_SIGNED_URL_TTL_S",
    "STORAGE_MULTIPART_THRESHOLD_MB",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def test_defaults_from_env_and_derived_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPABASE_URL", "https://abcdefghij.supabase.co/")
    monkeypatch.setenv("STORAGE_S3_ACCESS_KEY_ID", "key-id")
    monkeypatch.setenv("STORAGE_S3_SECRET_ACCESS_KEY", "top-secret-value")
    settings = StorageSettings()
    assert settings.endpoint == "https://abcdefghij.storage.supabase.co/storage/v1/s3"
    assert (settings.master_bucket, settings.preview_bucket) == ("audio-files", "audio-files")
    assert settings.storage_path_prefix == "generated" and settings.storage_url_mode == "public"
    assert settings.multipart_threshold == 25 * 1024 * 1024 < 50 * 1000 * 1000
    assert "top-secret-value" not in repr(settings) + str(settings) + repr(Storage(settings))
    assert "top-secret-value" not in settings.model_dump_json()


def test_self_hosted_url_and_explicit_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPABASE_URL", "http://127.0.0.1:54321")
    assert StorageSettings().endpoint == "http://127.0.0.1:54321/storage/v1/s3"
    monkeypatch.setenv("STORAGE_S3_ENDPOINT", "https://ref.storage.supabase.co/storage/v1/s3/")
    monkeypatch.setenv("STORAGE_PREVIEW_BUCKET", "previews")
    settings = StorageSettings()
    assert settings.endpoint == "https://ref.storage.supabase.co/storage/v1/s3"
    assert settings.preview_bucket == "previews"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({}, "set SUPABASE_URL or STORAGE_S3_ENDPOINT"),
        ({"storage_s3_endpoint": "http://s3.local"}, "needs SUPABASE_URL"),
        ({"supabase_url": "ftp://x"}, r"http\(s\) URL"),
        ({"supabase_url": "https://r.supabase.co", "storage_url_mode": "presigned"}, "public"),
        (
            {"supabase_url": "https://r.supabase.co", "storage_multipart_threshold_mb": 4},
            "greater than or equal to 5",
        ),
        (  # above Supabase's 50 MiB single-request limit a file must go multipart
            {"supabase_url": "https://r.supabase.co", "storage_multipart_threshold_mb": 51},
            "less than or equal to 50",
        ),
        ({"supabase_url": "https://r.supabase.co", "storage_signed_url_ttl_s": 604801}, "less than or equal"),
        (
            {"supabase_url": "https://r.supabase.co", "storage_upload_attempts": 0},
            "greater than or equal to 1",
        ),
        ({"supabase_url": "https://r.supabase.co", "supabase_storage_bucket": "bad/bucket"}, "bucket name"),
        ({"supabase_url": "https://r.supabase.co", "storage_path_prefix": "a/../b"}, "STORAGE_PATH_PREFIX"),
    ],
)
def test_invalid_settings_are_refused_with_a_reason(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        StorageSettings(**overrides)  # type: ignore[arg-type]
