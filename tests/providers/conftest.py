"""Fixtures for provider tests: started-and-stopped fakes and settings pointing at them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.fakes import FakeElevenLabs, FakeOpenAI, FakeStability
from worker.providers import ProviderSettings

T = TypeVar("T")

PROVIDER_ENV = [
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ELEVENLABS_API_KEY",
    "ELEVENLABS_BASE_URL",
    "STABLE_AUDIO_API_KEY",
    "STABLE_AUDIO_API_URL",
    "SPEECH_PROVIDER",
    "MUSIC_PROVIDER",
    "MAX_RETRIES",
    "RETRY_DELAY_MS",
    "PROVIDER_CACHE_DIR",
    "PROVIDER_CACHE_ENABLED",
]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROVIDER_ENV:
        monkeypatch.delenv(name, raising=False)


def run(coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
    """Run a coroutine to completion in a fresh event loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_elevenlabs() -> Iterator[FakeElevenLabs]:
    fake = FakeElevenLabs().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_stability() -> Iterator[FakeStability]:
    fake = FakeStability().start()
    yield fake
    fake.stop()


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., ProviderSettings]:
    """Settings with fast retries and a private cache; fakes passed in contribute their env."""

    def make(*fakes: Any, **overrides: Any) -> ProviderSettings:
        values: dict[str, Any] = {
            "max_retries": 2,
            "retry_delay_ms": 1,
            "retry_max_delay_ms": 5,
            "provider_read_timeout_s": 3,
            "provider_connect_timeout_s": 2,
            "provider_cache_dir": tmp_path / "cache",
            # the limiters are process-wide: keep them out of the way of unrelated tests
            "openai_rate_limit": 10_000,
            "openai_rate_window_s": 1,
            "elevenlabs_rate_limit": 10_000,
            "elevenlabs_rate_window_s": 1,
            "stable_audio_rate_limit": 10_000,
            "stable_audio_rate_window_s": 1,
        }
        for fake in fakes:
            values.update({k.lower(): v for k, v in fake.env().items()})
        values.update(overrides)
        return ProviderSettings(**values)

    return make


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path
