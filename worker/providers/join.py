"""Join synthesized parts into one file with ffmpeg, without clicks.

Every part is resampled to the first part's rate and channel count, then neighbours are blended
with a short equal-power crossfade (``acrossfade``), so a waveform that stops abruptly at the end
of one part never meets the start of the next as a step. ffmpeg streams file to file: long audio
never passes through Python memory. Output is FLAC (lossless, compact, readable by ffmpeg).
"""

from __future__ import annotations

import array
import asyncio
import os
import sys
import uuid
from pathlib import Path

from worker.errors import PermanentError
from worker.providers.audio import probe, run

PAUSE_EDGE_MS = 10
"""Near-silence kept (and faded) on each side of a pause, so a cut never lands on a waveform."""
SPEECH_THRESHOLD = 104
"""|s16 sample| at which speech begins or ends at a pause: -50 dBFS."""


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
    await _write_flac(inputs, chains, last, dest, f"joining {len(parts)} speech parts")
    return dest


async def _write_flac(inputs: list[str], chains: list[str], last: str, dest: Path, what: str) -> None:
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
            raise PermanentError(f"{what} failed: {err.decode(errors='replace')[:300]}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


async def speech_bounds(path: Path, rate: int, threshold: int = SPEECH_THRESHOLD) -> tuple[int, int, int]:
    """``(first, end, total)``: the first sample and one past the last whose level reaches
    ``threshold`` (s16), and the sample count, of ``path`` resampled to ``rate``. Streamed from
    ffmpeg in blocks: only one block is in memory; a block is searched sample by sample only where
    it holds the edge. A silent file gives ``(total, total, total)``."""
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-ar", str(rate), "-ac", "1",
        "-f", "s16le", "-acodec", "pcm_s16le", "-",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    first, total, pending = -1, 0, b""
    last: tuple[int, array.array[int]] | None = None  # the latest block holding sound, and its offset

    def loud(v: int) -> bool:
        return abs(v) >= threshold

    try:
        while chunk := await proc.stdout.read(1 << 16):
            pending += chunk
            usable = len(pending) - len(pending) % 2
            block = array.array("h")
            block.frombytes(pending[:usable])
            pending = pending[usable:]
            if sys.byteorder == "big":
                block.byteswap()
            if block and (max(block) >= threshold or min(block) <= -threshold):
                if first < 0:
                    first = total + next(i for i, v in enumerate(block) if loud(v))
                last = (total, block)
            total += len(block)
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    if await proc.wait() != 0:
        raise PermanentError(f"speech part {path.name} does not decode")
    if last is None:
        return total, total, total
    offset, block = last
    end = offset + next(i for i in range(len(block) - 1, -1, -1) if loud(block[i])) + 1
    return first, end, total


async def join_with_pauses(items: list[Path | float], dest: Path, edge_ms: int = PAUSE_EDGE_MS) -> Path:
    """Write ``items`` (spoken parts and pauses in seconds, in order) to ``dest`` (FLAC).

    At each pause the part's own leading/trailing near-silence is cut to ``edge_ms`` (faded) and
    digital silence fills the rest, so from the last sound above -50 dBFS before a pause to the
    first after it is the pause to the sample, whatever padding the provider added. Edges that do
    not meet a pause are left as the provider made them.
    """
    parts = [x for x in items if isinstance(x, Path)]
    if not parts:
        raise ValueError("nothing to join")
    first = await probe(parts[0])
    rate = first.sample_rate or 44100
    layout = "mono" if first.channels <= 1 else "stereo"
    edge = round(rate * edge_ms / 1000)
    fmt = f"aformat=sample_fmts=fltp:sample_rates={rate}:channel_layouts={layout}"
    inputs: list[str] = []
    chains: list[str] = []
    labels: list[str] = []
    silence = 0  # samples of silence owed before the next part
    for n, item in enumerate(items):
        if not isinstance(item, Path):
            silence += round(float(item) * rate)
            continue
        before = n > 0 and not isinstance(items[n - 1], Path)
        after = n + 1 < len(items) and not isinstance(items[n + 1], Path)
        lo, hi, total = await speech_bounds(item, rate)
        start = max(0, lo - edge) if before else 0
        stop = min(total, hi + edge) if after else total
        if stop <= start:  # nothing audible in this part: it becomes part of the pause
            continue
        i = len(inputs) // 2
        inputs += ["-i", str(item)]
        chain = (
            f"[{i}:a]aresample={rate},{fmt},atrim=start_sample={start}:end_sample={stop},asetpts=PTS-STARTPTS"
        )
        if before and lo - start > 0:
            chain += f",afade=t=in:ss=0:ns={lo - start}"
            silence -= lo - start
        if after and stop - hi > 0:
            chain += f",afade=t=out:ss={hi - start}:ns={stop - hi}"
        labels += _silence(chains, silence, rate, layout, fmt)
        chains.append(f"{chain}[p{i}]")
        labels.append(f"[p{i}]")
        silence = -(stop - hi) if after else 0
    labels += _silence(chains, silence, rate, layout, fmt)
    chains.append(f"{''.join(labels)}concat=n={len(labels)}:v=0:a=1[out]")
    await _write_flac(inputs, chains, "out", dest, f"joining {len(parts)} speech parts with pauses")
    return dest


def _silence(chains: list[str], samples: int, rate: int, layout: str, fmt: str) -> list[str]:
    """Add a chain of exactly ``samples`` of digital silence; its label (none when empty)."""
    if samples <= 0:
        return []
    label = f"s{len(chains)}"
    chains.append(f"anullsrc=r={rate}:cl={layout},{fmt},atrim=end_sample={samples}[{label}]")
    return [f"[{label}]"]
