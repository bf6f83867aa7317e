"""Inline SVG for the dashboard: the throughput chart and a preview's waveform (no JS library)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

RATE_WINDOW = 10  # minutes
WAVEFORM_BARS = 900  # one per unit of the waveform's width


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    completed_h: float
    failed_h: float
    title: str


@dataclass(frozen=True)
class ThroughputChart:
    width: int
    height: int
    bars: list[Bar]
    rate_points: str  # polyline points of the failure rate (0-100 % = bottom-top)
    peak: int  # jobs per minute at the top of the scale
    minutes: int
    total_completed: int
    total_failed: int


def throughput_chart(
    rows: list[dict[str, Any]], now: datetime, minutes: int = 180, width: int = 900, height: int = 160
) -> ThroughputChart:
    """One bar per minute (completed green under failed red) and the failure rate of the trailing
    10 minutes as a line."""
    by_minute = {r["minute"]: r for r in rows}
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    step = width / minutes
    counts = []
    for i in range(minutes):
        r = by_minute.get(start + timedelta(minutes=i), {})
        counts.append((int(r.get("completed") or 0), int(r.get("failed") or 0)))
    peak = max([c + f for c, f in counts] + [1])
    bars, points = [], []
    for i, (c, f) in enumerate(counts):
        minute = start + timedelta(minutes=i)
        bars.append(
            Bar(
                x=round(i * step, 2),
                width=round(max(step - 0.5, 0.5), 2),
                completed_h=round(height * c / peak, 2),
                failed_h=round(height * f / peak, 2),
                title=f"{minute:%H:%M} UTC: {c} completed, {f} failed",
            )
        )
        # Failure rate over the trailing RATE_WINDOW minutes: one failure in a quiet minute does
        # not draw a spike to 100 %.
        window = counts[max(0, i - RATE_WINDOW + 1) : i + 1]
        ended, failed = sum(a + b for a, b in window), sum(b for _, b in window)
        if ended:
            points.append(f"{round(i * step + step / 2, 2)},{round(height * (1 - failed / ended), 2)}")
    return ThroughputChart(
        width=width,
        height=height,
        bars=bars,
        rate_points=" ".join(points),
        peak=peak,
        minutes=minutes,
        total_completed=sum(c for c, _ in counts),
        total_failed=sum(f for _, f in counts),
    )


def peaks_of(result: dict[str, Any] | None) -> list[float] | None:
    """Peaks a result carries inline (a custom handler's ``peaks`` or ``preview.peaks``: numbers,
    0-1 or any scale), normalised to 0-1; None when there are none. The pipeline's results hold a
    peaks *file* instead (``peaks: {bucket, key, ...}``): see worker.web.waveform."""
    if not isinstance(result, dict):
        return None
    preview = result.get("preview")
    raw = result.get("peaks")
    if raw is None and isinstance(preview, dict):
        raw = preview.get("peaks")
    if isinstance(raw, dict):  # {"values": [...], ...}
        raw = raw.get("values") or raw.get("data")
    if not isinstance(raw, list) or not raw:
        return None
    values = [abs(float(v)) for v in raw[:4000] if isinstance(v, int | float) and not isinstance(v, bool)]
    top = max(values, default=0.0)
    if top <= 0:
        return None
    return [v / top for v in values]


def bars_of_minmax(data: list[int], channels: int = 1, bars: int = WAVEFORM_BARS) -> list[float]:
    """At most ``bars`` heights (0-1, the loudest 1; all 0 for silence) from interleaved
    ``[min, max, ...]`` pairs, one pair per channel per pixel (audiowaveform's ``data``): each
    pixel's largest magnitude over its channels, then each bar the largest of its pixels."""
    step = 2 * max(channels, 1)
    pixels = [max(abs(v) for v in data[i : i + step]) for i in range(0, len(data) - 1, step)]
    if not pixels:
        return []
    per_bar = -(-len(pixels) // bars)  # ceil
    heights = [max(pixels[i : i + per_bar]) for i in range(0, len(pixels), per_bar)]
    top = max(heights)
    return [h / top if top else 0.0 for h in heights]


def bars_of_peaks_file(doc: Any, bars: int = WAVEFORM_BARS) -> list[float]:
    """:func:`bars_of_minmax` of an audiowaveform JSON document (version 1 or 2, what the
    pipeline's ``output.peaks`` writes); ValueError when it is not one."""
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise ValueError("not audiowaveform JSON (no data list)")
    channels = doc.get("channels", 1)
    data = doc["data"]
    if not isinstance(channels, int) or not 1 <= channels <= 24:
        raise ValueError(f"not audiowaveform JSON (channels {channels!r})")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in data):
        raise ValueError("not audiowaveform JSON (data holds non-integers)")
    return bars_of_minmax(data, channels, bars)


def waveform_path(peaks: list[float], width: int = WAVEFORM_BARS, height: int = 80) -> str:
    """An SVG path of mirrored bars, one per peak."""
    step = width / len(peaks)
    mid = height / 2
    parts = []
    for i, p in enumerate(peaks):
        h = max(p * mid, 0.5)
        x = round(i * step + step / 2, 2)
        parts.append(f"M{x},{round(mid - h, 2)}V{round(mid + h, 2)}")
    return "".join(parts)
