"""API keys never appear in exceptions, logs or the settings' repr -- even when a provider echoes them."""

from __future__ import annotations

import socket
import traceback

import pytest
from loguru import logger

from tests.fakes import Reply
from tests.fakes.elevenlabs import error as eleven_error
from tests.fakes.openai import error as openai_error
from tests.fakes.stability import error as stability_error
from tests.providers.conftest import run
from worker.errors import JobError
from worker.providers import ProviderSettings, fetch_music, fetch_speech

pytestmark = pytest.mark.timeout(60)


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _error_paths(key: str, error_body):  # type: ignore[no-untyped-def]
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


PROVIDERS = {
    "openai": lambda msg, code: openai_error(msg, code, code),
    "elevenlabs": lambda msg, code: eleven_error(code, msg),
    "stability": lambda msg, code: stability_error(code, msg),
}
CASES = [(p, path) for p in PROVIDERS for path in _error_paths("k", PROVIDERS[p])] + [
    (p, "connection-refused") for p in PROVIDERS
]


def _call(provider: str, settings: ProviderSettings, out_dir):  # type: ignore[no-untyped-def]
    if provider == "stability":
        return fetch_music(
            provider=provider, prompt="pad", seconds=3, seed=1, out_dir=out_dir, settings=settings
        )
    return fetch_speech(
        text="Say it.", provider=provider, voice=None, model=None, out_dir=out_dir, settings=settings
    )


@pytest.mark.parametrize(("provider", "path"), CASES, ids=[f"{p}-{c}" for p, c in CASES])
def test_key_never_leaks(
    provider, path, fake_openai, fake_elevenlabs, fake_stability, make_settings, out_dir
):
    fake = {"openai": fake_openai, "elevenlabs": fake_elevenlabs, "stability": fake_stability}[provider]
    key = fake.api_key
    settings = make_settings(fake, max_retries=1, provider_read_timeout_s=0.2)
    if path == "connection-refused":
        url_var = {
            "openai": "openai_base_url",
            "elevenlabs": "elevenlabs_base_url",
            "stability": "stable_audio_api_url",
        }[provider]
        settings = settings.model_copy(update={url_var: _closed_port_url()})
    else:
        fake.script(*_error_paths(key, PROVIDERS[provider])[path])
    logs: list[str] = []
    sink = logger.add(lambda m: logs.append(str(m)), level="DEBUG")
    try:
        with pytest.raises(JobError) as caught:
            run(_call(provider, settings, out_dir))
    finally:
        logger.remove(sink)
    exc = caught.value
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc)), *logs]
    assert provider in str(exc)
    assert not [t for t in texts if key in t]


def test_settings_repr_and_dump_hide_keys():
    settings = ProviderSettings(
        openai_api_key="sk-secret-aaaaaaaa",
        elevenlabs_api_key="xi-secret-bbbbbbbb",
        stable_audio_api_key="sk-secret-cccccccc",
    )
    shown = repr(settings) + str(settings) + str(settings.model_dump()) + settings.model_dump_json()
    for secret in ("sk-secret-aaaaaaaa", "xi-secret-bbbbbbbb", "sk-secret-cccccccc"):
        assert secret not in shown
