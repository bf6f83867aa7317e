"""Secrets are masked in every form they take in a URL, a query string or an escaped string."""

from __future__ import annotations

import pytest

from worker import logs


@pytest.fixture
def secrets():
    saved = list(logs._secrets)
    logs.add_secrets(["Pw@SeKr/1t:x", 'a b"c\\d', "héllo"])
    yield
    logs._secrets[:] = saved


@pytest.mark.parametrize(
    "text",
    [
        "Pw@SeKr/1t:x",
        "postgresql://u:Pw%40SeKr%2F1t%3Ax@host:6543/postgres",  # percent-encoded, upper case
        "Pw%40SeKr%2f1t%3ax",  # lower case hex
        "Pw@SeKr%2F1t:x",  # partly encoded
        "Pw%2540SeKr%252F1t%253Ax",  # encoded twice
        "a+b%22c%5Cd",  # + for a space (query strings)
        'a b\\"c\\\\d',  # backslash-escaped (repr, JSON)
        "h%C3%A9llo",
        "h\\u00e9llo",  # JSON's escape of a non-ASCII letter
    ],
)
def test_every_encoding_of_a_secret_is_masked(secrets, text):
    masked = logs.redact(f"before {text} after")
    assert masked.startswith("before ") and masked.endswith(" after") and "***" in masked, masked
    assert "SeKr" not in masked and "héllo" not in masked and "b%22c" not in masked


def test_text_without_secrets_is_unchanged(secrets):
    assert logs.redact("Pw@SeKr/1t:y and 100% sure") == "Pw@SeKr/1t:y and 100% sure"
