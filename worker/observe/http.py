"""A tiny GET-only HTTP server for ``/healthz`` and ``/metrics`` (stdlib asyncio, no framework).

``/healthz`` answers 200 ``{"status":"ok",...}`` when the claim loop iterated recently and the
database answers ``select 1`` within 2 s, else 503 with the reason. ``/metrics`` is the Prometheus
text format; the queue-depth gauges are read from the database during the scrape (2 s bound) and
are left out of that scrape when the read fails, the rest is always served.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from loguru import logger

from worker.logs import redact
from worker.observe.metrics import Metrics, QueueSnapshot

DB_CHECK_S = 2.0
READ_TIMEOUT_S = 5.0
CONTENT_TYPE_METRICS = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class HealthSource:
    """What the endpoint reads from the running worker."""

    worker_id: str
    last_loop: Callable[[], float]  # monotonic time of the claim loop's last iteration
    stale_after_s: float
    running_jobs: Callable[[], int]
    stopping: Callable[[], bool]
    ping: Callable[[], Awaitable[Any]]  # select 1 on the pool
    queue_depth: Callable[[], Awaitable[tuple[dict[str, int], float]]]


async def health(src: HealthSource) -> tuple[int, dict[str, Any]]:
    """The /healthz answer: (status code, JSON body)."""
    age = time.monotonic() - src.last_loop()
    body: dict[str, Any] = {
        "status": "ok",
        "worker_id": src.worker_id,
        "running_jobs": src.running_jobs(),
        "last_loop_s": round(age, 3),
    }
    if src.stopping():
        return 503, {**body, "status": "stopping", "reason": "shutting down"}
    if age > src.stale_after_s:
        return 503, {
            **body,
            "status": "unhealthy",
            "reason": f"claim loop has not run for {age:.1f}s (limit {src.stale_after_s:g}s)",
        }
    try:
        async with asyncio.timeout(DB_CHECK_S):
            await src.ping()
    except TimeoutError:
        return 503, {
            **body,
            "status": "unhealthy",
            "reason": f"database did not answer within {DB_CHECK_S:g}s",
        }
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return 503, {**body, "status": "unhealthy", "reason": f"database unreachable: {redact(first)}"}
    return 200, body


async def metrics_text(src: HealthSource, metrics: Metrics) -> bytes:
    try:
        async with asyncio.timeout(DB_CHECK_S):
            jobs, oldest = await src.queue_depth()
        metrics.queue.snapshot = QueueSnapshot(jobs=jobs, oldest_pending_seconds=oldest)
    except Exception as exc:
        metrics.queue.snapshot = None
        metrics.queue_errors.inc()
        logger.warning("metrics: queue depth not read: {}", redact(str(exc).strip() or type(exc).__name__))
    return metrics.exposition()


class HealthServer:
    def __init__(self, src: HealthSource, metrics: Metrics, host: str, port: int) -> None:
        self.src, self.metrics, self.host, self.port = src, metrics, host, port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]  # the real one when 0 was asked for
        logger.info("health endpoint on http://{}:{}/healthz and /metrics", self.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            try:
                async with asyncio.timeout(1):
                    await self._server.wait_closed()
            except TimeoutError:
                pass
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                request = await reader.readline()
                while await reader.readline() not in (b"\r\n", b"\n", b""):
                    pass
            parts = request.decode("latin-1").split()
            if len(parts) < 2:
                status, ctype, body = 400, "text/plain", b"bad request\n"
            elif parts[0] not in ("GET", "HEAD"):
                status, ctype, body = 405, "text/plain", b"GET only\n"
            else:
                path = parts[1].split("?", 1)[0]
                if path == "/healthz":
                    status, doc = await health(self.src)
                    ctype, body = "application/json", json.dumps(doc).encode() + b"\n"
                elif path == "/metrics":
                    status, ctype, body = (
                        200,
                        CONTENT_TYPE_METRICS,
                        await metrics_text(self.src, self.metrics),
                    )
                else:
                    status, ctype, body = 404, "text/plain", b"not found: try /healthz or /metrics\n"
            reason = {
                200: "OK",
                400: "Bad Request",
                404: "Not Found",
                405: "Method Not Allowed",
                503: "Service Unavailable",
            }[status]
            head = (
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
            writer.write(head + (b"" if parts and parts[0] == "HEAD" else body))
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        except Exception as exc:
            logger.warning("health endpoint: {}", redact(f"{type(exc).__name__}: {exc}"))
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except Exception:
                pass
