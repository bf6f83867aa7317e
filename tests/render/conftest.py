"""Fixtures of the render tests: short speech made with espeak-ng, a private temp root."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.audio import make_speech
from worker.render import RenderSettings


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 3 s of espeak-ng speech."""
    d = tmp_path_factory.mktemp("speech")
    return make_speech(d / "speech.wav", "Breathe in slowly. Let your shoulders drop. You are calm.")


@pytest.fixture
def settings(tmp_path: Path) -> RenderSettings:
    """Settings whose temp dirs live under ``tmp_path/work`` so tests can see what is left."""
    return RenderSettings(tmp_dir=tmp_path / "work", stall_timeout_s=20)
