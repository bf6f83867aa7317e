"""Describing input files: WAV headers read directly must agree with ffprobe; anything unusual
still goes to ffprobe, and broken files still fail naming the layer."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from tests.support.audio import probe
from worker.errors import PayloadError
from worker.render.probe import AudioInfo, probe_audio, read_wav_header

# (ffmpeg output options, expected codec): what providers and users hand us
WAV_KINDS = [
    (["-ar", "22050", "-ac", "1", "-c:a", "pcm_s16le"], "pcm_s16le"),  # espeak-ng's shape
    (["-ar", "48000", "-ac", "2", "-c:a", "pcm_s24le"], "pcm_s24le"),
    (["-ar", "44100", "-ac", "2", "-c:a", "pcm_f32le"], "pcm_f32le"),
    (["-ar", "8000", "-ac", "1", "-c:a", "pcm_u8"], "pcm_u8"),
    (["-ar", "48000", "-ac", "6", "-c:a", "pcm_s16le"], "pcm_s16le"),  # WAVE_FORMAT_EXTENSIBLE
    (["-ar", "44100", "-ac", "2", "-c:a", "pcm_s32le", "-metadata", "title=Calm"], "pcm_s32le"),  # LIST chunk
]


def make_wav(path: Path, seconds: float, options: list[str]) -> Path:
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=300:duration={seconds}",
            *options,
            str(path),
        ],
        check=True,
        timeout=30,
    )
    return path


def described(path: Path) -> AudioInfo:
    return asyncio.run(probe_audio(path, "layers[0]"))


@pytest.mark.parametrize(
    ("options", "codec"), WAV_KINDS, ids=[k[1] + f"-{i}" for i, k in enumerate(WAV_KINDS)]
)
def test_wav_header_agrees_with_ffprobe(tmp_path: Path, options: list[str], codec: str) -> None:
    path = make_wav(tmp_path / "in.wav", 2.5, options)
    info = read_wav_header(path)
    assert info is not None, "a plain WAV is described without ffprobe"
    truth = probe(path)
    assert (info.sample_rate, info.channels, info.codec) == (
        int(truth["sample_rate"]),
        int(truth["channels"]),
        codec,
    )
    assert abs(info.duration_s - float(truth["duration"])) < 0.001
    assert described(path) == info


def test_espeak_output_is_described_from_its_header(speech_wav: Path) -> None:
    info = read_wav_header(speech_wav)
    assert info is not None and info.codec == "pcm_s16le" and info.channels == 1
    assert abs(info.duration_s - float(probe(speech_wav)["duration"])) < 0.001


def test_unusual_files_go_to_ffprobe_and_still_work(tmp_path: Path) -> None:
    whole = make_wav(tmp_path / "whole.wav", 2.0, ["-ac", "1", "-c:a", "pcm_s16le"])
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(whole.read_bytes()[:-20_000])  # header promises more than the file holds
    streamed = tmp_path / "streamed.wav"  # written to a pipe: the header cannot say the length
    streamed.write_bytes(
        subprocess.run(
            [
                "ffmpeg",
                "-nostdin",
                "-loglevel",
                "error",
                "-f",
                "lavfi",
                "-i",
                "sine=duration=2",
                "-c:a",
                "pcm_s16le",
                "-f",
                "wav",
                "pipe:1",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        ).stdout
    )
    flac = make_wav(tmp_path / "tone.flac", 2.0, [])
    for path in (truncated, streamed, flac):
        assert read_wav_header(path) is None, path.name
        info = described(path)
        assert info.sample_rate > 0 and 1.0 < info.duration_s <= 2.0 + 1e-3, (path.name, info)


@pytest.mark.parametrize("content", [b"RIFF\x10\x00\x00\x00WAVEjunk", b"this is not audio\n" * 50, b""])
def test_broken_files_fail_naming_the_layer(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "voice.wav"
    path.write_bytes(content)
    with pytest.raises(
        PayloadError, match=r"^invalid payload: layers\[0\]: input file is not decodable audio$"
    ):
        described(path)


def test_empty_wav_is_named_empty(tmp_path: Path) -> None:
    header = make_wav(tmp_path / "one.wav", 0.001, ["-ac", "1", "-c:a", "pcm_s16le"])
    with pytest.raises(PayloadError, match=r"layers\[0\]: input audio is empty"):
        described(header)
