"""Small, real audio payloads for the fakes to serve, made once per process by ffmpeg."""

from __future__ import annotations

import functools
import subprocess
import tempfile
from pathlib import Path

CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "opus": "audio/ogg",
    "aac": "audio/aac",
}
_CODECS = {
    "mp3": ["-c:a", "libmp3lame", "-b:a", "64k"],
    "wav": ["-c:a", "pcm_s16le"],
    "flac": ["-c:a", "flac"],
    "opus": ["-c:a", "libopus", "-f", "ogg"],
    "aac": ["-c:a", "aac", "-f", "adts"],
}


@functools.lru_cache(maxsize=32)
def sample_audio(fmt: str = "mp3", seconds: float = 0.6, freq: float = 440.0, rate: int = 24000) -> bytes:
    """``seconds`` of a sine tone at ``freq`` Hz encoded as ``fmt`` (mp3, wav, flac, opus, aac)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"a.{fmt}"
        subprocess.run(
            [
                "ffmpeg",
                "-nostdin",
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                f"sine=f={freq}:r={rate}:d={seconds}",
                "-ac",
                "1",
                *_CODECS[fmt],
                str(out),
            ],
            check=True,
            timeout=30,
        )
        return out.read_bytes()
