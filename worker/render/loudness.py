"""EBU R128 figures from ffmpeg's ebur128 summary, and the gain/limiter plan that meets a target."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from worker.errors import PermanentError

SILENCE_LUFS = -69.0
LIMITER_MARGIN_DB = 0.5  # sample-peak limiter set this far under the true-peak ceiling
MAX_GAIN_DB = 60.0


@dataclass(frozen=True)
class Loudness:
    integrated_lufs: float
    true_peak_dbtp: float
    lra: float | None


def parse_ebur128(lines: Iterable[str]) -> Loudness:
    """Read the last ``Summary:`` block of an ebur128 filter (run with ``peak=true``)."""
    text = "\n".join(lines)
    start = text.rfind("Summary:")
    if start < 0:
        raise PermanentError("loudness measurement missing from ffmpeg output")
    block = text[start:]

    def grab(label: str) -> float | None:
        m = re.search(rf"^\s*{label}:\s+(-?inf|-?\d+(?:\.\d+)?)", block, re.MULTILINE)
        if not m:
            return None
        return float("-inf") if m.group(1).endswith("inf") else float(m.group(1))

    i, lra, peak = grab("I"), grab("LRA"), grab("Peak")
    if i is None or peak is None:
        raise PermanentError("loudness measurement incomplete in ffmpeg output")
    return Loudness(i, peak, lra)


@dataclass(frozen=True)
class GainPlan:
    gain_db: float
    limit_dbtp: float | None  # sample-peak limiter level, None = no limiter

    def adjusted(self, measured: Loudness, target_lufs: float, ceiling_dbtp: float) -> GainPlan:
        """A corrected plan after a render measured ``measured`` under this plan."""
        gain = self.gain_db + (target_lufs - measured.integrated_lufs)
        limit = self.limit_dbtp
        if measured.true_peak_dbtp > ceiling_dbtp:
            base = limit if limit is not None else ceiling_dbtp - LIMITER_MARGIN_DB
            limit = base - (measured.true_peak_dbtp - ceiling_dbtp) - 0.3
        return GainPlan(min(gain, MAX_GAIN_DB), limit)


def plan_gain(measured: Loudness, target_lufs: float, ceiling_dbtp: float) -> GainPlan:
    """Linear gain to the target; a limiter only if the gained true peak would pass the ceiling."""
    gain = min(target_lufs - measured.integrated_lufs, MAX_GAIN_DB)
    if measured.true_peak_dbtp + gain > ceiling_dbtp - 0.05:
        return GainPlan(gain, ceiling_dbtp - LIMITER_MARGIN_DB)
    return GainPlan(gain, None)


def within_target(measured: Loudness, target_lufs: float, ceiling_dbtp: float, tol_lu: float) -> bool:
    return abs(measured.integrated_lufs - target_lufs) <= tol_lu and measured.true_peak_dbtp <= ceiling_dbtp
