"""Join synthesized parts into one file with ffmpeg, without clicks.

Every part is resampled to the first part's rate and channel count, then neighbours are blended
with a short equal-power crossfade (``acrossfade``), so a waveform that stops abruptly at the end
of one part never meets the start of the next as a step. ffmpeg streams file to file: long audio
never passes through Python memory. Output is FLAC (lossless, compact, readable by ffmpeg).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from worker.errors import PermanentError
from worker.providers.audio import probe, run


async def join_parts(parts: list[Path], dest: Path, crossfade_ms: int = 15) -> Path:
    """Concatenate ``parts`` into ``dest`` (FLAC) with a ``crossfade_ms`` blend at each seam."""
    if not parts:
        raise ValueError("nothing to join")
    first = await probe(parts[0])
    rate = first.sample_rate or 44100
    layout = "mono" if first.channels <= 1 else "stereo"
    fade = max(crossfade_ms, 0) / 1000
    if fade > 0:
        shortest = min([(await probe(p)).duration for p in parts])
        fade = min(fade, shortest / 2)
    inputs: list[str] = []
    chains: list[str] = []
    for i, part in enumerate(parts):
        inputs += ["-i", str(part)]
        chains.append(f"[{i}:a]aresample={rate},aformat=sample_fmts=fltp:channel_layouts={layout}[p{i}]")
    last = "p0"
    for i in range(1, len(parts)):
        out = f"j{i}"
        if fade > 0:
            chains.append(f"[{last}][p{i}]acrossfade=d={fade:.4f}:c1=qsin:c2=qsin[{out}]")
        else:
            chains.append(f"[{last}][p{i}]concat=n=2:v=0:a=1[{out}]")
        last = out
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.flac")
    try:
        rc, _, err = await run(
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-y",
            *inputs,
            "-filter_complex",
            ";".join(chains),
            "-map",
            f"[{last}]",
            "-c:a",
            "flac",
            str(tmp),
        )
        if rc != 0:
            raise PermanentError(
                f"joining {len(parts)} speech parts failed: {err.decode(errors='replace')[:300]}"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest
