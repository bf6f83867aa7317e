"""What a listener hears, measured on real renders (issue 12's defects, each the way it was found):
noise colours to their definitions, exact pulse rates, smooth layer edges, sample-exact and
crossfaded loops, the true-peak ceiling on master and preview."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.support.audio import click_db, decode, octave_slopes, true_peak_db, window
from worker.commands.render import main as render_cli
from worker.errors import PermanentError
from worker.render import RenderResult, RenderSettings, parse_spec, render
from worker.render.loudness import GainPlan, Loudness


def run(
    payload: dict, out: Path, settings: RenderSettings, inputs: dict[str, Path] | None = None
) -> RenderResult:
    spec = parse_spec({"spec_version": 1, **payload}, settings)
    return asyncio.run(render(spec, inputs or {}, out, settings=settings))


SLOPES = {"pink": -3.0, "brown": -6.0, "blue": 3.0, "violet": 6.0}


def test_noise_colours_have_their_slopes_and_velvet_is_sparse(
    tmp_path: Path, settings: RenderSettings
) -> None:
    """One render, one colour after another (4 s each); slopes per octave over 100 Hz-10 kHz."""
    colours = [*SLOPES, "velvet"]
    layers = [{"type": "noise", "color": c, "start_s": 4 * i, "duration_s": 4} for i, c in enumerate(colours)]
    r = run({"duration_s": 4 * len(colours), "loudness": {"target_lufs": -30}, "layers": layers},
            tmp_path / "out", settings)  # fmt: skip
    x, sr = decode(r.master)
    for i, colour in enumerate(colours):
        part = window(x, sr, 4 * i + 0.2, 3.6)
        if colour == "velvet":
            nonzero = np.abs(part) > 1e-6
            assert nonzero.mean() < 0.1, f"velvet is dense: {nonzero.mean():.2f} of samples non-zero"
            mags = np.abs(part[nonzero])
            assert np.percentile(mags, 10) > 0.5 * np.percentile(mags, 90)  # impulses of one size
            continue
        slopes = [np.mean(pair) for pair in zip(*(octave_slopes(part[:, c], sr) for c in range(2)))]
        assert all(abs(s - SLOPES[colour]) <= 0.75 for s in slopes), (colour, np.round(slopes, 2))
        assert abs(np.mean(slopes) - SLOPES[colour]) <= 0.25, (colour, np.round(slopes, 2))


def test_isochronic_pulse_rate_is_exact(tmp_path: Path, settings: RenderSettings) -> None:
    """40 Hz pulses: the phase of the 40 Hz envelope component must not drift over 4 s (a rate of
    39.982 Hz drifts 26 degrees)."""
    r = run({"duration_s": 5, "layers": [{"type": "isochronic", "tone_hz": 1000, "rate_hz": 40}]},
            tmp_path / "out", settings)  # fmt: skip
    x, sr = decode(r.master)
    env = np.abs(x[:, 0].astype(np.float64))

    def phase(t0: float) -> float:
        seg = window(env, sr, t0, 1.0)
        n = np.arange(seg.shape[0]) / sr + t0
        return float(np.angle(np.sum(seg * np.exp(-2j * np.pi * 40 * n))))

    drift = np.degrees(np.angle(np.exp(1j * (phase(3.5) - phase(0.5)))))
    assert abs(drift) < 2.0, f"pulse phase drifted {drift:.1f} degrees in 3 s"


def test_layer_edges_without_fades_do_not_click(tmp_path: Path, settings: RenderSettings) -> None:
    """Layers that start and stop inside the track with no fade asked for: a short raised-cosine
    edge, no click (a hard cut measured 27-56 dB above the local level)."""
    r = run({"duration_s": 6, "loudness": {"target_lufs": -20}, "layers": [
        {"type": "binaural", "carrier_hz": 200, "beat_hz": 6, "start_s": 1, "duration_s": 2.013},
        {"type": "solfeggio", "frequency_hz": 528, "start_s": 3.5, "duration_s": 1.2347},
        {"type": "isochronic", "tone_hz": 300, "rate_hz": 7, "start_s": 5, "duration_s": 0.7}]},
        tmp_path / "out", settings)  # fmt: skip
    x, sr = decode(r.master)
    for edge in (1.0, 3.013, 3.5, 4.7347):
        assert click_db(x, sr, edge) < -40, f"click at {edge} s: {click_db(x, sr, edge):.1f} dB"


def make_clip(path: Path, expr: str, seconds: float, sr: int = 44100) -> Path:
    """A stereo clip of an aevalsrc expression of ``t`` (wav, or mp3 by the file's suffix)."""
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                    f"aevalsrc=exprs='{expr}':sample_rate={sr}:duration={seconds}", "-ac", "2", str(path)],
                   check=True)  # fmt: skip
    return path


