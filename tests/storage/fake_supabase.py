"""A tiny stdlib S3 server on 127.0.0.1 that behaves like Supabase Storage where moto does not.

Checked against supabase/storage (src/http/routes/s3, src/internal/errors/codes.ts):
- errors are ``<Error xmlns="http://s3.amazonaws.com/doc/2006-03-01/">`` (botocore reads no code);
- single PUTs above ``max_put_bytes`` get 413 EntityTooLarge (or an HTML 413 from a "proxy");
- DeleteObjects without ``Content-Type: application/xml`` is a 400 InvalidRequest (its body is not
  read); CompleteMultipartUpload without it is a 200 that assembles every uploaded part;
- a bucket with allowed MIME types answers 415 InvalidMimeType to any other Content-Type, at
  PutObject and at CreateMultipartUpload;
- an object sent without Content-Type is stored as application/octet-stream;
- requests signed with another access key id get 403 AccessDenied; presigned GETs (credential in
  the query) are served;
- the S3 API is at ``/storage/v1/s3`` (also at ``/``), the public route at
  ``/storage/v1/object/public/<bucket>/<key>``: a public bucket's object, else HTTP 400 with a JSON
  body: ``NoSuchKey`` for a missing key of a public bucket, ``NoSuchBucket`` ("Bucket not found")
  for any key of a private or missing bucket;
- ListMultipartUploads (``?uploads&prefix=``) lists incomplete uploads; AbortMultipartUpload drops one.
It keeps objects in memory and records every request as (method, path, query, content-type).
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
S3_ROUTE = "/storage/v1/s3"
PUBLIC_ROUTE = "/storage/v1/object/public/"


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
        public_buckets: tuple[str, ...] = (),
        allowed_mime_types: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.objects: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.buckets = set(buckets)
        self.access_key_id = access_key_id
        self.max_put_bytes = max_put_bytes
        self.html_413 = html_413
        self.max_object_bytes = max_object_bytes  # the plan's file size limit, multipart included
        self.public_buckets = set(public_buckets)
        self.allowed_mime_types = dict(allowed_mime_types or {})
        self.uploads: dict[str, dict[int, bytes]] = {}
        self.upload_types: dict[str, str] = {}
        self.upload_keys: dict[str, tuple[str, str]] = {}
        self.requests: list[tuple[str, str, str, str | None]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"  # SUPABASE_URL
        self.endpoint = f"{self.url}/storage/v1/s3"
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

            def public(self, path: str) -> None:
                bucket, _, key = unquote(path).partition("/")
                if bucket not in fake.buckets or bucket not in fake.public_buckets:
                    return self.json_error("NoSuchBucket", "Bucket not found", "Bucket not found")
                if (bucket, key) not in fake.objects:
                    return self.json_error("NoSuchKey", "not_found", "Object not found")
                data, stored_type = fake.objects[(bucket, key)]
                return self.reply(200, data, {"Content-Type": stored_type})

            def json_error(self, code: str, error: str, message: str) -> None:
                # Supabase's REST routes answer a StorageBackendError with HTTP 400 (500 stays 500)
                body = {"statusCode": "404", "code": code, "error": error, "message": message}
                self.reply(400, json.dumps(body).encode(), {"Content-Type": "application/json"})

            def signed_by(self, query: dict[str, list[str]]) -> str:
                credential = query.get("X-Amz-Credential", [""])[0]  # a presigned URL
                return f"Credential={credential}" if credential else self.headers.get("Authorization", "")

            def handle_one(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query, keep_blank_values=True)
                if parts.path.startswith(PUBLIC_ROUTE):
                    fake.requests.append((self.command, parts.path, parts.query, None))
                    return self.public(parts.path.removeprefix(PUBLIC_ROUTE))
                bucket, _, key = unquote(parts.path.removeprefix(S3_ROUTE)).lstrip("/").partition("/")
                length = int(self.headers.get("Content-Length") or 0)
                content_type = self.headers.get("Content-Type")
                fake.requests.append((self.command, parts.path, parts.query, content_type))
                if self.command == "PUT" and "uploadId" not in query and length > fake.max_put_bytes:
                    self.too_large()
                    self.close_connection = True
                    return
                body = self.rfile.read(length) if length else b""
                if f"Credential={fake.access_key_id}/" not in self.signed_by(query):
                    return self.reply(403, error_xml("AccessDenied", "Invalid signature"))
                if bucket not in fake.buckets:
                    return self.reply(
                        404, b"" if self.command == "HEAD" else error_xml("NoSuchBucket", "Bucket not found")
                    )
                xml = (content_type or "").startswith("application/xml")
                if self.command == "HEAD" and not key:
                    return self.reply(200)
                if self.command == "POST" and "delete" in query:
                    if not xml:
                        return self.reply(400, error_xml("InvalidRequest", "Invalid request body"))
                    for gone in re.findall(rb"<Key>(.*?)</Key>", body):
                        fake.objects.pop((bucket, gone.decode()), None)
                    return self.reply(200, f'<DeleteResult xmlns="{NS}"></DeleteResult>'.encode())
                allowed = fake.allowed_mime_types.get(bucket)
                creates = self.command == "PUT" and "uploadId" not in query
                if allowed and (creates or (self.command == "POST" and "uploads" in query)):
                    if (content_type or "application/octet-stream") not in allowed:
                        return self.reply(
                            415, error_xml("InvalidMimeType", f"mime type {content_type} is not supported")
                        )
                if self.command == "GET" and "uploads" in query:
                    prefix = query.get("prefix", [""])[0]
                    listed = "".join(
                        f"<Upload><Key>{k}</Key><UploadId>{u}</UploadId></Upload>"
                        for u, (b, k) in list(fake.upload_keys.items())
                        if b == bucket and k.startswith(prefix)
                    )
                    return self.reply(
                        200,
                        (
                            f'<ListMultipartUploadsResult xmlns="{NS}"><Bucket>{bucket}</Bucket>'
                            f"<IsTruncated>false</IsTruncated>{listed}</ListMultipartUploadsResult>"
                        ).encode(),
                    )
                if self.command == "POST" and "uploads" in query:
                    upload_id = uuid.uuid4().hex
                    fake.uploads[upload_id] = {}
                    fake.upload_types[upload_id] = content_type or "application/octet-stream"
                    fake.upload_keys[upload_id] = (bucket, key)
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
                    parts_ = fake.uploads.pop(upload_id)
                    fake.upload_keys.pop(upload_id, None)
                    # without application/xml the body is not read: every uploaded part is assembled
                    numbers = [int(n) for n in re.findall(rb"<PartNumber>(\d+)</PartNumber>", body)]
                    if not xml or not numbers:
                        numbers = sorted(parts_)
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
                    fake.upload_keys.pop(upload_id, None)
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
