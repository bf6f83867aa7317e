"""Storage settings, read from the environment (``STORAGE_*`` and ``SUPABASE_*``)."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.storage.quirks import SINGLE_UPLOAD_LIMIT_MB

_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9._/-]*$")
_HOSTED_RE = re.compile(r"^(?P<ref>[a-z0-9]+)\.supabase\.(?P<tld>co|in|red)$")


def derive_s3_endpoint(supabase_url: str) -> str:
    """``https://<ref>.supabase.co`` -> ``https://<ref>.storage.supabase.co/storage/v1/s3``.

    Any other URL (self-hosted, ``supabase start`` on 127.0.0.1) gets ``/storage/v1/s3`` appended.
    """
    parts = urlsplit(supabase_url)
    match = _HOSTED_RE.match(parts.hostname or "")
    if match and not parts.path.strip("/"):
        return f"https://{match['ref']}.storage.supabase.{match['tld']}/storage/v1/s3"
    return f"{supabase_url.rstrip('/')}/storage/v1/s3"


def _http_url(value: str | None, name: str) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{name} must be an http(s) URL, got {value!r}")
    return value


class StorageSettings(BaseSettings):
    """Where and how rendered files are stored. Field names are the env var names, lowercased."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    supabase_url: str | None = Field(
        None, description="Project URL (https://<ref>.supabase.co); builds public URLs and the S3 endpoint."
    )
    storage_s3_endpoint: str | None = Field(
        None, description="S3 endpoint; derived from SUPABASE_URL when unset (one of the two is required)."
    )
    storage_s3_region: str = Field(
        "us-east-1",
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9-]+$",
        description="Region shown on Supabase's S3 Connection page.",
    )
    storage_s3_access_key_id: str = Field(
        "", description="S3 access key id (Storage -> S3 Connection -> Access keys)."
    )
    storage_s3_secret_access_key: SecretStr = Field(
        SecretStr(""), description="S3 secret access key; never printed."
    )
    supabase_storage_bucket: str = Field("audio-files", description="Bucket for masters.")
    storage_preview_bucket: str | None = Field(
        None, description="Bucket for previews; the master bucket when unset."
    )
    storage_path_prefix: str = Field(
        "generated", description="Key prefix: keys are {prefix}/{job_id}_{timestamp}.{ext}."
    )
    storage_url_mode: Literal["public", "signed"] = Field(
        "public", description="public object URLs (public bucket) or presigned URLs."
    )
    storage_signed_url_ttl_s: int = Field(604800, ge=60, le=604800, description="Lifetime of presigned URLs.")
    storage_multipart_threshold_mb: int = Field(
        25,
        ge=5,
        le=SINGLE_UPLOAD_LIMIT_MB,
        description="Files above this many MiB go multipart (Supabase takes at most 50 MiB in one request).",
    )
    storage_multipart_part_mb: int = Field(16, ge=5, le=512, description="Multipart part size in MiB.")
    storage_multipart_concurrency: int = Field(4, ge=1, le=16, description="Parts uploaded at once.")
    storage_upload_attempts: int = Field(
        4, ge=1, le=10, description="Attempts per S3 call before the job is retried later."
    )
    storage_retry_delay_ms: int = Field(
        1000, ge=0, le=60000, description="First retry delay; doubles each time, capped at 30 s."
    )
    storage_connect_timeout_s: float = Field(10.0, gt=0, le=300, description="Connect timeout of S3 calls.")
    storage_read_timeout_s: float = Field(60.0, gt=0, le=3600, description="Read timeout of S3 calls.")

    # --- the provider cache's second level ------------------------------------------------
    provider_cache_shared: bool = Field(
        True,
        description="Share paid provider audio between dynos in Storage (the provider cache's second "
        "level; needs PROVIDER_CACHE_ENABLED).",
    )
    provider_cache_bucket: str | None = Field(
        None,
        description="Bucket of the shared provider cache; the master bucket when unset (may be private).",
    )
    provider_cache_prefix: str = Field(
        "provider-cache", description="Key prefix of the shared provider cache: {prefix}/{k[:2]}/{k}.{ext}."
    )
    provider_cache_wait_s: float = Field(
        900.0,
        ge=0,
        le=7200,
        description="How long an identical request waits for the worker paying for it before paying "
        "itself; 0 = no fleet-wide lock.",
    )

    @field_validator("supabase_url")
    @classmethod
    def _check_supabase_url(cls, value: str | None) -> str | None:
        return _http_url(value, "SUPABASE_URL")

    @field_validator("storage_s3_endpoint")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        return _http_url(value, "STORAGE_S3_ENDPOINT")

    @field_validator("storage_preview_bucket", "provider_cache_bucket", mode="before")
    @classmethod
    def _blank_bucket_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("supabase_storage_bucket", "storage_preview_bucket", "provider_cache_bucket")
    @classmethod
    def _check_bucket(cls, value: str | None) -> str | None:
        if value is not None and not _BUCKET_RE.match(value):
            raise ValueError(f"bucket name {value!r}: use letters, digits, '.', '_' or '-' (1-100 chars)")
        return value

    @field_validator("storage_path_prefix", "provider_cache_prefix")
    @classmethod
    def _check_prefix(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip().strip("/")
        if not _PREFIX_RE.match(value) or ".." in value.split("/") or "//" in value:
            name = str(info.field_name).upper()
            raise ValueError(f"{name} {value!r}: use letters, digits, '.', '_', '-' and '/'")
        return value

    @model_validator(mode="after")
    def _derive(self) -> StorageSettings:
        if self.storage_s3_endpoint is None:
            if self.supabase_url is None:
                raise ValueError("set SUPABASE_URL or STORAGE_S3_ENDPOINT")
            self.storage_s3_endpoint = derive_s3_endpoint(self.supabase_url)
        if self.storage_url_mode == "public" and self.supabase_url is None:
            raise ValueError("STORAGE_URL_MODE=public needs SUPABASE_URL (or use STORAGE_URL_MODE=signed)")
        return self

    @property
    def endpoint(self) -> str:
        """The S3 endpoint, explicit or derived from SUPABASE_URL."""
        assert self.storage_s3_endpoint is not None
        return self.storage_s3_endpoint

    @property
    def master_bucket(self) -> str:
        return self.supabase_storage_bucket

    @property
    def preview_bucket(self) -> str:
        """The preview bucket; the master bucket when STORAGE_PREVIEW_BUCKET is unset."""
        return self.storage_preview_bucket or self.supabase_storage_bucket

    @property
    def provider_cache_bucket_name(self) -> str:
        """The shared provider cache's bucket; the master bucket when PROVIDER_CACHE_BUCKET is unset."""
        return self.provider_cache_bucket or self.supabase_storage_bucket

    @property
    def multipart_threshold(self) -> int:
        return self.storage_multipart_threshold_mb * 1024 * 1024

    @property
    def part_size(self) -> int:
        return self.storage_multipart_part_mb * 1024 * 1024
