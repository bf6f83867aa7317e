"""Real ffmpeg renders, judged by analysing the files: frequencies, durations, loudness, fades,
ducking and the preview."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from tests.support.audio import (
    decode,
    ebur128,
    make_tone,
    peak_hz,
    peak_hz_per_channel,
    probe,
    rms_db,
    tone_level_db,
    window,
)
from worker.errors import PayloadError
from worker.render import RenderResult, RenderSettings, parse_spec, render


def run(payload: dict, out: Path, settings: RenderSettings, inputs: dict[str, Path] | None = None,
        progress: list[float] | None = None) -> RenderResult:  # fmt: skip
    spec = parse_spec({"spec_version": 1, **payload}, settings)
    cb = progress.append if progress is not None else None
    return asyncio.run(render(spec, inputs or {}, out, on_progress=cb, settings=settings))


def assert_loudness(result: RenderResult) -> None:
    """The master meets target +-1 LU and the ceiling, measured independently, and the result says so."""
    m = ebur128(result.master)
    if result.anchor == "speech":  # the voice at the target, the mix wherever its balance puts it
        assert result.speech_lufs is not None and abs(result.speech_lufs - result.target_lufs) <= 1.0
    else:
        assert abs(m.integrated_lufs - result.target_lufs) <= 1.0, m
    assert m.true_peak_dbtp <= result.ceiling_dbtp, m
    assert abs(result.integrated_lufs - m.integrated_lufs) <= 0.2
    assert abs(result.true_peak_dbtp - m.true_peak_dbtp) <= 0.2
    assert result.on_target


def test_binaural_fixed_beat_left_carrier_right_carrier_plus_beat(
    tmp_path: Path, settings: RenderSettings
) -> None:
    progress: list[float] = []
    r = run({"duration_s": 4, "layers": [{"type": "binaural", "carrier_hz": 200, "beat_hz": 10}]},
            tmp_path / "out", settings, progress=progress)  # fmt: skip
    x, sr = decode(r.master)
    left, right = peak_hz_per_channel(window(x, sr, 0.5, 3), sr)
    assert left == pytest.approx(200, abs=0.3) and right == pytest.approx(210, abs=0.3)
    assert abs(x.shape[0] / sr - 4.0) <= 0.02 and r.duration_s == pytest.approx(4.0, abs=0.001)
    assert_loudness(r)
    assert progress and progress[-1] == 100 and progress == sorted(progress)
    assert list((tmp_path / "work").iterdir()) == []  # temp dir removed


def test_binaural_ramp_beat_measured_at_start_and_end_without_clicks(
    tmp_path: Path, settings: RenderSettings
) -> None:
    schedule = [{"t_s": 0, "beat_hz": 10}, {"t_s": 2, "beat_hz": 10}, {"t_s": 6, "beat_hz": 4}]
    r = run({"duration_s": 8, "layers": [{"type": "binaural", "carrier_hz": 250, "schedule": schedule}]},
            tmp_path / "out", settings)  # fmt: skip
    x, sr = decode(r.master)
    l0, r0 = peak_hz_per_channel(window(x, sr, 0.0, 2.0), sr)
    l1, r1 = peak_hz_per_channel(window(x, sr, 6.0, 2.0), sr)
    assert l0 == pytest.approx(250, abs=0.3) and l1 == pytest.approx(250, abs=0.3)
    assert r0 - l0 == pytest.approx(10, abs=0.3)
    assert r1 - l1 == pytest.approx(4, abs=0.3)
    # mid-ramp (t = 4 s) the beat is halfway: 7 Hz
    lm, rm = peak_hz_per_channel(window(x, sr, 3.75, 0.5), sr)
    assert rm - lm == pytest.approx(7, abs=1.0)
    # phase-continuous: no sample step larger than a sine at the top frequency can make
    amp = np.abs(x[:, 1]).max()
    assert np.abs(np.diff(x[:, 1])).max() <= 2 * np.pi * 260 / sr * amp * 1.05
    assert_loudness(r)


def test_solfeggio_peak_and_isochronic_pulse(tmp_path: Path, settings: RenderSettings) -> None:
    r = run(
        {"duration_s": 3, "layers": [{"type": "solfeggio", "frequency_hz": 528}]}, tmp_path / "a", settings
    )
    x, sr = decode(r.master)
    assert peak_hz(x[:, 0], sr) == pytest.approx(528, abs=0.3)
    assert peak_hz(x[:, 1], sr) == pytest.approx(528, abs=0.3)
    assert_loudness(r)

    r = run(
        {"duration_s": 3, "layers": [{"type": "isochronic", "tone_hz": 300, "rate_hz": 4}]},
        tmp_path / "b",
        settings,
    )
    x, sr = decode(r.master)
    env = np.abs(x[:, 0]).reshape(-1, sr // 100).max(axis=1)  # 10 ms envelope
    assert peak_hz(env - env.mean(), 100, lo=1, hi=20) == pytest.approx(4, abs=0.3)
    assert env.min() < 0.05 * env.max()  # pulses go (near) silent between beats


def test_noise_colors_fades_and_flac_master(tmp_path: Path, settings: RenderSettings) -> None:
    r = run({"duration_s": 4, "fade_in_s": 1, "fade_out_s": 1, "sample_rate": 48000,
             "layers": [{"type": "noise", "color": "brown"}, {"type": "noise", "color": "white", "gain_db": -20}],
             "output": {"master": {"format": "flac", "bit_depth": 16}, "preview": {"vbr_quality": 4}}},
            tmp_path / "out", settings)  # fmt: skip
    info = probe(r.master)
    assert (info["codec_name"], info["sample_rate"], info["sample_fmt"]) == ("flac", "48000", "s16")
    x, sr = decode(r.master)
    assert abs(x.shape[0] / sr - 4.0) <= 0.02
    body = rms_db(window(x, sr, 1.5, 1.0))
    assert rms_db(window(x, sr, 0.0, 0.01)) < body - 40  # near-silence at the edges
    assert rms_db(window(x, sr, -0.01, 0.01)) < body - 40
    assert rms_db(window(x, sr, 0.5, 0.1)) < body - 3  # halfway through the fade-in: quieter
    # decorrelated stereo noise
    mid = window(x, sr, 1.5, 1.0)
    assert abs(np.corrcoef(mid[:, 0], mid[:, 1])[0, 1]) < 0.5
    assert_loudness(r)
    assert probe(r.preview)["sample_rate"] == "48000"


def test_speech_over_music_ducking_lowers_music_by_measured_amount(
    tmp_path: Path, settings: RenderSettings, speech_wav: Path
) -> None:
    music = make_tone(tmp_path / "music.wav", 1500, 2.5)  # looped to fill the track

    def music_drop(duck: bool) -> float:
        r = run({"duration_s": 7, "layers": [
                    {"type": "speech", "text": "(file)", "start_s": 2.5},
                    {"type": "music", "object": "bucket/music.wav", "gain_db": -6, "duck": duck}]},
                tmp_path / f"out-{duck}", settings, {"layers[0]": speech_wav, "layers[1]": music})  # fmt: skip
        assert_loudness(r)
        x, sr = decode(r.master, channels=1)
        before = tone_level_db(window(x, sr, 0.5, 1.5)[:, 0], sr, 1500)
        during = tone_level_db(window(x, sr, 3.0, 1.5)[:, 0], sr, 1500)
        return before - during

    assert music_drop(True) >= 6.0  # dB under speech
    assert abs(music_drop(False)) <= 1.0


@pytest.mark.timeout(60)
def test_beds_louder_than_the_voice_normalise_the_mix_and_the_result_says_so(
    tmp_path: Path, settings: RenderSettings, speech_wav: Path
) -> None:
    """Anchored on the speech (the default with a speech layer), a bed louder than the voice would
    take the programme over the target (the pipeline measured -8.6 LUFS for -16): the whole mix is
    brought to the target instead, and the result says anchor "mix"."""
    r = run({"duration_s": 4, "layers": [{"type": "speech", "text": "(file)", "gain_db": -6},
             {"type": "binaural", "carrier_hz": 200, "beat_hz": 6}]},
            tmp_path / "out", settings, {"layers[0]": speech_wav})  # fmt: skip
    assert (r.anchor, r.speech_lufs) == ("mix", None)
    assert_loudness(r)  # the programme at the target, not over it


def test_fit_duration_is_voice_plus_tail_and_loud_speech_is_limited(
    tmp_path: Path, settings: RenderSettings, speech_wav: Path
) -> None:
    voice = float(probe(speech_wav)["duration"])
    r = run({"duration_s": "fit", "tail_s": 1.5, "loudness": {"target_lufs": -12, "true_peak_dbtp": -1},
             "layers": [{"type": "speech", "text": "(file)", "start_s": 0.5}, {"type": "noise", "gain_db": -30}]},
            tmp_path / "out", settings, {"layers[0]": speech_wav})  # fmt: skip
    x, sr = decode(r.master)
    assert abs(x.shape[0] / sr - (0.5 + voice + 1.5)) <= 0.02
    assert r.limiter  # speech's crest factor needs the limiter at -12 LUFS / -1 dBTP
    assert_loudness(r)


def test_mp3_preview_rate_bitrate_and_length(tmp_path: Path, settings: RenderSettings) -> None:
    r = run({"duration_s": 6, "sample_rate": 48000, "layers": [{"type": "noise", "color": "pink"}],
             "loudness": {"target_lufs": -23},
             "output": {"preview": {"bitrate_kbps": 128, "seconds": 3}}}, tmp_path / "out", settings)  # fmt: skip
    info = probe(r.preview)
    assert (info["codec_name"], info["sample_rate"], info["channels"]) == ("mp3", "48000", 2)
    assert int(info["bit_rate"]) == 128000
    y, sr = decode(r.preview)
    assert sr == 48000 and abs(y.shape[0] / sr - 3.0) <= 0.03
    assert (
        r.preview_duration_s == 3 and r.master.suffix == ".wav" and probe(r.master)["bits_per_sample"] == 24
    )
    assert_loudness(r)


def test_non_audio_input_fails_naming_the_layer(tmp_path: Path, settings: RenderSettings) -> None:
    bogus = tmp_path / "voice.wav"
    bogus.write_text("this is not audio\n" * 100)
    with pytest.raises(PayloadError) as exc:
        run({"duration_s": 3, "layers": [{"type": "noise"}, {"type": "speech", "text": "hi"}]},
            tmp_path / "out", settings, {"layers[1]": bogus})  # fmt: skip
    assert str(exc.value) == "invalid payload: layers[1]: input file is not decodable audio"


def test_silent_mix_is_a_payload_error(tmp_path: Path, settings: RenderSettings) -> None:
    with pytest.raises(PayloadError, match="silent"):
        run({"duration_s": 2, "layers": [{"type": "solfeggio", "start_s": 1.5, "gain_db": -60}]},
            tmp_path / "out", settings)  # fmt: skip
    assert list((tmp_path / "work").iterdir()) == []


def test_legacy_music_job_renders_the_supplied_clip(tmp_path: Path, settings: RenderSettings) -> None:
    clip = make_tone(tmp_path / "gen.wav", 440, 6)
    spec = parse_spec({"prompt": "calm piano", "duration": 5, "quality": "low"}, settings)
    r = asyncio.run(render(spec, {"layers[0]": clip}, tmp_path / "out", settings=settings))
    x, sr = decode(r.master)
    assert abs(x.shape[0] / sr - 5.0) <= 0.02 and peak_hz(x[:, 0], sr) == pytest.approx(440, abs=0.5)
    assert probe(r.master)["bits_per_sample"] == 16 and int(probe(r.preview)["bit_rate"]) == 128000
    assert_loudness(r)
