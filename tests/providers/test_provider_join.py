"""Joining synthesized parts: no clicks at the seams, nothing lost."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.providers.conftest import run
from worker.providers.audio import probe
from worker.providers.join import join_parts

pytestmark = pytest.mark.timeout(60)
RATE = 24000


def tone(path: Path, expr: str, seconds: float) -> Path:
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"aevalsrc='{expr}':s={RATE}:d={seconds}",
            "-c:a",
            "pcm_s16le",
            str(path),
        ],
        check=True,
        timeout=30,
    )
    return path


def samples(path: Path) -> np.ndarray:
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", str(RATE), "-"],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout
    return np.frombuffer(raw, dtype="<f4")


@pytest.fixture
def step_parts(tmp_path: Path) -> list[Path]:
    # part A ends at -0.8 (3/4 of a cycle), part B starts at +0.8: butt-joined, that is a 1.6 step
    d = (132 + 0.75) / 440
    return [
        tone(tmp_path / "a.wav", "0.8*sin(2*PI*440*t)", d),
        tone(tmp_path / "b.wav", "0.8*cos(2*PI*440*t)", 0.3),
    ]


def test_crossfade_removes_the_click(step_parts, tmp_path):
    natural = 0.8 * 2 * np.pi * 440 / RATE  # steepest sample-to-sample change of the tone itself
    butt = samples(run(join_parts(step_parts, tmp_path / "butt.flac", crossfade_ms=0)))
    smooth = samples(run(join_parts(step_parts, tmp_path / "smooth.flac", crossfade_ms=15)))
    assert np.abs(np.diff(butt)).max() > 10 * natural  # the test can see a click
    assert np.abs(np.diff(smooth)).max() < 1.6 * natural


def test_duration_is_the_sum_minus_the_overlaps(step_parts, tmp_path):
    parts = step_parts + [step_parts[0]]
    total = sum(run(probe(p)).duration for p in parts)
    out = run(join_parts(parts, tmp_path / "j.flac", crossfade_ms=20))
    assert out.suffix == ".flac"
    assert run(probe(out)).duration == pytest.approx(total - 2 * 0.020, abs=0.01)


def test_mixed_rates_and_channels_join(tmp_path):
    a = tone(tmp_path / "a.wav", "0.3*sin(2*PI*300*t)", 0.4)
    b = tmp_path / "b.wav"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=f=500:r=44100:d=0.4", "-ac", "2", str(b)],
        check=True,
        timeout=30,
    )
    info = run(probe(run(join_parts([a, b], tmp_path / "j.flac"))))
    assert (info.sample_rate, info.channels) == (RATE, 1) and info.duration == pytest.approx(0.785, abs=0.01)
