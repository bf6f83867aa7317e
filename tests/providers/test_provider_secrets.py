"""API keys never appear in exceptions, logs or the settings' repr -- even when a provider echoes them.

Walks the provider registry: every provider that takes a key is covered, through its fake in
``tests.fakes.FAKES`` (a provider registered without a fake fails here).
"""

from __future__ import annotations

import socket
import traceback
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from tests.fakes import FAKES, Reply
from tests.providers.conftest import run
from worker.errors import JobError
from worker.providers import ProviderSettings, fetch_music, fetch_speech, registry
from worker.providers.provider import Provider

pytestmark = pytest.mark.timeout(60)

PAID = {p.name: p for p in registry.PROVIDERS if p.key_setting}


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _error_paths(key: str, error_body: Callable[[str, str], Any]) -> dict[str, list[Reply]]:
    """Scripted replies covering each error path; every body echoes the key."""
    return {
        "rejected-401": [Reply(401, error_body(f"bad key {key}", "invalid_api_key"))],
        "quota": [Reply(429, error_body(f"quota gone for {key}", "insufficient_quota"))],
        "validation-400": [Reply(400, error_body(f"bad input; key={key}", "invalid_request_error"))],
        "rate-limit": [Reply(429, error_body(f"slow down {key}", "rate_limit_exceeded"), retry_after=0.01)]
        * 2,
        "5xx": [Reply(502, f"<html>upstream {key}</html>".encode(), content_type="text/html")] * 2,
        "html-200": [Reply(200, f"<html>login {key}</html>".encode(), content_type="text/html")] * 2,
        "timeout": [Reply(200, delay=1.0)] * 2,
        "truncated": [Reply(200, None, truncate=True)] * 2,
    }


PATHS = [*_error_paths("k", lambda m, c: {}), "connection-refused"]
CASES = [(name, path) for name in PAID for path in PATHS]


def _call(provider: Provider, settings: ProviderSettings, out_dir: Path) -> Coroutine[Any, Any, Path]:
    if provider.kind == "music":
        return fetch_music(
            provider=provider.name, prompt="pad", seconds=3, seed=1, out_dir=out_dir, settings=settings
        )
    return fetch_speech(
        text="Say it.", provider=provider.name, voice=None, model=None, out_dir=out_dir, settings=settings
    )


def test_every_provider_with_a_key_has_a_fake() -> None:
    assert sorted(PAID) == sorted(FAKES), "register the new provider's fake in tests/fakes/__init__.py FAKES"


@pytest.mark.parametrize(("name", "path"), CASES, ids=[f"{p}-{c}" for p, c in CASES])
def test_key_never_leaks(
    name: str, path: str, make_settings: Callable[..., ProviderSettings], out_dir: Path
) -> None:
    provider = PAID[name]
    with FAKES[name]() as fake:
        key = fake.api_key
        settings = make_settings(fake, max_retries=1, provider_read_timeout_s=0.2)
        if path == "connection-refused":
            assert provider.url_setting is not None
            settings = settings.model_copy(update={provider.url_setting: _closed_port_url()})
        else:
            fake.script(*_error_paths(key, fake.error_body)[path])
        logs: list[str] = []
        sink = logger.add(lambda m: logs.append(str(m)), level="DEBUG")
        try:
            with pytest.raises(JobError) as caught:
                run(_call(provider, settings, out_dir))
        finally:
            logger.remove(sink)
    exc = caught.value
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc)), *logs]
    assert name in str(exc)
    assert not [t for t in texts if key in t]


def test_settings_repr_and_dump_hide_keys() -> None:
    keys = {setting: f"placeholder-secret-{i:08d}" for i, setting in enumerate(registry.key_settings())}
    settings = ProviderSettings(**keys)  # type: ignore[arg-type]
    shown = repr(settings) + str(settings) + str(settings.model_dump()) + settings.model_dump_json()
    assert sorted(settings.secrets()) == sorted(keys.values())
    for secret in keys.values():
        assert secret not in shown
