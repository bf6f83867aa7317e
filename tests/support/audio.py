"""Audio analysis helpers for tests: decode with ffmpeg into numpy, find spectral peaks, measure
EBU R128 loudness with ffmpeg's ebur128, RMS and tone level over a window.

Everything decodes through real ffmpeg/ffprobe, so tests assert what a listener would notice.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def probe(path: Path | str) -> dict:
    """ffprobe's first audio stream (sample_rate, channels, codec_name, bit_rate, duration ...) and
    the container duration, as a dict of strings (``format_duration`` added)."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
         "stream=codec_name,sample_rate,channels,bit_rate,duration,bits_per_sample,sample_fmt,bits_per_raw_sample"
         ":format=duration,bit_rate,format_name", "-of", "json", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    data = json.loads(out)
    stream = dict(data["streams"][0])
    stream["format_duration"] = data["format"].get("duration")
    stream["format_bit_rate"] = data["format"].get("bit_rate")
    stream["format_name"] = data["format"].get("format_name")
    return stream


def decode(
    path: Path | str,
    *,
    sample_rate: int | None = None,
    channels: int | None = None,
    start: float | None = None,
    duration: float | None = None,
) -> tuple[np.ndarray, int]:
    """Decode to float32 samples shaped ``(frames, channels)`` via an ffmpeg pipe; returns
    ``(samples, sample_rate)``. Resamples / remixes only when asked."""
    info = probe(path)
    sr = sample_rate or int(info["sample_rate"])
    ch = channels or int(info["channels"])
    cmd = ["ffmpeg", "-v", "error", "-nostdin"]
    if start is not None:
        cmd += ["-ss", f"{start}"]
    if duration is not None:
        cmd += ["-t", f"{duration}"]
    cmd += ["-i", str(path), "-f", "f32le", "-acodec", "pcm_f32le", "-ar", str(sr), "-ac", str(ch), "-"]
    raw = subprocess.run(cmd, check=True, capture_output=True).stdout
    return np.frombuffer(raw, dtype="<f4").reshape(-1, ch), sr


def window(x: np.ndarray, sr: int, start_s: float, dur_s: float) -> np.ndarray:
    """Frames ``[start_s, start_s + dur_s)`` of ``x`` (negative start: from the end)."""
    a = int(round((start_s if start_s >= 0 else x.shape[0] / sr + start_s) * sr))
    return x[a : a + int(round(dur_s * sr))]


def spectrum(mono: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Hann-windowed magnitude spectrum ``(freqs, mags)`` of a 1-D signal."""
    w = np.hanning(mono.shape[0])
    mags = np.abs(np.fft.rfft(mono * w)) / (w.sum() / 2)
    return np.fft.rfftfreq(mono.shape[0], 1 / sr), mags


def peak_hz(mono: np.ndarray, sr: int, lo: float = 20.0, hi: float | None = None) -> float:
    """Frequency of the strongest spectral peak in ``[lo, hi]`` (parabolic interpolation)."""
    freqs, mags = spectrum(mono.astype(np.float64), sr)
    hi = hi or sr / 2
    band = np.where((freqs >= lo) & (freqs <= hi))[0]
    k = band[np.argmax(mags[band])]
    if 0 < k < len(mags) - 1:
        a, b, c = np.log(mags[k - 1 : k + 2] + 1e-20)
        shift = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) != 0 else 0.0
        return float(freqs[k] + shift * (freqs[1] - freqs[0]))
    return float(freqs[k])


def peak_hz_per_channel(x: np.ndarray, sr: int, lo: float = 20.0, hi: float | None = None) -> list[float]:
    """:func:`peak_hz` of each channel of ``x`` (``(frames, channels)``)."""
    return [peak_hz(x[:, c], sr, lo, hi) for c in range(x.shape[1])]


def tone_level_db(mono: np.ndarray, sr: int, freq: float, width_hz: float = 3.0) -> float:
    """Amplitude (dBFS, sine peak) of the strongest component within ``freq +- width_hz``."""
    freqs, mags = spectrum(mono.astype(np.float64), sr)
    band = (freqs >= freq - width_hz) & (freqs <= freq + width_hz)
    return float(20 * np.log10(mags[band].max() + 1e-20))


def rms_db(x: np.ndarray) -> float:
    """RMS level in dBFS over all samples of ``x``."""
    return float(10 * np.log10(np.mean(np.square(x.astype(np.float64))) + 1e-20))


@dataclass(frozen=True)
class Loudness:
    integrated_lufs: float
    true_peak_dbtp: float
    lra: float


def ebur128(path: Path | str) -> Loudness:
    """Integrated loudness, true peak and LRA of a file, by ffmpeg's ebur128 (``peak=true``)."""
    err = subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-i", str(path),
         "-af", "ebur128=peak=true:framelog=verbose", "-f", "null", "-"],
        check=True, capture_output=True, text=True,
    ).stderr  # fmt: skip
    block = err[err.rfind("Summary:") :]

    def grab(label: str) -> float:
        m = re.search(rf"^\s*{label}:\s+(-?inf|-?\d+(?:\.\d+)?)", block, re.MULTILINE)
        assert m, f"no {label} in ebur128 summary"
        return float("-inf") if "inf" in m.group(1) else float(m.group(1))

    return Loudness(grab("I"), grab("Peak"), grab("LRA"))


