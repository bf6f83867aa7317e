"""``render()``: probe inputs, mix and measure (pass 1), normalise into master + preview (pass 2)."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
    preview_command,
    true_peak_command,
)
from worker.render.loops import prepare_loop
from worker.render.loudness import (
    PREVIEW_HEADROOM_DB,
    SILENCE_LUFS,
    GainPlan,
    Loudness,
    parse_ebur128,
    parse_summaries,
    plan_gain,
    preview_retry,
    secant_gain,
    within_target,
)
from worker.render.probe import probe_audio
from worker.render.settings import RenderSettings
from worker.render.spec import MusicLayer, RenderSpec

MIX_SHARE = 0.5  # share of the progress bar given to pass 1
CALIBRATION_SHARE = 0.1  # ... to the calibration passes (only when a limiter is needed)
CALIBRATION_LU = 0.35  # calibrate the limited gain until this close to the target
MAX_CALIBRATIONS = 3
TRUST_STEP_LU = 2.0
CALIBRATE_OVER_DB = 1.5  # calibrate only when the limiter must take off more than this
TOLERANCE_LU = 0.8  # re-run the master pass (at most MAX_MASTER_PASSES) when further off than this
MAX_MASTER_PASSES = 2
MAX_PREVIEW_RETRIES = 2


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
    preview_true_peak_dbtp: float | None = None
    """Measured on the decoded preview when the master's true peak came near the ceiling."""
    full_true_peak_dbtp: float | None = None
    """Measured on the full-length MP3 (``output.full``, made by ``make_deliverables``) when the
    master's true peak came near the ceiling."""
    target_lufs: float
    ceiling_dbtp: float
    anchor: str = "mix"
    """What was brought to the target: the whole ``mix`` or the ``speech``."""
    speech_lufs: float | None = None
    """Loudness of the speech in the master (speech anchor)."""
    input_lufs: float
    """Loudness of the unnormalised mix."""
    input_sample_peak_db: float
    gain_db: float
    limiter: bool
    passes: int
    render_seconds: float
    on_target: bool
    """Anchor within +-1 LU of the target, master, preview and full MP3 true peaks at or under the
    ceiling (measured)."""
    warnings: list[str] = []
    """What is off target, with the measured figures (RENDER_OFF_TARGET=warn)."""


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


class _Passes:
    """The ffmpeg passes of one render: shared temp dir, redaction, stall timeout, progress."""

    def __init__(
        self, tmp: Path, redact: list[str], duration: float, settings: RenderSettings,
        on_progress: Callable[[float], None] | None,
    ) -> None:  # fmt: skip
        self.tmp, self.redact, self.duration, self.settings = tmp, redact, duration, settings
        self.on_progress, self.best, self.count = on_progress, 0.0, 0

    def report(self, pct: float) -> None:
        """Forward progress, never backwards."""
        if self.on_progress is not None and pct > self.best:
            self.best = pct
            self.on_progress(round(pct, 1))

    async def run_raw(self, cmd: list[str], label: str, lo: float, hi: float) -> list[str]:
        """Run one pass (its progress mapped onto ``lo..hi`` percent); the tail of its stderr."""
        self.count += 1
        run = await run_ffmpeg(
            cmd, duration_s=self.duration, stall_timeout_s=self.settings.stall_timeout_s, label=label,
            redact=self.redact, on_progress=lambda p: self.report(lo + p / 100 * (hi - lo)), cwd=self.tmp,
        )  # fmt: skip
        return list(run.stderr_tail)

    async def run(self, cmd: list[str], label: str, lo: float, hi: float) -> Loudness:
        """Run one pass; its (last) ebur128 summary."""
        return parse_ebur128(await self.run_raw(cmd, label, lo, hi))


async def _probe_inputs(
    spec: RenderSpec, inputs: Mapping[str, Path], settings: RenderSettings
) -> dict[str, LayerInput]:
    """Describe the input file of every speech/music layer; PermanentError if one is missing."""
    out: dict[str, LayerInput] = {}
    for layer in spec.input_layers():
        if layer.key not in inputs:
            raise PermanentError(f"no input audio supplied for {layer.key}")
        path = Path(inputs[layer.key])
        out[layer.key] = LayerInput(path, await probe_audio(path, layer.key, settings.ffprobe_path))
    return out


