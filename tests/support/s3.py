"""A real S3 HTTP server (moto's ThreadedMotoServer) on 127.0.0.1 for tests.

    with S3Server() as s3:                       # or: s3 = S3Server().start(); ...; s3.stop()
        storage = Storage(s3.settings(storage_url_mode="signed"))
        s3.disconnect()   # outage: open connections are cut, new ones refused
        s3.reconnect()    # back on the same port, objects intact

Clients reach moto through a small TCP relay on ``s3.endpoint`` so an outage is real (moto's own
stop() leaves kept-alive connections served). Moto keeps its state per process, so each server
gets bucket names with a random suffix (``s3.bucket``, ``s3.preview_bucket``).

``s3.supabase_url`` (SUPABASE_URL in ``settings()``) serves Supabase's public object route,
``/storage/v1/object/public/<bucket>/<key>``, from moto: the object of a public bucket, else HTTP 400
with Supabase's JSON error (NoSuchKey for a missing key of a public bucket, NoSuchBucket for a
private one). Every bucket is public until ``s3.make_private(bucket)``.

ListMultipartUploads says when each upload began (``Initiated``), as S3 and Supabase do; moto alone
answers 2010-11-10 for every upload. ``s3.backdate_upload(bucket, upload_id, seconds)`` makes an
upload as old as one a process left behind long ago.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3 import models as moto_models
from moto.s3 import responses as moto_responses
from moto.server import ThreadedMotoServer

from worker.local.ports import free_port
from worker.storage import StorageSettings

ACCESS_KEY_ID = "test-access-key-id"
SECRET_ACCESS_KEY = "test-secret-access-key-DO-NOT-LEAK"
REGION = "us-east-1"


class _Relay:
    """TCP relay 127.0.0.1:port -> 127.0.0.1:target that can be cut and restored."""

    def __init__(self, port: int, target: int) -> None:
        self.port, self.target = port, target
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.05)
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


PUBLIC_ROUTE = "/storage/v1/object/public/"


class _PublicRoute:
    """Supabase's public object route in front of moto (see the module docstring)."""

    def __init__(self, s3: S3Server) -> None:
        route = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                status, body, content_type = route.answer(urlsplit(self.path).path)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._s3 = s3
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def answer(self, path: str) -> tuple[int, bytes, str]:
        bucket, _, key = unquote(path.removeprefix(PUBLIC_ROUTE)).partition("/")
        if not path.startswith(PUBLIC_ROUTE) or bucket not in self._s3.public_buckets:
            return _json_error("NoSuchBucket", "Bucket not found", "Bucket not found")
        try:
            obj = self._s3.client().get_object(Bucket=bucket, Key=key)
        except ClientError:
            return _json_error("NoSuchKey", "not_found", "Object not found")
        return 200, obj["Body"].read(), obj["ContentType"]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _json_error(code: str, error: str, message: str) -> tuple[int, bytes, str]:
    body = {"statusCode": "404", "code": code, "error": error, "message": message}
    return 400, json.dumps(body).encode(), "application/json"


def _moto_tells_when_uploads_began() -> None:
    """Each moto upload keeps its creation time and ListMultipartUploads reports it (moto's own
    answer is a constant, which would make every upload look years old)."""
    if getattr(moto_models.FakeMultipart, "_dated", False):
        return
    real_init = moto_models.FakeMultipart.__init__
    real_list = moto_responses.S3Response.list_multipart_uploads

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        self.initiated = datetime.now(UTC)

    def list_uploads(self: Any) -> Any:
        status, headers, body = real_list(self)
        uploads = self.backend.list_multipart_uploads(self.bucket_name)

        def dated(match: re.Match[str]) -> str:
            element = match.group(0)
            found = re.search(r"<UploadId>([^<]*)</UploadId>", element)
            upload = uploads.get(found.group(1)) if found else None
            if upload is None:
                return element
            stamp = upload.initiated.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            return re.sub(r"<Initiated>[^<]*</Initiated>", f"<Initiated>{stamp}</Initiated>", element)

        text = body.decode() if isinstance(body, bytes) else body
        text = re.sub(r"<Upload>.*?</Upload>", dated, text, flags=re.S)
        return status, headers, text.encode() if isinstance(body, bytes) else text

    moto_models.FakeMultipart.__init__ = init  # type: ignore[method-assign]
    moto_responses.S3Response.list_multipart_uploads = list_uploads  # type: ignore[method-assign]
    moto_models.FakeMultipart._dated = True  # type: ignore[attr-defined]


