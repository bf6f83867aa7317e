"""``FakeServer``: a scriptable, recording HTTP server on loopback (127.0.0.1 unless ``bind_host``)
in a background thread."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


@dataclass
class Reply:
    """One scripted answer.

    ``body``: bytes sent as is, or a dict/list sent as JSON; None on a 2xx means "the fake's
    normal audio". ``delay``: seconds to wait before answering (slow API). ``truncate``: announce
    the full Content-Length, send half the body and close (a cut connection).
    """

    status: int = 200
    body: bytes | dict[str, Any] | list[Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None
    retry_after: float | str | None = None
    delay: float = 0.0
    truncate: bool = False


@dataclass
class RecordedRequest:
    """What the fake received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        """The fields of a multipart/form-data body."""
        ctype = self.headers.get("content-type", "")
        msg = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + self.body)
        if not msg.is_multipart():
            raise ValueError(f"not multipart: {ctype!r}")
        out = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            out[str(name)] = part.get_payload(decode=True).decode("utf-8")
        return out


class _Server(ThreadingHTTPServer):
    # Several worker processes connect at once: the default backlog of 5 refuses some of them.
    request_queue_size = 128


class FakeServer:
    """Base fake. Subclasses override ``respond`` (the API's normal behaviour) and ``env``;
    ``bind_host`` may be another loopback address (127.0.0.2) for tests that need two hosts."""

    bind_host = "127.0.0.1"

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._script: deque[Reply] = deque()
        self._always: Reply | None = None
        self._lock = threading.Lock()
        self._received = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        # The account's limits as the real API counts them (None: unlimited). A request over
        # either is recorded in ``excess``; ``peak_in_flight`` is the most answered at once.
        self.max_concurrent: int | None = None
        self.max_per_window: tuple[int, float] | None = None
        self.in_flight = 0
        self.peak_in_flight = 0
        self.excess: list[str] = []
        self._starts: deque[float] = deque()

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> Self:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                req = RecordedRequest(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                with fake._lock:
                    fake.requests.append(req)
                    scripted = fake._script.popleft() if fake._script else fake._always
                    fake._count_start()
                    fake._received.notify_all()
                try:
                    reply = scripted or fake.respond(req)
                    fake._send(self, req, reply)
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

            do_POST = do_GET = do_PUT = _serve

        self._stopping.clear()
        self._httpd = _Server((self.bind_host, 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=type(self).__name__,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start() the fake first"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # -- scripting ------------------------------------------------------------------------
    def script(self, *replies: Reply) -> None:
        """Queue replies; each request consumes one, then normal behaviour resumes."""
        with self._lock:
            self._script.extend(replies)

    def always(self, reply: Reply | None) -> None:
        """Answer every request (after the queued script) with ``reply``; None restores normal behaviour."""
        with self._lock:
            self._always = reply

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """Block until at least ``n`` requests arrived (for tests driving a worker subprocess)."""
        with self._received:
            if not self._received.wait_for(lambda: len(self.requests) >= n, timeout):
                raise TimeoutError(
                    f"{type(self).__name__}: {len(self.requests)} of {n} requests after {timeout}s"
                )
            return list(self.requests)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._script.clear()
            self._always = None

    api_key = ""  # the key a provider fake accepts (placeholder)

    def env(self) -> dict[str, str]:
        """Environment variables that point the worker at this fake."""
        return {}

    @staticmethod
    def error_body(message: str, code: str) -> dict[str, Any]:
        """An error body of the faked API carrying ``message`` and ``code``; overridden by subclasses."""
        return {"error": message, "code": code}

    def respond(self, req: RecordedRequest) -> Reply:
        """Normal behaviour of the API; overridden by subclasses."""
        return Reply(404, {"error": "not found"})

    def audio_reply(self, req: RecordedRequest) -> bytes:
        """The audio a 2xx Reply with ``body=None`` serves; overridden by subclasses."""
        return b""

    def _count_start(self) -> None:
        """Book one request against the account's limits (caller holds the lock)."""
        now = time.monotonic()
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        if self.max_concurrent is not None and self.in_flight > self.max_concurrent:
            self.excess.append(f"{self.in_flight} requests at once (limit {self.max_concurrent})")
        if self.max_per_window is not None:
            limit, window = self.max_per_window
            while self._starts and self._starts[0] <= now - window:
                self._starts.popleft()
            self._starts.append(now)
            if len(self._starts) > limit:
                self.excess.append(f"{len(self._starts)} requests within {window} s (limit {limit})")

    # -- sending --------------------------------------------------------------------------
    def _send(self, handler: BaseHTTPRequestHandler, req: RecordedRequest, reply: Reply) -> None:
        if reply.delay and self._stopping.wait(reply.delay):
            return
        headers = dict(reply.headers)
        body = reply.body
        if body is None:
            body = self.audio_reply(req) if reply.status < 300 else b""
            headers.setdefault("Content-Type", reply.content_type or "audio/mpeg")
        elif isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", reply.content_type or "application/json")
        elif reply.content_type:
            headers.setdefault("Content-Type", reply.content_type)
        if reply.content_type:
            headers["Content-Type"] = reply.content_type
        if reply.retry_after is not None:
            headers["Retry-After"] = str(reply.retry_after)
        try:
            handler.send_response(reply.status)
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(body)))
            if reply.truncate:
                handler.send_header("Connection", "close")
            handler.end_headers()
            handler.wfile.write(body[: len(body) // 2] if reply.truncate else body)
            handler.wfile.flush()
            if reply.truncate:
                handler.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)
