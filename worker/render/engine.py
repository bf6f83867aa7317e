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
from worker.render.graph import (
    MASTER_STEM,
    PREVIEW_FILE,
    LayerInput,
    fit_duration,
    master_command,
    measure_command,
    mix_command,
)
from worker.render.loudness import (
    SILENCE_LUFS,
    GainPlan,
    Loudness,
    parse_ebur128,
    plan_gain,
    secant_gain,
    within_target,
)
from worker.render.probe import probe_audio
from worker.render.settings import RenderSettings
from worker.render.spec import RenderSpec

MIX_SHARE = 0.5  # share of the progress bar given to pass 1
CALIBRATION_SHARE = 0.1  # ... to the calibration passes (only when a limiter is needed)
CALIBRATION_LU = 0.35  # calibrate the limited gain until this close to the target
MAX_CALIBRATIONS = 3
TRUST_STEP_LU = 2.0
CALIBRATE_OVER_DB = 1.5  # calibrate only when the limiter must take off more than this
TOLERANCE_LU = 0.8  # re-run the master pass (at most MAX_MASTER_PASSES) when further off than this
MAX_MASTER_PASSES = 2


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
    input_sample_peak_db: float
    gain_db: float
    limiter: bool
    passes: int
    render_seconds: float
    on_target: bool
    """Master within +-1 LU of the target with true peak at or under the ceiling (measured)."""


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
    except TimeoutError:
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
        cmd = mix_command(spec, duration, layer_inputs, settings.ffmpeg_path)
        run = await run_ffmpeg(
            cmd, duration_s=duration, stall_timeout_s=settings.stall_timeout_s, label="mix", redact=redact,
            on_progress=lambda p: report(p * MIX_SHARE), cwd=tmp,
        )  # fmt: skip
        measured_in = parse_ebur128(run.stderr_tail)
        if measured_in.integrated_lufs <= SILENCE_LUFS:
            raise PayloadError("layers", "the mix is silent; nothing to normalise")
        target, ceiling = spec.loudness.target_lufs, spec.loudness.true_peak_dbtp
        plan = plan_gain(measured_in, target, ceiling)
        ext = spec.output.master.format
        master_tmp, preview_tmp = tmp / f"{MASTER_STEM}.{ext}", tmp / PREVIEW_FILE
        passes = 1

        async def ffmpeg_pass(cmd: list[str], label: str, lo: float, hi: float) -> Loudness:
            nonlocal passes
            passes += 1
            run = await run_ffmpeg(
                cmd, duration_s=duration, stall_timeout_s=settings.stall_timeout_s, label=label,
                redact=redact, on_progress=lambda p: report(lo + p / 100 * (hi - lo)), cwd=tmp,
            )  # fmt: skip
            return parse_ebur128(run.stderr_tail)

        # A limiter lowers loudness by an amount only a measurement tells: calibrate the gain on
        # cheap passes (no encoding) before the master pass.
        lo = MIX_SHARE * 100
        peak_in = measured_in.peak_db if measured_in.peak_db is not None else 0.0
        if plan.limit_dbtp is not None and peak_in + plan.gain_db - plan.limit_dbtp > CALIBRATE_OVER_DB:
            step = CALIBRATION_SHARE * 100 / MAX_CALIBRATIONS
            history: list[tuple[float, float]] = []
            for _ in range(MAX_CALIBRATIONS):
                trial = await ffmpeg_pass(measure_command(plan, settings.ffmpeg_path),
                                          "calibrate", lo, lo + step)  # fmt: skip
                lo += step
                history.append((plan.gain_db, trial.integrated_lufs))
                logger.debug("calibration: gain {:.2f} dB -> {} LUFS", plan.gain_db, trial.integrated_lufs)
                if within_target(trial, target, ceiling, CALIBRATION_LU):
                    break
                plan = GainPlan(secant_gain(history, target), plan.limit_dbtp)
                if abs(trial.integrated_lufs - target) <= TRUST_STEP_LU:
                    break  # one Newton step from a near miss is reliable; the master pass verifies
        lo = (MIX_SHARE + CALIBRATION_SHARE) * 100
        measured: Loudness | None = None
        for attempt in range(MAX_MASTER_PASSES):
            if measured is not None:
                plan = plan.adjusted(measured, target, ceiling)
                logger.info("loudness off ({}), re-rendering master with {}", measured, plan)
            cmd = master_command(spec, duration, plan, settings.ffmpeg_path)
            measured = await ffmpeg_pass(cmd, "master", lo if attempt == 0 else best, 100.0)
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
            input_sample_peak_db=measured_in.peak_db if measured_in.peak_db is not None else 0.0,
            gain_db=round(plan.gain_db, 2),
            limiter=plan.limit_dbtp is not None,
            passes=passes,
            render_seconds=round(time.monotonic() - started, 3),
            on_target=within_target(measured, target, ceiling, 1.0),
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["GainPlan", "RenderResult", "render"]
