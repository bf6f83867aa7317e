"""Looped inputs, exact to the sample and crossfaded at the seam.

Looping a compressed file with ffmpeg's ``-stream_loop`` decodes it again at every pass, and an
MP3's encoder delay comes back each time (about 25 ms of silence per seam: a 300 s track over a
4 s loop fell silent 1.85 s early). So a looped input is decoded once to float PCM; the loop is
then that PCM, whose length is exact.

An input whose end does not meet its start clicks at every seam. Unless the seam is already
smooth, the loop becomes ``intro`` (frames ``0 .. L-c``, played once) followed by ``unit``
repeated: an equal-power crossfade of the last ``c`` frames into the first ``c``, then frames
``c .. L-c``. The period is ``L - c`` and every seam sits inside a crossfade. A seamless input
(its last sample flows into its first) is looped as it is, period ``L``.
"""

from __future__ import annotations

import math
import struct
from array import array
from pathlib import Path

from worker.errors import PayloadError
from worker.render.ffmpeg_process import run_ffmpeg
from worker.render.sources import LoopFiles

CHANNELS, SAMPLE_BYTES = 2, 4  # decoded as interleaved stereo float32
FRAME_BYTES = CHANNELS * SAMPLE_BYTES
EDGE_FRAMES = 2048  # frames at each end that judge whether the seam is already smooth
SMOOTH_FACTOR = 1.5  # seamless: the seam's step is no larger than 1.5x the largest step near it
COPY_CHUNK = 1 << 20


def decode_command(src: Path, dst: Path, sample_rate: int, ffmpeg_path: str) -> list[str]:
    """Decode ``src`` to interleaved stereo float32 WAV at the track rate (no metadata chunks)."""
    return [
        ffmpeg_path, "-y", "-i", str(src), "-map", "0:a:0", "-vn",
        "-map_metadata", "-1", "-bitexact", "-ar", str(sample_rate), "-ac", str(CHANNELS),
        "-acodec", "pcm_f32le", "-f", "wav", str(dst),
    ]  # fmt: skip


def data_chunk(path: Path) -> tuple[int, int]:
    """(offset, size) of the ``data`` chunk of a WAV file ffmpeg wrote."""
    with path.open("rb") as f:
        head = f.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise PayloadError("layers", "decoded loop is not a WAV file")
        while chunk := f.read(8):
            if len(chunk) < 8:
                break
            name, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if name == b"data":
                return f.tell(), size
            f.seek(size + (size & 1), 1)
    raise PayloadError("layers", "decoded loop has no audio")


def _read(path: Path, offset: int, frame: int, frames: int) -> array[float]:
    out = array("f")
    with path.open("rb") as f:
        f.seek(offset + frame * FRAME_BYTES)
        out.frombytes(f.read(frames * FRAME_BYTES))
    return out


def is_seamless(head: array[float], tail: array[float]) -> bool:
    """Whether the step from the last frame into the first is no larger than the steps near it."""
    steps = [abs(head[0] - tail[-2]), abs(head[1] - tail[-1])]
    near = max(
        (abs(x[i + CHANNELS] - x[i]) for x in (head, tail) for i in range(len(x) - CHANNELS)), default=0.0
    )
    return max(steps) <= SMOOTH_FACTOR * near + 1e-6


def crossfade(tail: array[float], head: array[float]) -> array[float]:
    """Equal-power crossfade (cos/sin) of ``tail`` out and ``head`` in, interleaved stereo."""
    frames = len(head) // CHANNELS
    out = array("f", bytes(len(head) * SAMPLE_BYTES))
    for i in range(frames):
        angle = math.pi / 2 * (i + 0.5) / frames
        g_out, g_in = math.cos(angle), math.sin(angle)
        for c in range(CHANNELS):
            k = i * CHANNELS + c
            out[k] = tail[k] * g_out + head[k] * g_in
    return out


def write_unit(src: Path, offset: int, frames: int, fade: int, dst: Path) -> None:
    """``dst``: a WAV of the crossfade (last ``fade`` frames into the first) then frames
    ``fade .. frames - fade`` of ``src``, copied in chunks (never the whole loop in memory)."""
    xf = crossfade(_read(src, offset, frames - fade, fade), _read(src, offset, 0, fade))
    body = (frames - 2 * fade) * FRAME_BYTES
    size = fade * FRAME_BYTES + body
    with src.open("rb") as f, dst.open("wb") as out:
        f.seek(0)
        header = bytearray(f.read(offset))
        struct.pack_into("<I", header, 4, len(header) - 8 + size)
        struct.pack_into("<I", header, offset - 4, size)
        out.write(header)
        out.write(xf.tobytes())
        f.seek(offset + fade * FRAME_BYTES)
        left = body
        while left > 0:
            chunk = f.read(min(COPY_CHUNK, left))
            if not chunk:
                break
            out.write(chunk)
            left -= len(chunk)


async def prepare_loop(
    src: Path, key: str, work: Path, *, sample_rate: int, crossfade_s: float, ffmpeg_path: str,
    duration_s: float, stall_timeout_s: float, redact: list[str],
) -> LoopFiles:  # fmt: skip
    """Decode ``src`` once and lay out its loop in ``work`` (see the module docstring)."""
    stem = key.replace("[", "").replace("]", "")
    pcm = work / f"{stem}-loop.wav"
    cmd = decode_command(src, pcm, sample_rate, ffmpeg_path)
    await run_ffmpeg(cmd, duration_s=duration_s, stall_timeout_s=stall_timeout_s, label="loop decode",
                     redact=redact, cwd=work)  # fmt: skip
    offset, size = data_chunk(pcm)
    frames = size // FRAME_BYTES
    if frames < 2:
        raise PayloadError(key, "input audio is empty")
    edge = min(EDGE_FRAMES, frames // 2)
    head, tail = _read(pcm, offset, 0, edge), _read(pcm, offset, frames - edge, edge)
    fade = min(round(crossfade_s * sample_rate), frames // 3)
    if fade < 1 or is_seamless(head, tail):
        return LoopFiles(source=pcm, intro_frames=0, unit=pcm, period_frames=frames)
    unit = work / f"{stem}-unit.wav"
    write_unit(pcm, offset, frames, fade, unit)
    return LoopFiles(source=pcm, intro_frames=frames - fade, unit=unit, period_frames=frames - fade)
