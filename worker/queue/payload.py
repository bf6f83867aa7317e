"""Decoding one job's payload on its own, so a hostile payload fails only its own job.

PostgreSQL's jsonb accepts what Python's json module cannot turn into objects: nesting deeper than
the interpreter's recursion limit (RecursionError) and integers of more than 4300 digits
(ValueError, CPython's int/str conversion limit). Decoding a claimed batch in one go let one such
payload drop every job claimed with it; here each is decoded alone and a payload breaking a limit
raises :class:`PayloadError` naming the field, so the claim loop fails that job at once.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from worker.errors import PayloadError

MAX_DEPTH = 100  # objects/arrays inside one another; a render spec needs about 5
MAX_INT_DIGITS = sys.int_info.default_max_str_digits  # 4300: beyond it int() refuses the text
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}:,]')


class _HugeInt:
    """Stands in for an integer too long to convert, so the walk can say where it is."""

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _int(text: str) -> int | _HugeInt:
    digits = len(text.lstrip("-"))
    return int(text) if digits <= MAX_INT_DIGITS else _HugeInt(digits)


def _too_deep(text: str) -> str | None:
    """The top-level key under which ``text`` nests deeper than MAX_DEPTH ("payload" if none), or
    None. A scan of the tokens: the decoder itself would overflow the stack first."""
    depth, key, last = 0, "payload", ""
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if tok in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return key
        elif tok in "]}":
            depth -= 1
        elif tok == ":" and depth == 1 and last.startswith('"'):
            key = json.loads(last)
        last = tok
    return None


def _find_huge(value: Any) -> tuple[str, _HugeInt] | None:
    """The dotted path and value of the first over-long integer in ``value`` (iteratively)."""
    todo: list[tuple[str, Any]] = [("", value)]
    while todo:
        path, v = todo.pop()
        if isinstance(v, _HugeInt):
            return path or "payload", v
        if isinstance(v, dict):
            todo.extend((f"{path}.{k}" if path else str(k), x) for k, x in reversed(v.items()))
        elif isinstance(v, list):
            todo.extend((f"{path}[{i}]", x) for i, x in reversed(list(enumerate(v))))
    return None


def decode_payload(text: str | bytes) -> dict[str, Any]:
    """The payload object in ``text``; :class:`PayloadError` naming the field when it breaks a rule."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if (key := _too_deep(text)) is not None:
        raise PayloadError(key, f"nested more than {MAX_DEPTH} levels deep")
    try:
        value = json.loads(text, parse_int=_int)
    except RecursionError:  # the scan above makes this unreachable, unless the stack is already deep
        raise PayloadError("payload", f"nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:
        raise PayloadError("payload", f"is not JSON: {exc}") from None
    if (huge := _find_huge(value)) is not None:
        path, n = huge
        raise PayloadError(path, f"an integer of {n.digits} digits (at most {MAX_INT_DIGITS})")
    if not isinstance(value, dict):
        raise PayloadError("payload", "must be a JSON object")
    return value
