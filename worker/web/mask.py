"""Secrets out of what the dashboard shows: payloads, results and errors pass through here.

Three layers, because a payload is written by apps we do not control: values under keys that name
a secret (``api_key``, ``token``, ``password`` ...), the password part of URLs and their
signature-like query parameters, and every secret this process knows (the database password,
storage and provider keys, the dashboard's own), masked by :func:`worker.logs.redact` as in logs.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from worker.logs import redact

MASK = "***"
SECRET_KEY = re.compile(
    r"pass(word|wd)?|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|authori[sz]ation|"
    r"credential|signature|cookie|session|bearer|dsn|database[_-]?url",
    re.IGNORECASE,
)
SECRET_QUERY = re.compile(r"sig|signature|token|key|secret|credential|password|auth", re.IGNORECASE)
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s\"'<>]+", re.IGNORECASE)


def mask_url(url: str) -> str:
    """``scheme://user:pw@host/p?token=x`` -> ``scheme://user:***@host/p?token=***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, host = netloc.rpartition("@")
            user, sep, _pw = userinfo.partition(":")
            netloc = f"{user}{':' + MASK if sep else ''}@{host}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, MASK if SECRET_QUERY.search(k) else v) for k, v in pairs], safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return MASK


def mask_text(text: str) -> str:
    """Known secrets and the secret parts of any URL inside ``text``."""
    return _URL.sub(lambda m: mask_url(m.group(0)), redact(text))


def mask(value: Any) -> Any:
    """A copy of a JSON value with secrets masked (keys kept, so the shape stays readable)."""
    if isinstance(value, dict):
        return {
            k: MASK if SECRET_KEY.search(str(k)) and v not in (None, "", [], {}) else mask(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask(v) for v in value]
    if isinstance(value, str):
        return mask_text(value)
    return value
