"""Logging: loguru, one line per event with the worker id and job id, secrets masked.

``LOG_FORMAT=json`` writes one JSON object per line for log drains.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from typing import Any

from loguru import logger

_secrets: list[str] = []
_KEYLIKE = re.compile(r"\b(sk|xi|key)[-_][A-Za-z0-9_\-*.]{6,}")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask every registered secret, every one of ``secrets`` and anything shaped like an API key.

    The one masking function: logs, health/metrics answers, webhook and job error messages and
    provider errors (which may echo the key they were sent) all go through it.
    """
    for s in (*secrets, *_secrets):
        if s and s in text:
            text = text.replace(s, "***")
    return _KEYLIKE.sub(lambda m: m.group(1) + "-***", text)


def _patch(record: dict[str, Any]) -> None:
    record["message"] = redact(record["message"])
    record["extra"].setdefault("worker_id", "-")
    record["extra"].setdefault("job_id", "-")
    if record["exception"] is not None:
        exc = record["exception"]
        if exc.value is not None and _secrets:
            exc.value.args = tuple(redact(str(a)) if isinstance(a, str) else a for a in exc.value.args)


def add_secrets(values: list[str]) -> None:
    """Mask these values too from now on (provider keys, storage secrets loaded after start)."""
    _secrets[:] = sorted({*_secrets, *(v for v in values if v)}, key=len, reverse=True)


TEXT_FORMAT = (
    "{time:YYYY-MM-DD HH:mm:ss.SSS} {level: <7} worker={extra[worker_id]} job={extra[job_id]} {message}"
)


def setup_logging(level: str = "info", fmt: str = "text", secrets: list[str] | None = None) -> None:
    """Configure the process-wide logger (stderr, as Heroku expects)."""
    _secrets.clear()
    add_secrets(secrets or [])
    logger.remove()
    logger.configure(patcher=_patch)  # type: ignore[arg-type]
    if fmt == "json":
        logger.add(sys.stderr, level=level.upper(), serialize=True, backtrace=False, diagnose=False)
    else:
        logger.add(sys.stderr, level=level.upper(), format=TEXT_FORMAT, backtrace=False, diagnose=False)
