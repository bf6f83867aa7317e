"""``python -m worker web``: the operator dashboard (and HireFire's endpoint) on PORT.

On a Heroku web dyno (PORT set) it binds 0.0.0.0:$PORT; elsewhere DASHBOARD_HOST:DASHBOARD_PORT
(127.0.0.1:8080). It refuses to start without DASHBOARD_PASSWORD or DASHBOARD_ACCOUNTS.
"""

from __future__ import annotations

import argparse
import asyncio
import socket

import uvicorn
from loguru import logger
from pydantic import ValidationError

from worker import logs
from worker.config import load_settings, load_worker_settings
from worker.providers.settings import ProviderSettings
from worker.queue.db.connect import plan_connections, safe_dsn
from worker.render.settings import RenderSettings
from worker.storage.client import Storage
from worker.storage.settings import StorageSettings
from worker.web.app import create_app
from worker.web.settings import DashboardSettings


def _storage() -> tuple[Storage | None, list[str]]:
    """The storage client for preview URLs, or None when storage is not configured; its secrets."""
    try:
        settings = StorageSettings()
    except ValidationError:
        return None, []
    secret = settings.storage_s3_secret_access_key.get_secret_value()
    if not settings.storage_s3_access_key_id or not secret:
        return None, [secret] if secret else []
    return Storage(settings), [secret]


def _provider_secrets() -> list[str]:
    try:
        return ProviderSettings().secrets()
    except ValidationError:
        return []


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m worker web", description=__doc__)
    ap.parse_args(argv)
    worker_settings = load_worker_settings()
    settings = load_settings(DashboardSettings)
    storage, storage_secrets = _storage()
    logs.setup_logging(
        worker_settings.log_level,
        worker_settings.log_format,
        secrets=[*worker_settings.secrets(), *settings.secrets(), *storage_secrets, *_provider_secrets()],
    )
    if not settings.accounts():
        raise SystemExit(
            "web: refusing to start without an account: set DASHBOARD_PASSWORD (at least 12 characters) "
            "or DASHBOARD_ACCOUNTS=name:password,..."
        )
    plan = plan_connections(worker_settings)
    on_heroku = worker_settings.port is not None
    host, port = (
        ("0.0.0.0", worker_settings.port) if on_heroku else (settings.dashboard_host, settings.dashboard_port)
    )
    assert port is not None
    render = load_settings(RenderSettings)
    app = create_app(
        settings,
        plan,
        storage,
        https_only=on_heroku,
        ffmpeg_path=render.ffmpeg_path,
        ffprobe_path=render.ffprobe_path,
    )

    sock = socket.create_server((host, port), reuse_port=False)
    # Accepted connections inherit it: without it a response's body waits for the client's
    # delayed ACK of its headers (~40 ms per request on a kept-alive connection).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    bound = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        proxy_headers=on_heroku,
        server_header=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    logger.info(
        "dashboard on http://{}:{} (database {}, previews {}, HireFire endpoint {})",
        host,
        bound,
        safe_dsn(plan.url),
        "from storage" if storage else "off (storage not configured)",
        "on" if settings.hirefire_token else "off",
    )
    # uvicorn installs SIGINT/SIGTERM handlers itself: Heroku's SIGTERM ends it cleanly.
    asyncio.run(server.serve(sockets=[sock]))
    return 0
