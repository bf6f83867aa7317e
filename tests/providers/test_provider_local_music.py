"""The offline placeholder music provider (not generative AI)."""

from __future__ import annotations

import pytest

from tests.providers.conftest import run
from worker.errors import PayloadError
from worker.providers import fetch_music
from worker.providers.audio import probe

pytestmark = pytest.mark.timeout(60)


def pad(settings, out_dir, prompt="rainy night", seconds=3.0, seed=1):  # type: ignore[no-untyped-def]
    return run(
        fetch_music(
            provider=None, prompt=prompt, seconds=seconds, seed=seed, out_dir=out_dir, settings=settings
        )
    )


def test_default_without_key_is_local_and_deterministic(make_settings, tmp_path):
    settings = make_settings()
    a = pad(settings, tmp_path / "a")
    b = pad(settings, tmp_path / "b")
    info = run(probe(a))
    assert "local" in a.name and info.duration == pytest.approx(3.0, abs=0.05) and info.channels == 2
    assert a.read_bytes() == b.read_bytes()
    assert pad(settings, tmp_path / "c", seed=2).read_bytes() != a.read_bytes()
    assert pad(settings, tmp_path / "d", prompt="sunny day").read_bytes() != a.read_bytes()


def test_bad_input(make_settings, out_dir):
    with pytest.raises(PayloadError, match="seconds"):
        pad(make_settings(), out_dir, seconds=0)
    with pytest.raises(PayloadError, match="unknown music provider"):
        run(
            fetch_music(
                provider="suno", prompt="x", seconds=1, seed=None, out_dir=out_dir, settings=make_settings()
            )
        )
