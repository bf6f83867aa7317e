"""Waveform peaks for players: the BBC audiowaveform JSON format, version 2.

``{"version": 2, "channels": 1, "sample_rate": 44100, "samples_per_pixel": 4410, "bits": 8,
"length": <pixels>, "data": [min0, max0, min1, max1, ...]}`` -- what peaks.js (waveform-data) and
wavesurfer draw at once, without decoding the audio in the browser.

The audio never enters Python: ffmpeg downmixes to mono (the channels' mean, as audiowaveform),
converts to 16-bit, cuts it into frames of exactly ``samples_per_pixel`` samples (the last may be
shorter) and measures each frame's minimum and maximum (``astats``); Python reads those two numbers
per pixel from ffmpeg's output stream, line by line. 8-bit peaks are the 16-bit ones shifted right
by 8 bits (floor division by 256), as audiowaveform ``--bits 8`` does.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from worker.errors import PermanentError, RetryableError

PIXELS_PER_SECOND = 10
"""The default resolution: ``samples_per_pixel`` = a tenth of the sample rate."""
PEAKS_TIMEOUT_S = 600.0
_MIN_KEY, _MAX_KEY = "lavfi.astats.Overall.Min_level=", "lavfi.astats.Overall.Max_level="


def peaks_command(audio: Path, samples_per_pixel: int, ffmpeg: str = "ffmpeg") -> list[str]:
    """ffmpeg printing, per frame of ``samples_per_pixel`` mono 16-bit samples, its min and max."""
    chain = (
        "aformat=channel_layouts=stereo,pan=mono|c0=0.5*c0+0.5*c1,aformat=sample_fmts=s16,"
        f"asetnsamples=n={int(samples_per_pixel)}:p=0,"
        "astats=metadata=1:reset=1:measure_perchannel=none:measure_overall=Min_level+Max_level,"
        "ametadata=mode=print:file=-"
    )
    return [ffmpeg, "-nostdin", "-v", "error", "-i", str(audio), "-af", chain, "-f", "null", "-"]


async def compute_peaks(
    audio: Path, *, samples_per_pixel: int, bits: int = 8, ffmpeg: str = "ffmpeg"
) -> list[int]:
    """Min and max of each pixel of ``audio``, interleaved, scaled to ``bits`` (8 or 16)."""
    proc = await asyncio.create_subprocess_exec(
        *peaks_command(audio, samples_per_pixel, ffmpeg),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    shift = 16 - bits
    data: list[int] = []

    async def read() -> bytes:
        assert proc.stdout is not None and proc.stderr is not None
        async for raw in proc.stdout:
            line = raw.decode("ascii", "replace").strip()
            if line.startswith(_MIN_KEY):
                data.append(int(float(line[len(_MIN_KEY) :])) >> shift)
            elif line.startswith(_MAX_KEY):
                data.append(int(float(line[len(_MAX_KEY) :])) >> shift)
        return await proc.stderr.read(4000)

    try:
        err = await asyncio.wait_for(read(), PEAKS_TIMEOUT_S)
        rc = await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RetryableError(f"waveform peaks timed out after {PEAKS_TIMEOUT_S:g} s") from None
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    if rc != 0 or len(data) % 2:
        raise PermanentError(f"waveform peaks failed (exit {rc}): {err.decode(errors='replace')[:300]}")
    return data


async def write_peaks(
    audio: Path,
    dest: Path,
    *,
    sample_rate: int,
    samples_per_pixel: int | None = None,
    bits: int = 8,
    ffmpeg: str = "ffmpeg",
) -> Path:
    """Write the audiowaveform v2 JSON of ``audio`` (at ``sample_rate``) to ``dest``;
    ``samples_per_pixel`` None: a tenth of the sample rate."""
    spp = samples_per_pixel or sample_rate // PIXELS_PER_SECOND
    data = await compute_peaks(audio, samples_per_pixel=spp, bits=bits, ffmpeg=ffmpeg)
    doc = {
        "version": 2,
        "channels": 1,
        "sample_rate": sample_rate,
        "samples_per_pixel": spp,
        "bits": bits,
        "length": len(data) // 2,
        "data": data,
    }
    dest.write_text(json.dumps(doc, separators=(",", ":")))
    return dest
