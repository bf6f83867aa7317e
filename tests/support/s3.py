"""A real S3 HTTP server (moto's ThreadedMotoServer) on 127.0.0.1 for tests.

    with S3Server() as s3:                       # or: s3 = S3Server().start(); ...; s3.stop()
        storage = Storage(s3.settings(storage_url_mode="signed"))

Moto keeps its state per process, so each server gets bucket names with a random suffix
(``s3.bucket``, ``s3.preview_bucket``) and tests never see each other's objects. ``stop()`` then
``start()`` again simulates an outage: the port stays the same and the objects survive.
"""

from __future__ import annotations

import socket
import time
import uuid
from typing import Any

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

from worker.storage import StorageSettings

ACCESS_KEY_ID = "test-access-key-id"
SECRET_ACCESS_KEY = "test-secret-access-key-DO-NOT-LEAK"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class S3Server:
    """Start/stop moto on a free 127.0.0.1 port, create buckets, hand out StorageSettings."""

    def __init__(self, buckets: tuple[str, ...] = ("audio-files", "audio-previews")) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.buckets = [f"{name}-{suffix}" for name in buckets]
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server: ThreadedMotoServer | None = None
        self._created = False

    @property
    def bucket(self) -> str:
        return self.buckets[0]

    @property
    def preview_bucket(self) -> str:
        return self.buckets[-1]

    def start(self) -> S3Server:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        self._wait_listening()
        if not self._created:
            for name in self.buckets:
                self.client().create_bucket(Bucket=name)
            self._created = True
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"moto server did not listen on 127.0.0.1:{self.port}")

    def client(self) -> Any:
        """A plain boto3 client on the server, for arranging and inspecting state."""
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
        )

    def keys(self, bucket: str | None = None) -> list[str]:
        listing = self.client().list_objects_v2(Bucket=bucket or self.bucket)
        return sorted(o["Key"] for o in listing.get("Contents", []))

    def settings(self, **overrides: Any) -> StorageSettings:
        """StorageSettings pointing at this server; small parts and ms retry delays for tests."""
        values: dict[str, Any] = {
            "supabase_url": "https://example-ref.supabase.co",
            "storage_s3_endpoint": self.endpoint,
            "storage_s3_region": REGION,
            "storage_s3_access_key_id": ACCESS_KEY_ID,
            "storage_s3_secret_access_key": SECRET_ACCESS_KEY,
            "supabase_storage_bucket": self.bucket,
            "storage_preview_bucket": self.preview_bucket,
            "storage_multipart_threshold_mb": 5,
            "storage_multipart_part_mb": 5,
            "storage_multipart_concurrency": 2,
            "storage_upload_attempts": 3,
            "storage_retry_delay_ms": 20,
            "storage_connect_timeout_s": 2,
            "storage_read_timeout_s": 10,
        }
        values.update(overrides)
        return StorageSettings(_env_file=None, **values)
