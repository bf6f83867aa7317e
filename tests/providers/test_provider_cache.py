"""The content-addressed cache: keys, atomicity, concurrent workers paying once, eviction."""

from __future__ import annotations

import asyncio
import os

import pytest

from tests.fakes import Reply
from tests.providers.conftest import run
from worker.providers import fetch_speech
from worker.providers.cache import AudioCache, cache_key

pytestmark = pytest.mark.timeout(60)


def test_key_is_canonical_and_covers_every_input():
    base = {"provider": "openai", "fields": {"model": "tts-1", "voice": "alloy", "speed": 1.0}, "text": "Hi"}
    assert cache_key(**base) == cache_key(
        text="Hi", fields={"speed": 1.0, "voice": "alloy", "model": "tts-1"}, provider="openai"
    )
    for change in (
        {"text": "Hi!"},
        {"provider": "elevenlabs"},
        {"fields": {"model": "tts-1", "voice": "echo", "speed": 1.0}},
    ):
        assert cache_key(**(base | change)) != cache_key(**base)


def test_concurrent_identical_requests_pay_once(fake_openai, make_settings, tmp_path):
    fake_openai.script(Reply(200, delay=0.3))  # first request is slow: the others must wait, not pay
    settings = make_settings(fake_openai)

    async def many() -> list:
        return await asyncio.gather(
            *(
                fetch_speech(
                    text="Same words.",
                    provider="openai",
                    voice=None,
                    model=None,
                    out_dir=tmp_path / f"o{i}",
                    settings=settings,
                )
                for i in range(4)
            )
        )

    paths = run(many())
    assert len(fake_openai.requests) == 1
    assert len({p.read_bytes() for p in paths}) == 1


def test_disabled_cache_pays_every_time(fake_openai, make_settings, out_dir):
    settings = make_settings(fake_openai, provider_cache_enabled=False)
    for _ in range(2):
        run(
            fetch_speech(
                text="Hi.", provider="openai", voice=None, model=None, out_dir=out_dir, settings=settings
            )
        )
    assert len(fake_openai.requests) == 2


def test_put_is_atomic_and_eviction_keeps_recent(tmp_path):
    cache = AudioCache(tmp_path / "c", max_bytes=0)
    src = tmp_path / "src"
    for i, key in enumerate(["a" * 64, "b" * 64, "c" * 64]):
        src.write_bytes(bytes([i]) * 1000)
        cache.put(key, "mp3", src)
        os.utime(cache.path(key, "mp3"), (1000 + i, 1000 + i))
    cache.get("a" * 64, "mp3")  # a use makes "a" recent again
    cache.max_bytes = 2500
    cache.evict()
    assert cache.get("b" * 64, "mp3") is None
    assert cache.get("a" * 64, "mp3") is not None and cache.get("c" * 64, "mp3") is not None
    assert not [p for p in (tmp_path / "c").rglob("*") if p.name.endswith(".tmp")]


def test_unwritable_cache_does_not_fail_the_job(fake_openai, make_settings, out_dir, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    settings = make_settings(fake_openai, provider_cache_dir=blocker / "cache")
    path = run(
        fetch_speech(
            text="Still works.", provider="openai", voice=None, model=None, out_dir=out_dir, settings=settings
        )
    )
    assert path.exists() and len(fake_openai.requests) == 1