async def _prepare_loops(
    spec: RenderSpec, layer_inputs: dict[str, LayerInput], passes: _Passes
) -> dict[str, LayerInput]:
    """Looped music decoded once to PCM with its seam crossfaded (loops.py)."""
    out = dict(layer_inputs)
    for layer in spec.layers:
        if isinstance(layer, MusicLayer) and layer.loop:
            inp = layer_inputs[layer.key]
            loop = await prepare_loop(
                inp.path, layer.key, passes.tmp, sample_rate=spec.sample_rate,
                crossfade_s=layer.loop_crossfade_s, ffmpeg_path=passes.settings.ffmpeg_path,
                duration_s=inp.info.duration_s, stall_timeout_s=passes.settings.stall_timeout_s,
                redact=passes.redact,
            )  # fmt: skip
            out[layer.key] = dataclasses.replace(inp, loop=loop)
    return out


@dataclass(frozen=True)
class _Goal:
    """What the normaliser aims the programme at. Anchored on speech, the programme target is the
    speech target shifted by how far the mix's loudness sits from the speech's own."""

    target_lufs: float
    """Programme (whole mix) loudness that puts the anchor at the spec's target."""
    ceiling_dbtp: float
    anchor: str
    speech_offset_lu: float = 0.0
    """Speech loudness minus programme loudness, as measured on the mix."""


async def _mix(
    spec: RenderSpec, layer_inputs: dict[str, LayerInput], passes: _Passes
) -> tuple[Loudness, _Goal]:
    """Pass 1: the unnormalised mix written to the temp dir, its loudness (and its speech's)."""
    anchor = spec.loudness_anchor
    cmd = mix_command(
        spec, passes.duration, layer_inputs, passes.settings.ffmpeg_path, meter_speech=anchor == "speech"
    )
    run = await passes.run_raw(cmd, "mix", 0.0, MIX_SHARE * 100)
    summaries = parse_summaries(run)
    # the last summary of each meter counts (ffmpeg may configure a graph twice: -inf summaries)
    programme = [x for x in summaries if x.peak_db is not None][-1]
    if programme.integrated_lufs <= SILENCE_LUFS:
        raise PayloadError("layers", "the mix is silent; nothing to normalise")
    target, ceiling = spec.loudness.target_lufs, spec.loudness.true_peak_dbtp
    speech = ([None] + [x for x in summaries if x.peak_db is None])[-1]
    if anchor != "speech" or speech is None or speech.integrated_lufs <= SILENCE_LUFS:
        return programme, _Goal(target, ceiling, "mix")
    offset = speech.integrated_lufs - programme.integrated_lufs
    if offset < 0:
        # The beds are louder than the voice: the voice at the target would push the programme
        # over it. The programme goes to the target instead (the voice stays under it).
        logger.info(
            "speech anchor: the beds are {:.1f} LU louder than the voice; normalising the mix", -offset
        )
        return programme, _Goal(target, ceiling, "mix")
    return programme, _Goal(target - offset, ceiling, "speech", offset)


async def _calibrate(plan: GainPlan, measured_in: Loudness, goal: _Goal, passes: _Passes) -> GainPlan:
    """A limiter lowers loudness by an amount only a measurement tells: calibrate the gain on
    cheap passes (no encoding) before the master pass. Unchanged when the limiter barely acts."""
    target, ceiling = goal.target_lufs, goal.ceiling_dbtp
    peak_in = measured_in.peak_db if measured_in.peak_db is not None else 0.0
    if plan.limit_dbtp is None or peak_in + plan.gain_db - plan.limit_dbtp <= CALIBRATE_OVER_DB:
        return plan
    if goal.anchor == "speech":  # the limiter only catches transients: loudness barely moves
        return plan
    lo, step = MIX_SHARE * 100, CALIBRATION_SHARE * 100 / MAX_CALIBRATIONS
    history: list[tuple[float, float]] = []
    for _ in range(MAX_CALIBRATIONS):
        trial = await passes.run(
            measure_command(plan, passes.settings.ffmpeg_path), "calibrate", lo, lo + step
        )
        lo += step
        history.append((plan.gain_db, trial.integrated_lufs))
        logger.debug("calibration: gain {:.2f} dB -> {} LUFS", plan.gain_db, trial.integrated_lufs)
        if within_target(trial, target, ceiling, CALIBRATION_LU):
            break
        plan = dataclasses.replace(plan, gain_db=secant_gain(history, target))
        if abs(trial.integrated_lufs - target) <= TRUST_STEP_LU:
            break  # one Newton step from a near miss is reliable; the master pass verifies
    return plan


