"""espeak-ng: real, audible speech without keys; the default when no key is configured."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.providers.conftest import run
from worker.errors import PayloadError
from worker.providers import espeak, fetch_speech
from worker.providers.audio import probe

pytestmark = pytest.mark.timeout(60)


def samples(path: Path, rate: int = 16000) -> np.ndarray:
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-ac", "1", "-ar", str(rate), "-f", "f32le", "-"],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout
    return np.frombuffer(raw, dtype="<f4")


def rms_db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(x))) + 1e-12))


def test_default_without_keys_is_espeak_and_it_speaks(make_settings, out_dir):
    path = run(
        fetch_speech(
            text="The quick brown fox jumps over the lazy dog.",
            provider=None,
            voice=None,
            model=None,
            out_dir=out_dir,
            settings=make_settings(),
        )
    )
    assert path.parent == out_dir and "espeak" in path.name
    assert run(probe(path)).duration > 0.5
    x = samples(path)
    assert rms_db(x) > -35  # not silent
    # speech has pauses and bursts: loudness varies a lot between 50 ms frames (a tone would not)
    frames = x[: len(x) // 800 * 800].reshape(-1, 800)
    frame_db = 20 * np.log10(np.sqrt(np.mean(frames**2, axis=1)) + 1e-9)
    assert frame_db.max() - np.percentile(frame_db, 10) > 20


def test_speed_changes_duration(make_settings, out_dir):
    text = "Speaking faster makes the same sentence shorter."
    slow = run(
        fetch_speech(
            text=text,
            provider="espeak",
            voice="en-gb",
            model=None,
            speed=0.75,
            out_dir=out_dir,
            settings=make_settings(),
        )
    )
    fast = run(
        fetch_speech(
            text=text,
            provider="espeak",
            voice="en-gb",
            model=None,
            speed=1.5,
            out_dir=out_dir,
            settings=make_settings(),
        )
    )
    assert run(probe(slow)).duration > 1.5 * run(probe(fast)).duration


def test_text_starting_with_dash_is_spoken_not_parsed(make_settings, out_dir):
    path = run(
        fetch_speech(
            text="--help -v xx",
            provider="espeak",
            voice=None,
            model=None,
            out_dir=out_dir,
            settings=make_settings(),
        )
    )
    assert run(probe(path)).duration > 0.3


def test_long_text_split_and_joined(make_settings, out_dir, monkeypatch):
    monkeypatch.setattr(espeak, "MAX_CHARS", 60)
    text = "First sentence is here. Second sentence follows it. Third one ends the text."
    path = run(
        fetch_speech(
            text=text, provider="espeak", voice=None, model=None, out_dir=out_dir, settings=make_settings()
        )
    )
    whole = run(
        fetch_speech(
            text=text,
            provider="espeak",
            voice=None,
            model=None,
            out_dir=out_dir / "one",
            settings=make_settings(join_crossfade_ms=0),
        )
    )
    assert path.suffix == ".flac"
    assert run(probe(path)).duration == pytest.approx(run(probe(whole)).duration, rel=0.25)
    assert [p.name for p in out_dir.iterdir() if p.is_file()] == [path.name]  # parts cleaned up


@pytest.mark.parametrize("voice", ["no-such-voice", "../../etc/passwd"])
def test_bad_voice_is_payload_error(make_settings, out_dir, voice):
    with pytest.raises(PayloadError, match="voice"):
        run(
            fetch_speech(
                text="Hi.",
                provider="espeak",
                voice=voice,
                model=None,
                out_dir=out_dir,
                settings=make_settings(),
            )
        )


def test_empty_text_and_unknown_provider(make_settings, out_dir):
    with pytest.raises(PayloadError, match="text"):
        run(
            fetch_speech(
                text="  ", provider=None, voice=None, model=None, out_dir=out_dir, settings=make_settings()
            )
        )
    with pytest.raises(PayloadError, match="unknown speech provider 'polly'"):
        run(
            fetch_speech(
                text="Hi", provider="polly", voice=None, model=None, out_dir=out_dir, settings=make_settings()
            )
        )


def test_speech_survives_a_mix_with_music(make_settings, out_dir):
    """The speech file mixes with music in ffmpeg (as the render engine does) and stays audible."""
    from worker.providers import fetch_music

    settings = make_settings()
    speech = run(
        fetch_speech(
            text="This voice sits on top of the music bed.",
            provider=None,
            voice=None,
            model=None,
            out_dir=out_dir,
            settings=settings,
        )
    )
    music = run(
        fetch_music(provider=None, prompt="calm pad", seconds=4, seed=1, out_dir=out_dir, settings=settings)
    )
    mixed = out_dir / "mix.wav"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            str(speech),
            "-i",
            str(music),
            "-filter_complex",
            "[1:a]volume=0.3[m];[0:a][m]amix=inputs=2:duration=longest:normalize=0",
            str(mixed),
        ],
        check=True,
        timeout=30,
    )
    s, m, x = samples(speech), samples(music), samples(mixed)
    n = min(len(s), len(x))
    # the mix minus the (scaled) music is the speech: correlation with the speech is high
    residual = x[:n] - 0.3 * m[:n]
    assert np.corrcoef(residual, s[:n])[0, 1] > 0.95


def test_a_long_work_dir_path_does_not_break_espeak(tmp_path):
    """espeak-ng cuts file names at 200 characters; a job's input dir under a deep RENDER_TMP_DIR
    (scratch dir, job dir, cache part dir) is longer than that."""
    deep = tmp_path / ("d" * 120) / ("e" * 100)
    deep.mkdir(parents=True)
    dest = deep / "part.wav"
    assert len(str(dest)) > 200
    run(espeak.speak("Hello there.", voice="en-us", speed=1.0, dest=dest))
    assert run(probe(dest)).duration > 0.3
