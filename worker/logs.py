"""Logging: loguru, one line per event with the worker id and job id, secrets masked.

``LOG_FORMAT=json`` writes one JSON object per line for log drains.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from loguru import logger

_secrets: list[str] = []
_KEYLIKE = re.compile(r"\b(sk|xi|key)[-_][A-Za-z0-9_\-*.]{6,}")


def _any_case(hex_digits: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in hex_digits)


def _char_forms(ch: str) -> str:
    """A regex for every way ``ch`` can be written in a URL, a query string or an escaped string:
    itself, percent-encoded in either hex case (also double-encoded, %2540 for @), ``+`` for a
    space, backslash-escaped, or a JSON ``\\uXXXX`` escape."""
    forms = [re.escape(ch), "".join(f"%(?:25)?{_any_case(f'{b:02X}')}" for b in ch.encode())]
    if ch == " ":
        forms.append(r"\+")
    if ch in "\\\"'":
        forms.append(re.escape("\\" + ch))
    if not ch.isascii():
        forms.append(r"\\u" + _any_case(f"{ord(ch):04x}"))
    return "(?:" + "|".join(forms) + ")"


@lru_cache(maxsize=64)
def _pattern(secrets: tuple[str, ...]) -> re.Pattern[str] | None:
    """One regex matching each secret in any of its encodings, longest secrets first."""
    alts = ["".join(_char_forms(ch) for ch in s) for s in sorted(set(secrets), key=len, reverse=True) if s]
    return re.compile("|".join(alts)) if alts else None


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask every registered secret, every one of ``secrets`` and anything shaped like an API key.

    The one masking function: logs, health/metrics answers, webhook and job error messages and
    provider errors (which may echo the key they were sent) all go through it. A secret is masked
    in whatever encoding it appears: a password pasted into a URL is percent-encoded
    (Pw%40SeKr%2F1t%3Ax for Pw@SeKr/1t:x), in upper or lower case hex, sometimes only partly.
    """
    pattern = _pattern((*_secrets, *secrets))
    if pattern is not None:
        text = pattern.sub("***", text)
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