async def _master(
    spec: RenderSpec, plan: GainPlan, measured_in: Loudness, goal: _Goal, passes: _Passes
) -> tuple[GainPlan, Loudness]:
    """Pass 2: master + preview, re-rendered (at most MAX_MASTER_PASSES) when off target."""
    target, ceiling = goal.target_lufs, goal.ceiling_dbtp
    peak_in = measured_in.peak_db if measured_in.peak_db is not None else 0.0
    lo = (MIX_SHARE + CALIBRATION_SHARE) * 100
    measured: Loudness | None = None
    for attempt in range(MAX_MASTER_PASSES):
        if measured is not None:
            plan = plan.adjusted(measured, target, ceiling, peak_in)
            logger.info("loudness off ({}), re-rendering master with {}", measured, plan)
        cmd = master_command(spec, passes.duration, plan, passes.settings.ffmpeg_path)
        measured = await passes.run(cmd, "master", lo if attempt == 0 else passes.best, 99.0)
        if within_target(measured, target, ceiling, TOLERANCE_LU):
            break
    assert measured is not None
    return plan, measured


async def _check_preview(
    spec: RenderSpec, plan: GainPlan, measured: Loudness, goal: _Goal, passes: _Passes
) -> float | None:
    """True peak of the encoded preview, measured when the master's comes within the preview
    headroom of the ceiling (else None: the preview cannot reach it); encoded again, limited
    harder, when over the ceiling."""
    ceiling = goal.ceiling_dbtp
    if measured.true_peak_dbtp <= ceiling - PREVIEW_HEADROOM_DB:
        return None
    if plan.preview_limit_dbtp is not None and _high_rate(spec):
        return None  # limited 1.5 dB under the ceiling: more than MP3 overshoots at these rates
    ffmpeg_path = passes.settings.ffmpeg_path
    tp = (await passes.run(true_peak_command(ffmpeg_path), "preview peak", 99.0, 99.5)).true_peak_dbtp
    for _ in range(MAX_PREVIEW_RETRIES):
        if tp <= ceiling:
            break
        plan = preview_retry(plan, tp, ceiling)
        logger.info("preview true peak {} dBTP over the ceiling; encoding it again", tp)
        await passes.run_raw(preview_command(spec, passes.duration, plan, ffmpeg_path), "preview", 99.5, 99.8)
        tp = (await passes.run(true_peak_command(ffmpeg_path), "preview peak", 99.8, 99.9)).true_peak_dbtp
    return tp


def _high_rate(spec: RenderSpec) -> bool:
    """An MP3 preview coded finely enough that its overshoot stays inside the preview headroom
    (CBR of 128 kbps or more, VBR quality 0-4); coarser previews are measured."""
    p = spec.output.preview
    if p.vbr_quality is not None:
        return p.vbr_quality <= 4
    return (p.bitrate_kbps or 192) >= 128


def _over_ceiling(what: str, tp: float | None, ceiling: float) -> list[str]:
    """``what``'s measured true peak in words when it is over the ceiling (else empty)."""
    if tp is None or tp <= ceiling:
        return []
    return [f"{what} true peak {tp:.2f} dBTP over the ceiling {ceiling:g} dBTP"]


def _verdict(goal: _Goal, measured: Loudness, preview_tp: float | None) -> list[str]:
    """What is off target, in words with the measured figures (empty: on target)."""
    off = []
    anchor_lufs = measured.integrated_lufs + goal.speech_offset_lu
    target = goal.target_lufs + goal.speech_offset_lu
    if abs(anchor_lufs - target) > 1.0:
        off.append(f"{goal.anchor} loudness {anchor_lufs:.1f} LUFS, target {target:g} LUFS (+-1 LU)")
    off += _over_ceiling("master", measured.true_peak_dbtp, goal.ceiling_dbtp)
    off += _over_ceiling("preview", preview_tp, goal.ceiling_dbtp)
    return off


def _off_target(off: list[str], settings: RenderSettings) -> list[str]:
    """RENDER_OFF_TARGET applied to what is off target: "fail" raises a PermanentError with the
    figures; "warn" logs them and returns them as the result's warnings."""
    if off and settings.off_target == "fail":
        raise PermanentError("loudness off target: " + "; ".join(off))
    if off:
        logger.warning("render off target: {}", "; ".join(off))
    return [f"off target: {x}" for x in off]


