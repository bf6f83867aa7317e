"""Loads ``queries.sql``: named statements, so SQL stays in .sql files and Python refers to names."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

QUERIES_FILE = Path(__file__).with_name("queries.sql")
_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    """Name -> statement (comments and the final semicolon dropped) of a queries.sql text; also
    reads the frozen copies of earlier releases (tests/compat/calls/)."""
    parts = _NAME.split(text)
    out: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [ln for ln in body.strip().splitlines() if not ln.lstrip().startswith("--")]
        out[name] = "\n".join(lines).strip().rstrip(";")
    return out


@cache
def queries() -> dict[str, str]:
    return parse_queries(QUERIES_FILE.read_text())


def q(name: str) -> str:
    """The statement called ``name`` in queries.sql."""
    return queries()[name]
