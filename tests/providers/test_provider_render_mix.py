"""Proof: espeak-ng speech from the providers is mixed by the render engine."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.providers.conftest import run
from worker.providers import fetch_music, fetch_speech

pytestmark = pytest.mark.timeout(120)
render_engine = pytest.importorskip("worker.render.engine")
parse = pytest.importorskip("worker.render.parse")

RATE = 16000
FRAME = 800  # 50 ms


def envelope(path: Path, start_s: float = 0.0, seconds: float | None = None) -> np.ndarray:
    cmd = ["ffmpeg", "-v", "error", "-ss", f"{start_s}", "-i", str(path)]
    if seconds is not None:
        cmd += ["-t", f"{seconds}"]
    raw = subprocess.run(
        [*cmd, "-ac", "1", "-ar", str(RATE), "-f", "f32le", "-"], check=True, capture_output=True, timeout=30
    ).stdout
    x = np.frombuffer(raw, dtype="<f4")
    x = x[: len(x) // FRAME * FRAME].reshape(-1, FRAME)
    return 20 * np.log10(np.sqrt(np.mean(x**2, axis=1)) + 1e-6)


def test_espeak_speech_is_audible_in_the_rendered_master(make_settings, tmp_path):
    settings = make_settings()
    text = "Breathe in slowly. Hold it for a moment. And now, let it go."
    speech = run(
        fetch_speech(
            text=text, provider=None, voice=None, model=None, out_dir=tmp_path / "in", settings=settings
        )
    )
    music = run(
        fetch_music(
            provider=None, prompt="soft pad", seconds=8, seed=3, out_dir=tmp_path / "in", settings=settings
        )
    )
    spec = parse.parse_spec(
        {
            "spec_version": 1,
            "duration_s": 8,
            "layers": [
                {"type": "speech", "text": text, "start_s": 1.0},
                {
                    "type": "music",
                    "generate": {"prompt": "soft pad", "seconds": 8, "seed": 3},
                    "gain_db": -12,
                },
            ],
        }
    )
    result = run(
        render_engine.render(spec, {"layers[0]": speech, "layers[1]": music}, tmp_path / "out"), timeout=100
    )
    assert result.duration_s == pytest.approx(8, abs=0.1)

    voice = envelope(speech)
    mixed = envelope(result.master, start_s=1.0, seconds=len(voice) * FRAME / RATE)
    n = min(len(voice), len(mixed))
    # the master's loudness contour over the speech span follows the speech's words and pauses
    corr = np.corrcoef(voice[:n], mixed[:n])[0, 1]
    assert corr > 0.6, f"speech contour not found in the master (correlation {corr:.2f})"
