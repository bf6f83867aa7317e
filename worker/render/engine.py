"""``render()``: probe inputs, mix and measure (pass 1), normalise into master + preview (pass 2)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from loguru import logger
from pydantic import BaseModel

from worker.errors import PayloadError, PermanentError, RetryableError
from worker.render.ffmpeg_process import run_ffmpeg
from worker.render.graph import LayerInput, fit_duration, master_command, mix_command
from worker.render.loudness import (
    SILENCE_LUFS,
    GainPlan,
    Loudness,
    parse_ebur128,
    plan_gain,
    within_target,
)
from worker.render.probe import probe_audio
from worker.render.settings import RenderSettings
from worker.render.spec import RenderSpec

MIX_SHARE = 0.55  # share of the progress bar given to pass 1
TOLERANCE_LU = 0.8  # re-run pass 2 (at most MAX_MASTER_PASSES) when further off than this
MAX_MASTER_PASSES = 3


class RenderResult(BaseModel):
    """What a render produced and measured; JSON-able with ``model_dump(mode="json")``."""

    master: Path
    preview: Path
    duration_s: float
    sample_rate: int
    integrated_lufs: float
    """Measured on the master (EBU R128, ebur128 filter)."""
    true_peak_dbtp: float
    lra: float | None
    master_format: str
    master_bit_depth: int
    preview_format: str = "mp3"
    preview_duration_s: float
    target_lufs: float
    ceiling_dbtp: float
    input_lufs: float
    """Loudness of the unnormalised mix."""
    input_true_peak_dbtp: float
    gain_db: float
    limiter: bool
    passes: int
    render_seconds: float


async def render(
    spec: RenderSpec,
    inputs: Mapping[str, Path],
    out_dir: Path,
    *,
    on_progress: Callable[[float], None] | None = None,
    settings: RenderSettings | None = None,
) -> RenderResult:
    """Render ``spec`` to ``out_dir/master.{wav,flac}`` and ``out_dir/preview.mp3``.

    ``inputs`` maps the key of every speech/music layer (``layers[i]``) to a local audio file.
    ``on_progress`` receives 0..100. Raises :class:`PayloadError` (bad input file, silent mix),
    :class:`RetryableError` (stall, timeout, ffmpeg killed, disk full) or :class:`PermanentError`.
    Cancellation kills ffmpeg; the temp dir is removed whatever happens.
    """
    settings = settings or RenderSettings()
    try:
        return await asyncio.wait_for(
            _render(spec, inputs, Path(out_dir), on_progress, settings), settings.timeout_s
        )
    except asyncio.TimeoutError:
        raise RetryableError(f"render timed out after {settings.timeout_s:g} s") from None


async def _render(
    spec: RenderSpec,
    inputs: Mapping[str, Path],
    out_dir: Path,
    on_progress: Callable[[float], None] | None,
    settings: RenderSettings,
) -> RenderResult:
    started = time.monotonic()
    layer_inputs: dict[str, LayerInput] = {}
    for layer in spec.input_layers():
        if layer.key not in inputs:
            raise PermanentError(f"no input audio supplied for {layer.key}")
        path = Path(inputs[layer.key])
        info = await probe_audio(path, layer.key, settings.ffprobe_path)
        layer_inputs[layer.key] = LayerInput(path, info)
    duration = fit_duration(spec, {k: v.info for k, v in layer_inputs.items()}, settings.max_duration_s)

    best = 0.0

    def report(pct: float) -> None:
        nonlocal best
        if on_progress is not None and pct > best:
            best = pct
            on_progress(round(pct, 1))

    out_dir.mkdir(parents=True, exist_ok=True)
    if settings.tmp_dir is not None:
        settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="render-", dir=settings.tmp_dir))
    redact = [str(tmp), *(str(v.path.parent) for v in layer_inputs.values())]
    try:
        mix_path = tmp / "mix.f32"
        cmd = mix_command(spec, duration, layer_inputs, mix_path, settings.ffmpeg_path)
        run = await run_ffmpeg(
            cmd, duration_s=duration, stall_timeout_s=settings.stall_timeout_s, label="mix", redact=redact,
            on_progress=lambda p: report(p * MIX_SHARE),
        )  # fmt: skip
        measured_in = parse_ebur128(run.stderr_tail)
        if measured_in.integrated_lufs <= SILENCE_LUFS:
            raise PayloadError("layers", "the mix is silent; nothing to normalise")
        target, ceiling = spec.loudness.target_lufs, spec.loudness.true_peak_dbtp
        plan = plan_gain(measured_in, target, ceiling)
        ext = spec.output.master.format
        master_tmp, preview_tmp = tmp / f"master.{ext}", tmp / "preview.mp3"
        measured: Loudness | None = None
        passes = 0
        for passes in range(1, MAX_MASTER_PASSES + 1):
            if measured is not None:
                plan = plan.adjusted(measured, target, ceiling)
                logger.info("loudness off ({}), re-rendering master with {}", measured, plan)
            cmd = master_command(spec, duration, mix_path, plan, master_tmp, preview_tmp, settings.ffmpeg_path)
            base = MIX_SHARE * 100 if passes == 1 else best
            share = (100 - base) / 100 if passes == 1 else 0.0
            run = await run_ffmpeg(
                cmd, duration_s=duration, stall_timeout_s=settings.stall_timeout_s, label="master",
                redact=redact, on_progress=lambda p, b=base, s=share: report(b + p * s),
            )  # fmt: skip
            measured = parse_ebur128(run.stderr_tail)
            if within_target(measured, target, ceiling, TOLERANCE_LU):
                break
        assert measured is not None
        master = out_dir / master_tmp.name
        preview = out_dir / preview_tmp.name
        shutil.move(master_tmp, master)
        shutil.move(preview_tmp, preview)
        report(100.0)
        p_secs = spec.output.preview.seconds
        return RenderResult(
            master=master,
            preview=preview,
            duration_s=round(duration * spec.sample_rate) / spec.sample_rate,
            sample_rate=spec.sample_rate,
            integrated_lufs=measured.integrated_lufs,
            true_peak_dbtp=measured.true_peak_dbtp,
            lra=measured.lra,
            master_format=ext,
            master_bit_depth=spec.output.master.bit_depth,
            preview_duration_s=min(duration, p_secs) if p_secs else duration,
            target_lufs=target,
            ceiling_dbtp=ceiling,
            input_lufs=measured_in.integrated_lufs,
            input_true_peak_dbtp=measured_in.true_peak_dbtp,
            gain_db=round(plan.gain_db, 2),
            limiter=plan.limit_dbtp is not None,
            passes=1 + passes,
            render_seconds=round(time.monotonic() - started, 3),
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["GainPlan", "RenderResult", "render"]
