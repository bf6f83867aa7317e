"""A local S3 server (moto) on 127.0.0.1: the demo's stand-in for Supabase Storage."""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import boto3
from botocore.config import Config

from worker.local.ports import free_port

ACCESS_KEY_ID = "local-demo-key-id"
MOTO_MISSING = (
    "the local S3 server needs moto, a development dependency: run `uv sync` in a checkout "
    "(it installs the dev group), or set SUPABASE_URL or STORAGE_S3_ENDPOINT to use real storage"
)
SECRET_ACCESS_KEY = "local-demo-secret"  # a local moto server accepts any key
REGION = "us-east-1"


class LocalS3:
    """moto's ThreadedMotoServer in this process on a free 127.0.0.1 port, with buckets created.

    ``env()`` is the storage configuration a worker process needs to use it (presigned URLs).
    """

    def __init__(self, buckets: tuple[str, str] = ("audio-files", "audio-previews")) -> None:
        self.buckets = buckets
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server: Any = None

    def start(self) -> LocalS3:
        """Start the server and create the buckets. RuntimeError when moto is not installed
        (it is a development dependency: Heroku's build leaves the dev group out of the slug)."""
        try:
            from moto.server import ThreadedMotoServer
        except ImportError:
            raise RuntimeError(MOTO_MISSING) from None

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"the local S3 server did not listen on 127.0.0.1:{self.port}"
                    ) from None
                time.sleep(0.05)
        client = self.client()
        for name in self.buckets:
            client.create_bucket(Bucket=name)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()
            inner = getattr(server, "_server", None)  # moto's stop() leaves the socket bound
            if inner is not None:
                inner.server_close()

    def client(self) -> Any:
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            config=Config(s3={"addressing_style": "path"}),
        )

    def env(self) -> dict[str, str]:
        """Storage environment variables pointing a worker at this server."""
        return {
            "STORAGE_S3_ENDPOINT": self.endpoint,
            "STORAGE_S3_REGION": REGION,
            "STORAGE_S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "STORAGE_S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "SUPABASE_STORAGE_BUCKET": self.buckets[0],
            "STORAGE_PREVIEW_BUCKET": self.buckets[1],
            "STORAGE_URL_MODE": "signed",
        }
