"""``python -m worker migrate``: apply pending migrations (the Heroku release phase runs this).

Before migrating it checks that this slug can render (ffmpeg/ffprobe with every filter, encoder and
muxer the render engine uses, as ``run`` does at start): a release whose ffmpeg build is broken
fails its release phase, so Heroku never starts worker dynos on it and the old ones keep running.
``--skip-tool-check`` migrates from a machine without ffmpeg (a laptop, a CI job) on purpose.
"""

from __future__ import annotations

import argparse
import sys

import psycopg

from worker.config import load_settings, load_worker_settings
from worker.queue.db.connect import safe_dsn
from worker.queue.db.migrate import MigrationError, migrate
from worker.render.settings import RenderSettings
from worker.render.toolcheck import check_tools


def tool_problems() -> list[str]:
    """What keeps this slug's ffmpeg from rendering ([] when it can)."""
    render = load_settings(RenderSettings)
    return check_tools(render.ffmpeg_path, render.ffprobe_path)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker migrate", description=__doc__)
    parser.add_argument(
        "--skip-tool-check",
        action="store_true",
        help="migrate even though ffmpeg/ffprobe are missing or incomplete here (a machine that "
        "does not render); the release phase must not use it",
    )
    args = parser.parse_args(argv)
    settings = load_worker_settings()
    if not args.skip_tool_check:
        problems = tool_problems()
        if problems:
            print("\n".join(f"migrate: {p}" for p in problems), file=sys.stderr)
            print(
                "migrate: refusing to migrate: this build cannot render, so its workers would fail "
                "every job (nothing was changed in the database). Fix the ffmpeg buildpack, or run "
                "`python -m worker migrate --skip-tool-check` from a machine that does not render.",
                file=sys.stderr,
            )
            return 1
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
