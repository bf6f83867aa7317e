"""Storage of rendered audio in Supabase Storage through its S3-compatible endpoint."""

from worker.storage.client import (
    CONTENT_TYPES,
    IncompleteUpload,
    Storage,
    StoredObject,
    content_type_for,
)
from worker.storage.quirks import ObjectNotFound, classify
from worker.storage.settings import StorageSettings, derive_s3_endpoint

__all__ = [
    "CONTENT_TYPES",
    "IncompleteUpload",
    "ObjectNotFound",
    "Storage",
    "StorageSettings",
    "StoredObject",
    "classify",
    "content_type_for",
    "derive_s3_endpoint",
]
