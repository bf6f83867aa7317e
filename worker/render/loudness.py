"""EBU R128 figures from ffmpeg's ebur128 summary, and the gain/limiter plan that meets a target."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass

from worker.errors import PermanentError

SILENCE_LUFS = -69.0
LIMITER_MARGIN_DB = 0.8  # sample-peak limiter set this far under the true-peak ceiling
SPEECH_LIMITER_MARGIN_DB = 0.3  # ... when anchored on speech (fast limiter, verified by the meter)
MAX_GAIN_DB = 60.0
LIMITED_SLOPE = 0.9


TP_HEADROOM_DB = 0.5  # no limiter only if the sample peak lands this far under the ceiling
PREVIEW_HEADROOM_DB = 1.5  # the MP3 preview is limited this far under the ceiling (coding overshoot)
TP_RETRY_MARGIN_DB = 0.3  # a re-render's limiter goes this much further than the overshoot


@dataclass(frozen=True)
class Loudness:
    integrated_lufs: float
    peak_db: float | None
    """True peak (dBTP) or sample peak (dBFS), whichever the ebur128 filter was asked for."""
    lra: float | None

    @property
    def true_peak_dbtp(self) -> float:
        assert self.peak_db is not None
        return self.peak_db


def parse_ebur128(lines: Iterable[str]) -> Loudness:
    """Read the last ``Summary:`` block of an ebur128 filter."""
    found = parse_summaries(lines)
    if not found:
        raise PermanentError("loudness measurement missing from ffmpeg output")
    return found[-1]


def parse_summaries(lines: Iterable[str]) -> list[Loudness]:
    """Every ebur128 ``Summary:`` block, in order (a pass may meter several streams)."""
    text = "\n".join(lines)
    blocks = text.split("Summary:")[1:]
    out = []
    for block in blocks:

        def grab(label: str, block: str = block) -> float | None:
            m = re.search(rf"^\s*{label}:\s+(-?inf|-?\d+(?:\.\d+)?)", block, re.MULTILINE)
            if not m:
                return None
            return float("-inf") if m.group(1).endswith("inf") else float(m.group(1))

        i, lra, peak = grab("I"), grab("LRA"), grab("Peak")
        if i is None:
            raise PermanentError("loudness measurement incomplete in ffmpeg output")
        out.append(Loudness(i, peak, lra))
    return out


@dataclass(frozen=True)
class GainPlan:
    gain_db: float
    limit_dbtp: float | None  # sample-peak limiter level, None = no limiter
    preview_limit_dbtp: float | None = None
    """Limiter on the MP3 preview only (lossy coding overshoots), None = none."""
    attack_ms: float = 5.0
    release_ms: float = 50.0

    def adjusted(
        self, measured: Loudness, target_lufs: float, ceiling_dbtp: float, sample_peak_in: float
    ) -> GainPlan:
        """A corrected plan after a render measured ``measured`` (true peak) under this plan.

        An over-ceiling true peak lowers the limiter below the sample peak the master actually
        reached (``sample_peak_in`` + gain, or the old limit), so the new limit engages."""
        gain = self.gain_db + (target_lufs - measured.integrated_lufs)
        limit = self.limit_dbtp
        if measured.peak_db is not None and measured.peak_db > ceiling_dbtp:
            reached = sample_peak_in + self.gain_db
            if limit is not None:
                reached = min(reached, limit)
            limit = reached - (measured.true_peak_dbtp - ceiling_dbtp) - TP_RETRY_MARGIN_DB
        return dataclasses.replace(self, gain_db=min(gain, MAX_GAIN_DB), limit_dbtp=limit)


def plan_gain(
    measured: Loudness, target_lufs: float, ceiling_dbtp: float, *, speech: bool = False
) -> GainPlan:
    """Linear gain to the target; a limiter unless the gained sample peak stays well under the
    ceiling; a preview limiter when the master's peaks come within reach of the preview headroom.

    Anchored on ``speech``, the limiter only catches the voice's brief transients: it sits closer
    to the ceiling (the master's true-peak meter verifies) and lets go after 10 ms, so a plosive
    costs the voice one or two 10 ms blocks instead of five."""
    gain = min(target_lufs - measured.integrated_lufs, MAX_GAIN_DB)
    margin = SPEECH_LIMITER_MARGIN_DB if speech else LIMITER_MARGIN_DB
    peak = measured.peak_db + gain if measured.peak_db is not None else ceiling_dbtp
    limit = ceiling_dbtp - margin if peak > ceiling_dbtp - TP_HEADROOM_DB else None
    reached = peak if limit is None else min(peak, limit)
    preview = ceiling_dbtp - PREVIEW_HEADROOM_DB
    timing = {"attack_ms": 1.0, "release_ms": 10.0} if speech else {}
    return GainPlan(gain, limit, preview if reached > preview - TP_HEADROOM_DB else None, **timing)


def preview_retry(plan: GainPlan, preview_tp: float, ceiling_dbtp: float) -> GainPlan:
    """The plan for encoding the preview again after it measured ``preview_tp`` over the ceiling."""
    base = (
        plan.preview_limit_dbtp if plan.preview_limit_dbtp is not None else ceiling_dbtp - PREVIEW_HEADROOM_DB
    )
    return dataclasses.replace(
        plan, preview_limit_dbtp=base - (preview_tp - ceiling_dbtp) - TP_RETRY_MARGIN_DB
    )


def within_target(measured: Loudness, target_lufs: float, ceiling_dbtp: float, tol_lu: float) -> bool:
    """Loudness within ``tol_lu`` of the target and (when measured) the peak under the ceiling."""
    peak_ok = measured.peak_db is None or measured.peak_db <= ceiling_dbtp
    return abs(measured.integrated_lufs - target_lufs) <= tol_lu and peak_ok


def secant_gain(history: list[tuple[float, float]], target_lufs: float) -> float:
    """Next gain from (gain, measured LUFS) trials; a limiter makes loudness grow slower than gain."""
    g1, l1 = history[-1]
    if len(history) == 1:  # typical slope of loudness against gain under a peak limiter
        return min(g1 + (target_lufs - l1) / LIMITED_SLOPE, MAX_GAIN_DB)
    g0, l0 = history[-2]
    slope = (l1 - l0) / (g1 - g0) if g1 != g0 else 1.0
    slope = min(max(slope, 0.1), 1.0)
    return min(g1 + (target_lufs - l1) / slope, MAX_GAIN_DB)
