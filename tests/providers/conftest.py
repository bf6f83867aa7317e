"""Fixtures for provider tests: started-and-stopped fakes and settings pointing at them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.fakes import FakeElevenLabs, FakeOpenAI, FakeStability
from worker.providers import ProviderSettings, registry

T = TypeVar("T")

PROVIDER_ENV = [
    *(s.upper() for s in registry.key_settings() + registry.url_settings()),
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
        }
        for provider in registry.PROVIDERS:  # the limiters are process-wide: keep them out of the way
            if provider.rate_settings:
                limit, window = provider.rate_settings
                values |= {limit: 10_000, window: 1}
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