def judge_full_mp3(
    result: RenderResult, true_peak_dbtp: float | None, settings: RenderSettings
) -> RenderResult:
    """``result`` with the full-length MP3's measured true peak (None: not measured), off target
    like the master and the preview when it is over the ceiling (RENDER_OFF_TARGET applies)."""
    warnings = _off_target(_over_ceiling("full MP3", true_peak_dbtp, result.ceiling_dbtp), settings)
    return result.model_copy(
        update={
            "full_true_peak_dbtp": true_peak_dbtp,
            "on_target": result.on_target and not warnings,
            "warnings": [*result.warnings, *warnings],
        }
    )


@dataclass(frozen=True)
class _Outcome:
    plan: GainPlan
    measured_in: Loudness
    measured: Loudness
    goal: _Goal
    preview_tp: float | None
    warnings: list[str]


def _result(
    spec: RenderSpec, files: tuple[Path, Path], duration: float, o: _Outcome, passes: int, seconds: float
) -> RenderResult:
    p_secs = spec.output.preview.seconds
    return RenderResult(
        master=files[0],
        preview=files[1],
        duration_s=round(duration * spec.sample_rate) / spec.sample_rate,
        sample_rate=spec.sample_rate,
        integrated_lufs=o.measured.integrated_lufs,
        true_peak_dbtp=o.measured.true_peak_dbtp,
        lra=o.measured.lra,
        master_format=spec.output.master.format,
        master_bit_depth=spec.output.master.bit_depth,
        preview_duration_s=min(duration, p_secs) if p_secs else duration,
        preview_true_peak_dbtp=o.preview_tp,
        target_lufs=spec.loudness.target_lufs,
        ceiling_dbtp=spec.loudness.true_peak_dbtp,
        anchor=o.goal.anchor,
        speech_lufs=(
            round(o.measured.integrated_lufs + o.goal.speech_offset_lu, 2)
            if o.goal.anchor == "speech"
            else None
        ),
        input_lufs=o.measured_in.integrated_lufs,
        input_sample_peak_db=o.measured_in.peak_db if o.measured_in.peak_db is not None else 0.0,
        gain_db=round(o.plan.gain_db, 2),
        limiter=o.plan.limit_dbtp is not None,
        passes=passes,
        render_seconds=round(seconds, 3),
        on_target=not o.warnings,
        warnings=o.warnings,
    )


def _make_tmp(out_dir: Path, settings: RenderSettings) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    if settings.tmp_dir is not None:
        settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="render-", dir=settings.tmp_dir))


async def _normalise(spec: RenderSpec, layer_inputs: dict[str, LayerInput], passes: _Passes) -> _Outcome:
    """Mix, plan, calibrate, master, check the preview; the off-target policy applied."""
    measured_in, goal = await _mix(spec, layer_inputs, passes)
    plan = plan_gain(measured_in, goal.target_lufs, goal.ceiling_dbtp, speech=goal.anchor == "speech")
    plan = await _calibrate(plan, measured_in, goal, passes)
    plan, measured = await _master(spec, plan, measured_in, goal, passes)
    preview_tp = await _check_preview(spec, plan, measured, goal, passes)
    warnings = _off_target(_verdict(goal, measured, preview_tp), passes.settings)
    return _Outcome(plan, measured_in, measured, goal, preview_tp, warnings)


async def _render(
    spec: RenderSpec,
    inputs: Mapping[str, Path],
    out_dir: Path,
    on_progress: Callable[[float], None] | None,
    settings: RenderSettings,
) -> RenderResult:
    started = time.monotonic()
    layer_inputs = await _probe_inputs(spec, inputs, settings)
    duration = fit_duration(spec, {k: v.info for k, v in layer_inputs.items()}, settings.max_duration_s)
    tmp = _make_tmp(out_dir, settings)
    redact = [str(tmp), *(str(v.path.parent) for v in layer_inputs.values())]
    passes = _Passes(tmp, redact, duration, settings, on_progress)
    try:
        layer_inputs = await _prepare_loops(spec, layer_inputs, passes)
        outcome = await _normalise(spec, layer_inputs, passes)
        files = (out_dir / f"{MASTER_STEM}.{spec.output.master.format}", out_dir / PREVIEW_FILE)
        shutil.move(tmp / files[0].name, files[0])
        shutil.move(tmp / files[1].name, files[1])
        passes.report(100.0)
        return _result(spec, files, duration, outcome, passes.count, time.monotonic() - started)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["GainPlan", "RenderResult", "render"]
