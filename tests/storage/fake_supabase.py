"""A tiny stdlib S3 server on 127.0.0.1 that behaves like Supabase Storage where moto does not.

- errors are ``<Error xmlns="http://s3.amazonaws.com/doc/2006-03-01/">`` (botocore reads no code);
- single PUTs above ``max_put_bytes`` get 413 EntityTooLarge (or an HTML 413 from a "proxy");
- DeleteObjects / CompleteMultipartUpload bodies are ignored unless Content-Type is application/xml;
- an object sent without Content-Type is stored as application/octet-stream;
- requests signed with another access key id get 403 AccessDenied.
It keeps objects in memory and records every request as (method, path, query, content-type).
"""

from __future__ import annotations

import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

NS = "http://s3.amazonaws.com/doc/2006-03-01/"


def error_xml(code: str, message: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Error xmlns="{NS}"><Code>{code}</Code>'
        f"<Message>{message}</Message></Error>"
    ).encode()


class FakeSupabaseS3:
    def __init__(
        self,
        *,
        buckets: tuple[str, ...] = ("audio-files",),
        access_key_id: str = "test-access-key-id",
        max_put_bytes: int = 50 * 1024 * 1024,
        html_413: bool = False,
        max_object_bytes: int | None = None,
    ) -> None:
        self.objects: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.buckets = set(buckets)
        self.access_key_id = access_key_id
        self.max_put_bytes = max_put_bytes
        self.html_413 = html_413
        self.max_object_bytes = max_object_bytes  # the plan's file size limit, multipart included
        self.uploads: dict[str, dict[int, bytes]] = {}
        self.upload_types: dict[str, str] = {}
        self.requests: list[tuple[str, str, str, str | None]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeSupabaseS3:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def handle_expect_100(self) -> bool:
                length = int(self.headers.get("Content-Length") or 0)
                if self.command == "PUT" and "uploadId" not in self.path and length > fake.max_put_bytes:
                    parts = urlsplit(self.path)
                    fake.requests.append(
                        (self.command, parts.path, parts.query, self.headers.get("Content-Type"))
                    )
                    self.too_large()
                    self.close_connection = True
                    return False
                return super().handle_expect_100()

            def too_large(self) -> None:
                if fake.html_413:
                    self.reply(
                        413,
                        b"<html><body><h1>413 Request Entity Too Large</h1></body></html>",
                        {"Content-Type": "text/html"},
                    )
                else:
                    self.reply(
                        413,
                        error_xml("EntityTooLarge", "The object exceeded the maximum allowed size"),
                        {"Content-Type": "application/xml"},
                    )

            def handle_one(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query, keep_blank_values=True)
                bucket, _, key = unquote(parts.path).lstrip("/").partition("/")
                length = int(self.headers.get("Content-Length") or 0)
                content_type = self.headers.get("Content-Type")
                fake.requests.append((self.command, parts.path, parts.query, content_type))
                if self.command == "PUT" and "uploadId" not in query and length > fake.max_put_bytes:
                    self.too_large()
                    self.close_connection = True
                    return
                body = self.rfile.read(length) if length else b""
                if f"Credential={fake.access_key_id}/" not in self.headers.get("Authorization", ""):
                    return self.reply(403, error_xml("AccessDenied", "Invalid signature"))
                if bucket not in fake.buckets:
                    return self.reply(
                        404, b"" if self.command == "HEAD" else error_xml("NoSuchBucket", "Bucket not found")
                    )
                xml = (content_type or "").startswith("application/xml")
                if self.command == "HEAD" and not key:
                    return self.reply(200)
                if self.command == "POST" and "delete" in query:
                    for gone in re.findall(rb"<Key>(.*?)</Key>", body if xml else b""):
                        fake.objects.pop((bucket, gone.decode()), None)
                    return self.reply(200, f'<DeleteResult xmlns="{NS}"></DeleteResult>'.encode())
                if self.command == "POST" and "uploads" in query:
                    upload_id = uuid.uuid4().hex
                    fake.uploads[upload_id] = {}
                    fake.upload_types[upload_id] = content_type or "application/octet-stream"
                    return self.reply(
                        200,
                        (
                            f'<InitiateMultipartUploadResult xmlns="{NS}"><Bucket>{bucket}</Bucket>'
                            f"<Key>{key}</Key><UploadId>{upload_id}</UploadId>"
                            "</InitiateMultipartUploadResult>"
                        ).encode(),
                    )
                upload_id = query.get("uploadId", [None])[0]
                if upload_id is not None and upload_id not in fake.uploads:
                    return self.reply(404, error_xml("NoSuchUpload", "Upload not found"))
                if self.command == "PUT" and upload_id:
                    fake.uploads[upload_id][int(query["partNumber"][0])] = body
                    total = sum(len(b) for b in fake.uploads[upload_id].values())
                    if fake.max_object_bytes is not None and total > fake.max_object_bytes:
                        return self.reply(
                            413, error_xml("EntityTooLarge", "The object exceeded the maximum allowed size")
                        )
                    return self.reply(200, headers={"ETag": f'"{uuid.uuid4().hex}"'})
                if self.command == "POST" and upload_id:
                    numbers = [
                        int(n) for n in re.findall(rb"<PartNumber>(\d+)</PartNumber>", body if xml else b"")
                    ]
                    if not numbers:
                        return self.reply(400, error_xml("InvalidRequest", "No parts given"))
                    parts_ = fake.uploads.pop(upload_id)
                    fake.objects[(bucket, key)] = (
                        b"".join(parts_[n] for n in numbers),
                        fake.upload_types.pop(upload_id),
                    )
                    return self.reply(
                        200,
                        (
                            f'<CompleteMultipartUploadResult xmlns="{NS}"><Key>{key}</Key>'
                            '<ETag>"x"</ETag></CompleteMultipartUploadResult>'
                        ).encode(),
                    )
                if self.command == "DELETE" and upload_id:
                    fake.uploads.pop(upload_id, None)
                    return self.reply(204)
                if self.command == "PUT":
                    fake.objects[(bucket, key)] = (body, content_type or "application/octet-stream")
                    return self.reply(200, headers={"ETag": f'"{uuid.uuid4().hex}"'})
                if self.command in {"GET", "HEAD"} and (bucket, key) in fake.objects:
                    data, stored_type = fake.objects[(bucket, key)]
                    return self.reply(200, data, {"Content-Type": stored_type})
                return self.reply(404, error_xml("NoSuchKey", "Object not found"))

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_one

        return Handler