_moto_tells_when_uploads_began()


class S3Server:
    """Start/stop moto on a free 127.0.0.1 port, create buckets, hand out StorageSettings."""

    def __init__(self, buckets: tuple[str, ...] = ("audio-files", "audio-previews")) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.buckets = [f"{name}-{suffix}" for name in buckets]
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._moto_port = free_port()
        self._relay = _Relay(self.port, self._moto_port)
        self._server: ThreadedMotoServer | None = None
        self._public: _PublicRoute | None = None
        self.public_buckets = set(self.buckets)

    @property
    def bucket(self) -> str:
        return self.buckets[0]

    @property
    def preview_bucket(self) -> str:
        return self.buckets[-1]

    def start(self) -> S3Server:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self._moto_port, verbose=False)
        self._server.start()
        self._relay.start()
        self._wait_listening()
        for name in self.buckets:
            self.client().create_bucket(Bucket=name)
        self._public = _PublicRoute(self)
        return self

    @property
    def supabase_url(self) -> str:
        """SUPABASE_URL: serves the public object route (started with the server)."""
        assert self._public is not None, "start the server first"
        return self._public.url

    def make_private(self, bucket: str) -> None:
        """The bucket's public URLs answer "Bucket not found" from now on, like a private bucket's."""
        self.public_buckets.discard(bucket)

    def stop(self) -> None:
        if self._public is not None:
            self._public.stop()
            self._public = None
        self._relay.stop()
        if self._server is not None:
            self._server.stop()
            inner = getattr(self._server, "_server", None)  # moto's stop() leaves the socket bound
            if inner is not None:
                inner.server_close()
            self._server = None

    def start_upload(self, bucket: str, key: str) -> str:
        """An upload as a killed process leaves it: created, one part sent, never completed; its id."""
        client = self.client()
        upload_id: str = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"x" * 1000)
        return upload_id

    def uploads(self, bucket: str, prefix: str = "") -> list[str]:
        """The keys of the incomplete multipart uploads under ``prefix``, sorted."""
        listing = self.client().list_multipart_uploads(Bucket=bucket, Prefix=prefix)
        return sorted(u["Key"] for u in listing.get("Uploads", []))

    def backdate_upload(self, bucket: str, upload_id: str, seconds: float) -> None:
        """The incomplete upload ``upload_id`` began ``seconds`` earlier than it did."""
        upload = moto_models.s3_backends[DEFAULT_ACCOUNT_ID]["aws"].buckets[bucket].multiparts[upload_id]
        upload.initiated -= timedelta(seconds=seconds)

    def disconnect(self) -> None:
        """Outage: cut open connections and refuse new ones (objects are kept)."""
        self._relay.stop()

    def reconnect(self) -> None:
        """End the outage: accept connections again on the same endpoint."""
        self._relay.start()

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
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
        )

    def keys(self, bucket: str | None = None) -> list[str]:
        listing = self.client().list_objects_v2(Bucket=bucket or self.bucket)
        return sorted(o["Key"] for o in listing.get("Contents", []))

    def settings(self, **overrides: Any) -> StorageSettings:
        """StorageSettings pointing at this server; small parts and ms retry delays for tests."""
        values: dict[str, Any] = {
            "supabase_url": self.supabase_url,
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