def block_rms_db(x: np.ndarray, sr: int, block_s: float) -> np.ndarray:
    n = int(block_s * sr)
    blocks = x[: x.shape[0] // n * n].astype(np.float64).reshape(-1, n, x.shape[1])
    return 10 * np.log10(np.mean(np.square(blocks), axis=(1, 2)) + 1e-20)


def test_looped_mp3_keeps_time_and_never_falls_silent(tmp_path: Path, settings: RenderSettings) -> None:
    """20 s over a 0.5 s MP3 loop: no silence at the seams nor at the end (each pass over an MP3 used
    to add its ~25 ms encoder delay: the track fell silent before its end)."""
    loop = make_clip(tmp_path / "loop.mp3", "0.3*sin(2*PI*220*t)", 0.5)
    r = run({"duration_s": 20, "layers": [{"type": "music", "object": "b/loop.mp3"}]},
            tmp_path / "out", settings, {"layers[0]": loop})  # fmt: skip
    x, sr = decode(r.master)
    levels = block_rms_db(window(x, sr, 0.1, 19.8), sr, 0.1)
    assert levels.min() > np.median(levels) - 1.0, (
        f"a 100 ms block fell to {levels.min() - np.median(levels):.1f} dB"
    )


def test_loop_seams_are_crossfaded_and_a_seamless_loop_is_exact(
    tmp_path: Path, settings: RenderSettings
) -> None:
    """A clip whose end does not meet its start (a 1.01 s clip of 440 Hz stops mid-cycle) has no
    click at any seam; a seamless clip (whole cycles) repeats exactly, period = its length."""
    broken = make_clip(tmp_path / "broken.wav", "0.3*sin(2*PI*440*t)", 1.0123)
    seamless = make_clip(tmp_path / "seamless.wav", "0.3*sin(2*PI*441*t)", 1.0)
    r = run({"duration_s": 5, "loudness": {"target_lufs": -20}, "layers": [
             {"type": "music", "object": "b/broken.wav"},
             {"type": "music", "object": "b/seamless.wav", "start_s": 2.5, "duration_s": 2.5}]},
            tmp_path / "out", settings, {"layers[0]": broken, "layers[1]": seamless})  # fmt: skip
    x, sr = decode(r.master, channels=1)
    for t in np.arange(0.3, 2.35, 0.05):  # every seam of the broken clip, wherever it falls
        assert click_db(x, sr, float(t), around_s=0.03) < -40, f"click near {t:.2f} s"
    r2 = run({"duration_s": 4, "loudness": {"target_lufs": -20}, "layers": [{"type": "music", "object": "b/s.wav"}]},
             tmp_path / "out2", settings, {"layers[0]": seamless})  # fmt: skip
    y, sr = decode(r2.master, channels=1)
    a, b = int(0.5 * sr), int(2.5 * sr)
    assert np.abs(y[a:b] - y[a + sr : b + sr]).max() < 1e-4  # the loop repeats exactly, period 1 s
    assert click_db(y, sr, 1.0) < -40 and click_db(y, sr, 2.0) < -40


CLIPPED = "clip(2.5*(sin(2*PI*997*t)+0.8*sin(2*PI*3001*t+1)+0.5*sin(2*PI*5003*t)),-0.95,0.95)"


@pytest.mark.parametrize(("target", "ceiling"), [(-12, -7), (-6, -1)])
def test_true_peak_ceiling_holds_on_master_and_preview(
    tmp_path: Path, settings: RenderSettings, target: float, ceiling: float
) -> None:
    """A clipped, loud bed (inter-sample peaks well above its sample peaks): the master and its
    MP3 preview stay under the ceiling by 4x oversampling (measured -6.64 dBTP for a -7 ceiling, and
    +0.52 dBTP on the preview of a -1 ceiling, before)."""
    bed = make_clip(tmp_path / "bed.wav", CLIPPED, 2.0)
    r = run({"duration_s": 2, "loudness": {"target_lufs": target, "true_peak_dbtp": ceiling},
             "output": {"preview": {"bitrate_kbps": 128}},
             "layers": [{"type": "music", "object": "b/bed.wav", "loop": False}]},
            tmp_path / "out", settings, {"layers[0]": bed})  # fmt: skip
    master, _ = decode(r.master)
    preview, _ = decode(r.preview)
    assert true_peak_db(master) <= ceiling + 0.05, true_peak_db(master)
    assert true_peak_db(preview) <= ceiling + 0.05, true_peak_db(preview)
    assert r.on_target and not r.warnings
    assert abs(r.integrated_lufs - target) <= 1.0


def test_off_target_is_said_loudly_or_fails_the_job(tmp_path: Path, settings: RenderSettings) -> None:
    """-6 LUFS under a -9 dBTP ceiling cannot be met by a tone (its loudness stays under its peak):
    "warn" completes with on_target false and the figures; "fail" fails with them."""
    payload = {"duration_s": 1, "loudness": {"target_lufs": -6, "true_peak_dbtp": -9},
               "layers": [{"type": "solfeggio", "frequency_hz": 528}]}  # fmt: skip
    r = run(payload, tmp_path / "warn", settings)
    assert not r.on_target and r.warnings and "LUFS" in r.warnings[0] and "target -6" in r.warnings[0]
    with pytest.raises(PermanentError, match=r"loudness off target: mix loudness -\d+\.\d LUFS, target -6"):
        run(payload, tmp_path / "fail", settings.model_copy(update={"off_target": "fail"}))


def test_a_true_peak_retry_lowers_the_limiter_below_the_sample_peak_it_reached() -> None:
    """The issue's figures: sample peak -9.8 dBFS, true peak -6.64 dBTP for a -7 ceiling. The retry
    used to set the limiter at -8.46, above every sample: it never engaged."""
    plan = GainPlan(gain_db=0.0, limit_dbtp=None)
    retry = plan.adjusted(Loudness(-12.0, -6.64, None), -12.0, -7.0, -9.8)
    assert retry.limit_dbtp is not None and retry.limit_dbtp <= -9.8 - 0.36


def test_the_full_length_mp3_stays_under_the_ceiling_too(tmp_path: Path, settings: RenderSettings) -> None:
    """The full MP3 (output.full) of the same clipped bed, limited at a -9 dBTP ceiling: encoded from
    a master at the ceiling, its coding overshoot must not take it over (it measured -8.16 dBTP
    before: no limiter, no measurement)."""
    from worker.render.deliverables import make_deliverables

    bed = make_clip(tmp_path / "bed.wav", CLIPPED, 2.0)
    payload = {"duration_s": 2, "loudness": {"target_lufs": -6, "true_peak_dbtp": -9},
               "output": {"full": {"vbr_quality": 9}},
               "layers": [{"type": "music", "object": "b/bed.wav", "loop": False}]}  # fmt: skip
    r = run(payload, tmp_path / "out", settings, {"layers[0]": bed})
    spec = parse_spec({"spec_version": 1, **payload}, settings)
    r, out = asyncio.run(make_deliverables(spec, r, settings=settings))
    assert out.full is not None
    full, _ = decode(out.full)
    assert true_peak_db(full) <= -9 + 0.05, true_peak_db(full)
    assert r.full_true_peak_dbtp is not None and r.full_true_peak_dbtp <= -9


@pytest.fixture
def hot_full_encoder(monkeypatch: pytest.MonkeyPatch) -> list[float | None]:
    """The full MP3's encoder made to overshoot whatever its limiter asks for: it comes out 3 dB
    over the master, limiter or not (a stand-in for lossy coding that overshoots more than the
    re-encodes take off). The limit each encode was asked for is recorded."""
    from worker.render import deliverables
    from worker.render.spec import FullOutput

    asked: list[float | None] = []
    real = deliverables.full_command

    def hot(
        master: Path, dest: Path, full: FullOutput, ffmpeg: str = "ffmpeg", limit_dbtp: float | None = None
    ) -> list[str]:
        asked.append(limit_dbtp)
        cmd = real(master, dest, full, ffmpeg)
        at = cmd.index("-c:a")
        return [*cmd[:at], "-af", "volume=3dB", *cmd[at:]]

    monkeypatch.setattr(deliverables, "full_command", hot)
    return asked


@pytest.mark.timeout(60)
def test_a_full_mp3_left_over_the_ceiling_is_said_loudly_or_fails_the_job(
    tmp_path: Path, hot_full_encoder: list[float | None], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """`python -m worker render` of the clipped bed with output.full, whose MP3 stays over the
    -7 dBTP ceiling after its last encode: "warn" prints the result off target with the full
    MP3's measured true peak; RENDER_OFF_TARGET=fail fails naming the file and the figures. (It
    completed on target before, the miss only in a log line.)"""
    from worker.render.deliverables import MAX_FULL_ENCODES

    bed = make_clip(tmp_path / "bed.wav", CLIPPED, 2.0)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"spec_version": 1, "duration_s": 2,
        "loudness": {"target_lufs": -6, "true_peak_dbtp": -7}, "output": {"full": {"bitrate_kbps": 128}},
        "layers": [{"type": "music", "object": "b/bed.wav", "loop": False}]}))  # fmt: skip
    monkeypatch.setenv("RENDER_TMP_DIR", str(tmp_path / "work"))
    args = [str(spec), "--input", f"layers[0]={bed}", "--quiet"]

    assert render_cli([*args, "--out", str(tmp_path / "warn"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["on_target"] is False, doc["warnings"]
    limits = [x for x in hot_full_encoder if x is not None]  # every encode limited harder, over every time
    assert len(limits) == MAX_FULL_ENCODES and all(a > b for a, b in zip(limits, limits[1:])), limits
    full, _ = decode(tmp_path / "warn" / "full.mp3")
    tp = doc["full_true_peak_dbtp"]
    assert tp == pytest.approx(true_peak_db(full), abs=0.3) and tp > -6
    assert doc["warnings"] == [f"off target: full MP3 true peak {tp:.2f} dBTP over the ceiling -7 dBTP"]
    assert doc["true_peak_dbtp"] <= -7  # the master is fine: the full MP3 alone is off

    monkeypatch.setenv("RENDER_OFF_TARGET", "fail")
    assert render_cli([*args, "--out", str(tmp_path / "fail")]) == 1
    err = capsys.readouterr().err
    assert re.search(
        r"error: loudness off target: full MP3 true peak -?\d+\.\d\d dBTP over the ceiling -7 dBTP", err
    ), err


def test_tones_evaluated_at_a_reduced_rate_sound_as_evaluated_at_the_track_rate(
    tmp_path: Path, settings: RenderSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Expression sources (binaural ramps, isochronic pulses) are evaluated at a fraction of the
    track rate and resampled: the master matches the one evaluated sample by sample (every edge
    included) to within -90 dB of its peak. Besides the hand-picked hard cases, random examples of
    every registered layer type that sounds without an input file, one type at a time (a new type
    is covered without anyone listing it)."""
    import random

    from worker.render import sources
    from worker.render.spec import LAYER_REGISTRY

    master = {"master": {"format": "wav", "bit_depth": 24}}
    hard = {
        "duration_s": 6, "output": master,
        "layers": [
            {"type": "binaural", "carrier_hz": 250, "start_s": 0.5123, "duration_s": 4.2,
             "schedule": [{"t_s": 0, "beat_hz": 10}, {"t_s": 2, "beat_hz": 10}, {"t_s": 5, "beat_hz": 4}]},
            {"type": "isochronic", "tone_hz": 300, "rate_hz": 4, "start_s": 1.25, "gain_db": -6},
            {"type": "isochronic", "tone_hz": 3000, "rate_hz": 40, "gain_db": -12},
        ],
    }  # fmt: skip
    rnd = random.Random(3)
    payloads = {"hard cases": hard} | {
        name: {"duration_s": 2, "output": master, "layers": [kind.example(rnd, 2.0) for _ in range(3)]}
        for name, kind in LAYER_REGISTRY.items()
        if not kind.model.needs_input
    }
    decimations = sources.EVAL_DECIMATIONS
    for name, payload in payloads.items():
        monkeypatch.setattr(sources, "EVAL_DECIMATIONS", decimations)
        reduced, _ = decode(run(payload, tmp_path / name / "reduced", settings).master)
        monkeypatch.setattr(sources, "EVAL_DECIMATIONS", ())
        exact, _ = decode(run(payload, tmp_path / name / "exact", settings).master)
        assert reduced.shape == exact.shape, name
        err = np.abs(reduced - exact).max()
        assert err < np.abs(exact).max() * 10 ** (-90 / 20), (name, err)
