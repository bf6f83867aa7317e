"""Describe an input file before rendering: it must be decodable audio with a duration.

Plain PCM/float WAV files (what espeak-ng and most providers hand over) are described from their
header, in microseconds; anything else, or any WAV whose header is unusual or disagrees with the
file's size, goes to ffprobe (about 55 ms a call: the cost of loading ffmpeg's libraries).
"""

from __future__ import annotations

import asyncio
import json
import struct
from dataclasses import dataclass
from pathlib import Path

from worker.errors import PayloadError, RetryableError, check_exit

PROBE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class AudioInfo:
    duration_s: float
    sample_rate: int
    channels: int
    codec: str
    container: str = ""
    """``wav`` when read from a plain RIFF/WAVE header (then ffmpeg's wav demuxer reads it)."""


async def probe_audio(path: Path, key: str, ffprobe: str = "ffprobe") -> AudioInfo:
    """Describe the first audio stream of ``path``; :class:`PayloadError` naming ``key`` if the
    file is missing, not audio, or empty."""
    if not path.is_file():
        raise PayloadError(key, "input audio file is missing")
    info = read_wav_header(path)
    if info is None:
        info = await _ffprobe(path, key, ffprobe)
    if not info.duration_s > 0.01:
        raise PayloadError(key, "input audio is empty")
    return info


async def _ffprobe(path: Path, key: str, ffprobe: str) -> AudioInfo:
    proc = await asyncio.create_subprocess_exec(
        ffprobe, "-v", "error", "-select_streams", "a:0",
        "-show_entries", "stream=codec_name,sample_rate,channels,duration:format=duration",
        "-of", "json", "--", str(path),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), PROBE_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RetryableError(f"ffprobe timed out on {key}") from None
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    check_exit("ffprobe", proc.returncode)
    try:
        data = json.loads(out or b"{}")
        stream = data["streams"][0]
        duration = float(stream.get("duration") or data.get("format", {}).get("duration") or 0.0)
        info = AudioInfo(duration, int(stream.get("sample_rate") or 0), int(stream.get("channels") or 0),
                         str(stream.get("codec_name") or ""))  # fmt: skip
    except (ValueError, KeyError, IndexError, TypeError):
        raise PayloadError(key, "input file is not decodable audio") from None
    if proc.returncode != 0 or info.sample_rate <= 0 or info.channels <= 0:
        raise PayloadError(key, "input file is not decodable audio")
    return info


_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE
_CODECS = {
    (_PCM, 8): "pcm_u8",
    (_PCM, 16): "pcm_s16le",
    (_PCM, 24): "pcm_s24le",
    (_PCM, 32): "pcm_s32le",
    (_FLOAT, 32): "pcm_f32le",
    (_FLOAT, 64): "pcm_f64le",
}
_HEADER_BYTES = 64 * 1024


def read_wav_header(path: Path) -> AudioInfo | None:
    """AudioInfo of a plain RIFF/WAVE PCM or float file from its header; None when the file is
    anything else or its header is not exactly consistent (then ffprobe decides)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as file:
            head = file.read(_HEADER_BYTES)
    except OSError:
        return None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    fmt: tuple[int, int, int, int, int] | None = None
    pos = 12
    while pos + 8 <= len(head):
        chunk, length = head[pos : pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        body = pos + 8
        if chunk == b"fmt ":
            if fmt is not None or length < 16 or body + length > len(head):
                return None
            tag, channels, rate, byte_rate, align, bits = struct.unpack_from("<HHIIHH", head, body)
            if tag == _EXTENSIBLE:
                if length < 40:
                    return None
                tag = struct.unpack_from("<H", head, body + 24)[0]  # the sub-format GUID's first field
            fmt = (tag, channels, rate, align, bits)
            if byte_rate != rate * align:
                return None
        elif chunk == b"data":
            if fmt is None or length == 0xFFFFFFFF or body + length > size:
                return None  # no format yet, streamed (unknown length) or truncated
            tag, channels, rate, align, bits = fmt
            codec = _CODECS.get((tag, bits))
            if (
                codec is None
                or not 1 <= channels <= 32
                or not 1000 <= rate <= 768_000
                or align != channels * bits // 8
                or length % align
            ):
                return None
            return AudioInfo(length / align / rate, rate, channels, codec, "wav")
        pos = body + length + (length & 1)
    return None
