"""What a render hands out besides master and preview, made from the finished master:

- ``output.full``: a full-length MP3 (opt-in, since the preview is already the whole track unless
  ``preview.seconds`` shortens it);
- ``output.peaks`` (opt-in): waveform peaks JSON for players (``worker.render.peaks``);
- ``tags``/``chapters``: written into every file (``worker.render.tags``); the preview gets the
  chapters that start within it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from pathlib import Path

from mutagen import MutagenError

from worker.errors import PermanentError
from worker.render.engine import RenderResult, judge_full_mp3
from worker.render.ffmpeg_process import run_ffmpeg
from worker.render.graph import true_peak_command
from worker.render.loudness import PREVIEW_HEADROOM_DB, TP_RETRY_MARGIN_DB, parse_ebur128
from worker.render.peaks import write_peaks
from worker.render.settings import RenderSettings
from worker.render.sources import db_to_lin
from worker.render.spec import FullOutput, RenderSpec
from worker.render.tags import ChapterMark, Cover, chapter_marks, write_tags

FULL_FILE, PEAKS_FILE = "full.mp3", "peaks.json"
MAX_FULL_ENCODES = 3


@dataclass(frozen=True)
class Deliverables:
    full: Path | None = None
    peaks: Path | None = None
    chapters: list[ChapterMark] = field(default_factory=list)


def full_command(
    master: Path, dest: Path, full: FullOutput, ffmpeg: str = "ffmpeg", limit_dbtp: float | None = None
) -> list[str]:
    """Encode the master as the full-length MP3 (LAME, Xing header for exact length and seeking),
    limited to ``limit_dbtp`` first when given (lossy coding overshoots the master's peaks)."""
    quality = (
        ["-q:a", str(full.vbr_quality)]
        if full.vbr_quality is not None
        else ["-b:a", f"{full.bitrate_kbps or 192}k"]
    )
    limiter = (
        []
        if limit_dbtp is None
        else ["-af", f"alimiter=limit={db_to_lin(limit_dbtp):.6f}:attack=5:release=50:level=0:latency=1"]
    )
    return [ffmpeg, "-y", "-i", str(master), "-map", "0:a", "-map_metadata", "-1", *limiter,
            "-c:a", "libmp3lame", *quality, "-write_xing", "1", str(dest)]  # fmt: skip


async def _encode_full(
    spec: RenderSpec, result: RenderResult, dest: Path, settings: RenderSettings
) -> float | None:
    """The full-length MP3 under the same true-peak ceiling as the master and the preview: limited
    ``PREVIEW_HEADROOM_DB`` under it when the master's peaks come that near, measured after
    encoding, and encoded again, limited harder, while it is over (at most ``MAX_FULL_ENCODES``).
    Its last measured true peak (None: not measured, the master's peaks stay far enough under)."""
    full = spec.output.full
    assert full is not None
    redact = [str(dest.parent)]

    async def encode(limit: float | None) -> None:
        await run_ffmpeg(
            full_command(result.master, dest, full, settings.ffmpeg_path, limit), duration_s=result.duration_s,
            stall_timeout_s=settings.stall_timeout_s, label="full mp3", redact=redact,
        )  # fmt: skip

    async def true_peak() -> float:
        run = await run_ffmpeg(
            true_peak_command(settings.ffmpeg_path, dest), duration_s=result.duration_s,
            stall_timeout_s=settings.stall_timeout_s, label="full mp3 peak", redact=redact,
        )  # fmt: skip
        return parse_ebur128(run.stderr_tail).true_peak_dbtp

    ceiling = result.ceiling_dbtp
    limit = ceiling - PREVIEW_HEADROOM_DB if result.true_peak_dbtp > ceiling - PREVIEW_HEADROOM_DB else None
    await encode(limit)
    if limit is None:
        return None  # the master's peaks stay more than the headroom under the ceiling
    tp = await true_peak()
    for _ in range(MAX_FULL_ENCODES - 1):
        if tp <= ceiling:
            break
        limit -= tp - ceiling + TP_RETRY_MARGIN_DB
        await encode(limit)
        tp = await true_peak()
    return tp  # a last miss is judged like the master's (engine.judge_full_mp3)


async def make_deliverables(
    spec: RenderSpec,
    result: RenderResult,
    *,
    cover: Cover | None = None,
    settings: RenderSettings | None = None,
) -> tuple[RenderResult, Deliverables]:
    """Encode the full-length MP3, compute the peaks and tag every file, beside ``result.master``.

    Returns ``result`` with the full MP3's measured true peak added (off target when it stays over
    the ceiling; RENDER_OFF_TARGET=fail raises a PermanentError instead), and the deliverables."""
    settings = settings or RenderSettings()
    out_dir = result.master.parent
    out = Deliverables(chapters=chapter_marks(spec, result.duration_s))
    if spec.output.full is not None:
        dest = out_dir / FULL_FILE
        result = judge_full_mp3(result, await _encode_full(spec, result, dest, settings), settings)
        out = replace(out, full=dest)
    if spec.output.peaks is not None:
        p = spec.output.peaks
        peaks = await write_peaks(
            result.master, out_dir / PEAKS_FILE, sample_rate=result.sample_rate,
            samples_per_pixel=p.samples_per_pixel, bits=p.bits, ffmpeg=settings.ffmpeg_path,
        )  # fmt: skip
        out = replace(out, peaks=peaks)
    if spec.tags is not None or out.chapters or cover is not None:
        in_preview = [c for c in out.chapters if c.start_s < result.preview_duration_s]
        if in_preview:
            last = in_preview[-1]
            in_preview[-1] = replace(last, end_s=min(last.end_s, result.preview_duration_s))
        files = [(result.master, out.chapters), (result.preview, in_preview)]
        if out.full is not None:
            files.append((out.full, out.chapters))
        for path, marks in files:
            try:
                await asyncio.to_thread(write_tags, path, spec.tags, marks, cover)
            except MutagenError as exc:
                raise PermanentError(f"writing tags into the {path.stem} failed: {exc}") from None
    return result, out
