"""``python -m worker migrate``: apply pending migrations (the Heroku release phase runs this)."""

from __future__ import annotations

import argparse
import sys

import psycopg

from worker.config import load_worker_settings
from worker.queue.db.connect import safe_dsn
from worker.queue.db.migrate import MigrationError, migrate


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker migrate", description=__doc__)
    parser.parse_args(argv)
    settings = load_worker_settings()
    url = settings.database_url.get_secret_value()
    try:
        applied = migrate(url)
    except MigrationError as exc:
        print(f"migrate: {exc}", file=sys.stderr)
        return 1
    except psycopg.Error as exc:
        print(f"migrate: database error on {safe_dsn(url)}: {str(exc).strip()}", file=sys.stderr)
        return 1
    print(f"migrate: {len(applied)} applied; schema up to date" if applied else "migrate: schema up to date")
    return 0
