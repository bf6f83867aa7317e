"""``python -m worker run``: claim and process jobs until SIGTERM (the Heroku ``worker`` process)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from worker.config import load_settings, load_worker_settings
from worker.logs import setup_logging
from worker.providers.settings import ProviderSettings
from worker.queue.claim_loop import ClaimLoop, StartupError
from worker.queue.db.connect import plan_connections
from worker.queue.handlers import load_abandoned_sweeper, load_handler, load_sweeper
from worker.render.settings import RenderSettings


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker run", description=__doc__)
    parser.parse_args(argv)
    settings = load_worker_settings()
    # Every part's settings are checked now, not at the first job that needs them.
    load_settings(ProviderSettings)
    load_settings(RenderSettings)
    setup_logging(settings.log_level, settings.log_format, settings.secrets())
    handler, prepare = load_handler(settings.job_handler)
    if prepare is not None:
        asyncio.run(prepare())
    loop = ClaimLoop(
        settings,
        handler,
        plan_connections(settings),
        sweep=load_sweeper(settings.job_handler),
        sweep_abandoned=load_abandoned_sweeper(settings.job_handler),
    )
    try:
        code = asyncio.run(loop.run())
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stopped: further signals change nothing
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return code
    except StartupError as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return 1