def make_tone(path: Path, freq: float, seconds: float, sample_rate: int = 44100, channels: int = 2) -> Path:
    """Write a sine tone file with ffmpeg (handy as stand-in music)."""
    subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
         f"sine=frequency={freq}:sample_rate={sample_rate}:duration={seconds}", "-ac", str(channels), str(path)],
        check=True,
    )  # fmt: skip
    return path


def make_speech(path: Path, text: str, voice: str = "en") -> Path:
    """Speak ``text`` with espeak-ng into a wav file."""
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True, capture_output=True)
    return path


def psd(mono: np.ndarray, sr: int, nperseg: int) -> tuple[np.ndarray, np.ndarray]:
    """Welch's power spectral density (Hann windows, half overlap), numpy only."""
    x = mono.astype(np.float64)
    w = np.hanning(nperseg)
    starts = range(0, x.shape[0] - nperseg + 1, nperseg // 2)
    p = np.mean([np.abs(np.fft.rfft(x[a : a + nperseg] * w)) ** 2 for a in starts], axis=0)
    return np.fft.rfftfreq(nperseg, 1 / sr), p / (sr * np.sum(w * w))


def octave_slopes(mono: np.ndarray, sr: int, lo: float = 100.0, hi: float = 10000.0) -> list[float]:
    """Slope of the power spectrum in dB per octave between adjacent octave bands from ``lo`` to
    ``hi`` (band-averaged Welch PSD; a power law f^a gives exactly 10*log10(2^a) per octave)."""
    f, p = psd(mono, sr, 8192)
    edges = [lo * 2.0**k for k in range(int(np.log2(hi / lo)) + 1)] + [hi]
    bands = [p[(f >= a) & (f < b)].mean() for a, b in zip(edges, edges[1:])]
    centres = [np.sqrt(a * b) for a, b in zip(edges, edges[1:])]
    return [
        float(10 * np.log10(bands[k + 1] / bands[k]) / np.log2(centres[k + 1] / centres[k]))
        for k in range(len(bands) - 1)
    ]


def click_db(x: np.ndarray, sr: int, t: float, around_s: float = 0.02) -> float:
    """Worst click near ``t`` seconds: the peak of the signal above 4 kHz within ``around_s`` of
    ``t``, in dB relative to the RMS of the louder side of ``t`` (50-250 ms away). A smooth edge of a
    low tone is far below -40 dB; a hard cut is near 0 dB."""
    mono = x.mean(axis=1) if x.ndim == 2 else x
    spec = np.fft.rfft(mono.astype(np.float64))
    spec[np.fft.rfftfreq(mono.shape[0], 1 / sr) < 4000] = 0  # zero-phase brick-wall high-pass
    hp = np.fft.irfft(spec, mono.shape[0])
    a, b = int((t - around_s) * sr), int((t + around_s) * sr)
    spike = float(np.abs(hp[max(a, 0) : max(b, 1)]).max())
    sides = [mono[max(int((t - 0.25) * sr), 0) : max(int((t - 0.05) * sr), 0)],
             mono[int((t + 0.05) * sr) : int((t + 0.25) * sr)]]  # fmt: skip
    local = max(float(np.sqrt(np.mean(np.square(s.astype(np.float64))))) if s.size else 0.0 for s in sides)
    return float(20 * np.log10(spike / local + 1e-12))


def true_peak_db(x: np.ndarray) -> float:
    """True peak (dBTP) by 4x oversampling (polyphase resampling), over all channels."""
    x = x.reshape(x.shape[0], -1).astype(np.float64)
    n = x.shape[0]
    spec = np.fft.rfft(x, axis=0)
    up = np.fft.irfft(spec, 4 * n, axis=0) * 4  # band-limited interpolation (numpy only: fast import)
    return float(20 * np.log10(np.abs(up).max() + 1e-20))
