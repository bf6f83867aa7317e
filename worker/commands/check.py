"""``python -m worker check``: is this dyno ready to render? Configuration, ffmpeg, database and
schema version, storage access. Prints one line per problem and exits 1, or prints ``ready``.

Read-only: nothing is written to the database or to storage. Secrets are never printed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import psycopg
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from worker.config import WorkerSettings, describe_validation_error, password_of
from worker.providers.settings import ProviderSettings
from worker.queue.db.connect import plan_connections, safe_dsn
from worker.queue.db.migrate import required_version, schema_problem
from worker.queue.db.queries import q
from worker.render.settings import RenderSettings
from worker.render.toolcheck import check_tools
from worker.storage import Storage, StorageSettings

CONNECT_TIMEOUT_S = 5


def _load(cls: type[BaseSettings], problems: list[str]) -> Any:
    try:
        return cls()
    except ValidationError as exc:
        lines = describe_validation_error(exc).replace("Value error, ", "").splitlines()
        problems += [f"config: {line.removeprefix('settings: ')}" for line in lines]
        return None


def database_problems(settings: WorkerSettings) -> list[str]:
    """Reachable, and the schema at the version this code needs."""
    plan = plan_connections(settings)
    try:
        with psycopg.connect(plan.url, connect_timeout=CONNECT_TIMEOUT_S, **plan.connect_kwargs) as conn:
            exists = conn.execute(q("schema_exists")).fetchone()
            row = conn.execute(q("schema_version")).fetchone() if exists and exists[0] else None
            version = int(row[0]) if row is not None else None
    except psycopg.Error as exc:
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        password = password_of(plan.url)
        if password:
            text = text.replace(password, "***")
        return [f"database: cannot connect to {safe_dsn(plan.url)}: {text}"]
    problem = schema_problem(version, required_version())
    return [f"database: {problem}"] if problem else []


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker check", description=__doc__)
    parser.parse_args(argv)
    problems: list[str] = []
    worker = _load(WorkerSettings, problems)
    render = _load(RenderSettings, problems)
    _load(ProviderSettings, problems)
    storage = _load(StorageSettings, problems)

    ffmpeg, ffprobe = (render.ffmpeg_path, render.ffprobe_path) if render else ("ffmpeg", "ffprobe")
    problems += [f"ffmpeg: {p}" for p in check_tools(ffmpeg, ffprobe)]
    if worker is not None:
        problems += database_problems(worker)
    if storage is not None:
        problems += [f"storage: {p}" for p in Storage(storage).check()]

    if problems:
        print("\n".join(problems))
        print(f"not ready: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("ready")
    return 0
