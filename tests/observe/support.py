"""Shared helpers: a free port, an HTTP GET, and a webhook receiver on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def get(url: str, timeout: float = 5) -> tuple[int, str, str]:
    """(status, content type, body) of a GET; HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.headers.get("content-type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type", ""), e.read().decode()


@dataclass
class Delivery:
    at: float
    headers: dict[str, str]
    raw: bytes
    status: int | None = None  # the answer, once sent

    @property
    def body(self) -> dict:
        return json.loads(self.raw)


@dataclass
class Receiver:
    """Answers each POST with the next of ``statuses`` (then 200); ``hang`` holds every answer."""

    statuses: list[int] = field(default_factory=list)
    hang: threading.Event | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=abc"

    def start(self) -> Receiver:
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                d = Delivery(time.monotonic(), dict(self.headers.items()), raw)
                rec.deliveries.append(d)
                if rec.hang is not None:
                    rec.hang.wait(30)
                try:  # pop alone: the test may empty the list meanwhile
                    status = rec.statuses.pop(0)
                except IndexError:
                    status = 200
                d.status = status
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.hang is not None:
            self.hang.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
