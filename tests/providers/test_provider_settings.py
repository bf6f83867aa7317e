"""Provider settings come from the environment, with documented defaults and ranges."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from worker.providers import ProviderSettings, registry


def resolve_speech_provider(name: str | None, settings: ProviderSettings) -> str:
    return registry.resolve("speech", name, settings).name


def test_defaults():
    s = ProviderSettings()
    assert (s.max_retries, s.retry_delay_ms) == (3, 2000)
    assert s.openai_base_url == "https://api.openai.com/v1"
    assert s.elevenlabs_base_url == "https://api.elevenlabs.io"
    assert s.stable_audio_api_url == "https://api.stability.ai"
    assert s.openai_api_key is None and resolve_speech_provider(None, s) == "espeak"


def test_env_is_read(monkeypatch):
    monkeypatch.setenv("MAX_RETRIES", "0")
    monkeypatch.setenv("RETRY_DELAY_MS", "50")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("STABLE_AUDIO_API_URL", "https://api.stability.ai/v2beta/stable-audio/")
    s = ProviderSettings()
    assert (s.max_retries, s.retry_delay_ms) == (0, 50)
    assert s.openai_api_key.get_secret_value() == "sk-env" and resolve_speech_provider(None, s) == "openai"
    assert s.stable_audio_api_url == "https://api.stability.ai/v2beta/stable-audio"


def test_elevenlabs_key_selects_elevenlabs_and_explicit_setting_wins(monkeypatch):
    monkeypatch.setenv("ELEVENLABS_API_KEY", "xi-env")
    assert resolve_speech_provider(None, ProviderSettings()) == "elevenlabs"
    monkeypatch.setenv("SPEECH_PROVIDER", "espeak")
    assert resolve_speech_provider(None, ProviderSettings()) == "espeak"


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("MAX_RETRIES", "11"),
        ("MAX_RETRIES", "-1"),
        ("RETRY_DELAY_MS", "-5"),
        ("OPENAI_BASE_URL", "ftp://x"),
        ("ELEVENLABS_OUTPUT_FORMAT", "pcm_16000"),
        ("SPEECH_PROVIDER", "polly"),
    ],
)
def test_out_of_range_values_are_rejected(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError):
        ProviderSettings()
