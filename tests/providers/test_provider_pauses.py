"""Pause markers in speech text: exact silence between separately spoken (and cached) pieces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.providers.conftest import run
from tests.support.audio import decode
from worker.errors import PayloadError
from worker.providers import fetch_speech
from worker.providers.pauses import PauseMarkerError, split_pauses
from worker.render import RenderSettings, parse_spec, render

pytestmark = pytest.mark.timeout(60)
SPEECH_FLOOR = 10 ** (-50 / 20)  # where speech begins and ends at a pause (-50 dBFS)


def gaps(path: Path, floor: float = SPEECH_FLOOR, n: int = 2) -> list[tuple[float, float]]:
    """The ``n`` longest silences of ``path`` as ``(start_s, length_s)`` in time order: from the
    last sample at or above ``floor`` to the next one."""
    x, sr = decode(path)
    loud = np.flatnonzero(np.abs(x).max(axis=1) >= floor)
    d = np.diff(loud)
    longest = sorted(np.argsort(d)[-n:])
    return [((loud[i] + 1) / sr, (d[i] - 1) / sr) for i in longest]


def test_markers_split_the_text():
    text = "One. [pause 10s] Two. [PAUSE 1.5s]<break time=\"500ms\"/> Three. <break time='2s' />"
    assert split_pauses(text) == ["One.", 10.0, "Two.", 2.0, "Three.", 2.0]
    assert split_pauses("No markers here.") == ["No markers here."]
    assert split_pauses("[pause 300s] Late start.") == [300.0, "Late start."]


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("Hi [pause ten] there", "malformed pause marker '[pause ten]'"),
        ("Hi [pause 10] there", "malformed"),  # a unit is required
        ("Hi [pause 10s there", "malformed"),
        ('Hi <break strength="strong"/> there', "malformed"),
        ("Hi [pause 301s] there", "out of range: pauses are 0.1 to 300 s"),
        ("Hi [pause 50ms] there", "out of range"),
        ("[pause 5s]", "must contain words to speak"),
    ],
)
def test_bad_markers_fail_the_job_naming_the_field(text, rule):
    with pytest.raises(PauseMarkerError, match=rule.replace("[", r"\[").replace("]", r"\]")):
        split_pauses(text)
    spec = {
        "spec_version": 1,
        "duration_s": 30,
        "layers": [{"type": "noise"}, {"type": "speech", "text": text}],
    }
    with pytest.raises(PayloadError) as err:
        parse_spec(spec)
    assert err.value.field == "layers[1].text" and rule.split("'")[0] in err.value.rule


def test_a_thirty_minute_script_fits_a_speech_layer():
    script = "Breathe in slowly, and let the breath go. [pause 10s] " * 500  # ~27,000 characters
    assert 25_000 < len(script) < 100_000
    assert parse_spec(
        {"spec_version": 1, "duration_s": "fit", "layers": [{"type": "speech", "text": script}]}
    )
    with pytest.raises(PayloadError, match="at most 100000 characters"):
        parse_spec(
            {"spec_version": 1, "duration_s": "fit", "layers": [{"type": "speech", "text": "a" * 100_001}]}
        )


def test_espeak_pauses_are_exact(out_dir, make_settings):
    settings = make_settings(provider_cache_enabled=False)
    path = run(
        fetch_speech(
            text='[pause 1s] Breathe in. [pause 10s] And out. <break time="1500ms"/> Rest now. [pause 2s]',
            provider="espeak",
            voice=None,
            model=None,
            out_dir=out_dir,
            settings=settings,
        )  # fmt: skip
    )
    (_, first), (_, second) = gaps(path)
    assert abs(first - 10.0) <= 0.002 and abs(second - 1.5) <= 0.002
    x, sr = decode(path)
    loud = np.flatnonzero(np.abs(x).max(axis=1) >= SPEECH_FLOOR)
    assert abs(loud[0] / sr - 1.0) <= 0.002  # a leading pause: speech starts after it
    assert abs((len(x) - loud[-1] - 1) / sr - 2.0) <= 0.002  # a trailing one: silence after the last word


def test_each_piece_is_spoken_and_cached_on_its_own(fake_openai, make_settings, out_dir):
    settings = make_settings(fake_openai)
    text = "First part. [pause {}] Second part."
    path = run(fetch_speech(text=text.format("2s"), provider="openai", voice=None, model=None,
                            out_dir=out_dir, settings=settings))  # fmt: skip
    assert [r.json()["input"] for r in fake_openai.requests] == ["First part.", "Second part."]
    ((_, gap),) = gaps(path, n=1)
    assert abs(gap - 2.0) <= 0.002
    again = run(fetch_speech(text=text.format("3500ms"), provider="openai", voice=None, model=None,
                             out_dir=out_dir / "again", settings=settings))  # fmt: skip
    assert len(fake_openai.requests) == 2  # both pieces came from the cache
    assert abs(gaps(again, n=1)[0][1] - 3.5) <= 0.002


def test_pause_timing_holds_in_the_rendered_master(tmp_path):
    spec = parse_spec(
        {
            "spec_version": 1, "duration_s": "fit", "tail_s": 1,
            "layers": [{"type": "speech", "provider": "espeak", "start_s": 0.5,
                        "text": "Close your eyes. [pause 5s] Open them again."}],
            "output": {"preview": {"bitrate_kbps": 64}},
        }
    )  # fmt: skip
    speech = run(fetch_speech(text=spec.layers[0].text, provider="espeak", voice=None, model=None,
                              out_dir=tmp_path / "in"))  # fmt: skip
    result = run(
        render(spec, {"layers[0]": speech}, tmp_path / "out", settings=RenderSettings(tmp_dir=tmp_path))
    )
    # the master is normalised (gain applied): find speech edges at -50 dB relative to its peak
    x, _ = decode(result.master)
    ((_, gap),) = gaps(result.master, floor=float(np.abs(x).max()) * SPEECH_FLOOR, n=1)
    assert abs(gap - 5.0) <= 0.020
