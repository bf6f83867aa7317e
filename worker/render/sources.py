"""The sound of each layer type: one builder per type, named in the layer registry (spec.py).

A builder turns a validated layer into an ffmpeg-python stream of ``ctx.length`` seconds at the
track rate (stereo, or mono that the common chain upmixes). Only numbers formatted by :func:`num`
reach the filtergraph; no spec string ever does. The layer models are imported for type checking
only: spec.py imports this module to declare its registry.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ffmpeg

from worker.render.probe import AudioInfo

if TYPE_CHECKING:
    from worker.render.spec import (
        BinauralLayer,
        IsochronicLayer,
        MusicLayer,
        NoiseLayer,
        SolfeggioLayer,
        SpeechLayer,
    )

Stream = Any
"""An ffmpeg-python stream (the library ships no type information)."""

TONE_AMPLITUDE = 0.125  # ffmpeg's sine source amplitude (1/8): the 0 dB level of tone layers
NOISE_AMPLITUDE = 0.1


def num(x: float) -> str:
    """A plain decimal literal for the filtergraph (no exponent, no ``-0``)."""
    s = f"{x:.12f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def db_to_lin(db: float) -> float:
    return float(10.0 ** (db / 20.0))


@dataclass(frozen=True)
class LoopFiles:
    """A looped input decoded once to PCM: ``intro`` plays once, then ``unit`` repeats, so the
    loop period is exact to the sample and its seam is crossfaded (see loops.py)."""

    intro: Path
    unit: Path


@dataclass(frozen=True)
class LayerInput:
    path: Path
    info: AudioInfo
    loop: LoopFiles | None = None


@dataclass(frozen=True)
class SourceContext:
    """What a builder needs besides its layer."""

    sample_rate: int
    length: float
    """Seconds the layer sounds for."""
    index: int
    """Position of the layer in the spec (keeps equal layers distinct, seeds noise)."""
    input: LayerInput | None = None


def lavfi(desc: str, layer: int | None = None) -> Stream:
    """A lavfi source. ``layer`` (its index) labels the source's link so that identical layers
    stay distinct nodes: ffmpeg-python merges equal nodes, and two equal layers would otherwise
    become one node with two outgoing edges (a ValueError) instead of two sources summed."""
    if layer is not None:
        desc = f"{desc}[layer{int(layer)}];[layer{int(layer)}]anull"
    return ffmpeg.input(desc, f="lavfi")["a"]


def sine(freq: float, ctx: SourceContext) -> Stream:
    return lavfi(
        f"sine=frequency={num(freq)}:sample_rate={ctx.sample_rate}:duration={num(ctx.length)}", ctx.index
    )


def stereo(left: Stream, right: Stream) -> Stream:
    return ffmpeg.filter([left, right], "amerge", inputs=2)


def speech(layer: SpeechLayer, ctx: SourceContext) -> Stream:
    assert ctx.input is not None
    return ffmpeg.input(str(ctx.input.path), t=num(ctx.length))["a:0"]


def music(layer: MusicLayer, ctx: SourceContext) -> Stream:
    """The file as is, or (looped) its PCM intro followed by the crossfaded unit repeated."""
    inp = ctx.input
    assert inp is not None
    if inp.loop is None:
        opts: dict[str, Any] = {"t": num(ctx.length)}
        if layer.loop:
            opts["stream_loop"] = -1
        return ffmpeg.input(str(inp.path), **opts)["a:0"]
    intro = ffmpeg.input(str(inp.loop.intro))["a:0"]
    unit = ffmpeg.input(str(inp.loop.unit), stream_loop=-1, t=num(ctx.length + 1.0))["a:0"]
    joined = ffmpeg.filter([intro, unit], "concat", n=2, v=0, a=1)
    return joined.filter("atrim", end_sample=round(ctx.length * ctx.sample_rate))


def solfeggio(layer: SolfeggioLayer, ctx: SourceContext) -> Stream:
    return sine(layer.frequency_hz, ctx)


def isochronic(layer: IsochronicLayer, ctx: SourceContext) -> Stream:
    """The tone under a raised-cosine pulse envelope evaluated at exact times, so the pulse rate
    is exact (a period is not rounded to whole samples)."""
    two_pi = 2.0 * math.pi
    expr = (
        f"{num(TONE_AMPLITUDE)}*sin({num(two_pi * layer.tone_hz)}*t)"
        f"*(0.5-0.5*cos({num(two_pi * layer.rate_hz)}*t))"
    )
    return lavfi(
        f"aevalsrc=exprs='{expr}':sample_rate={ctx.sample_rate}:duration={num(ctx.length)}", ctx.index
    )


def ramp_phase_expr(layer: BinauralLayer) -> str:
    """ffmpeg expression (of ``t``, seconds) for the right channel's phase in radians:
    2*pi*(carrier*t + integral of the piecewise-linear beat), so the frequency ramps without phase
    jumps. Constants are folded per segment (fewer nodes for ffmpeg's per-sample evaluator)."""
    two_pi, fc = 2.0 * math.pi, layer.carrier_hz
    pts = layer.schedule or []

    def segment(t_a: float, cycles_a: float, beat: float, k: float) -> str:
        """Phase from ``t_a`` where the beat phase is ``cycles_a`` and the beat starts at ``beat``."""
        u = "t" if t_a == 0 else f"(t-{num(t_a)})"
        const = two_pi * (fc * t_a + cycles_a)
        out = f"{num(const)}+" if const else ""
        out += f"{num(two_pi * (fc + beat))}*{u}"
        if k:
            quad = two_pi * k
            out += f"+{num(quad)}*{u}*{u}" if quad > 0 else f"-{num(-quad)}*{u}*{u}"
        return out

    t0, b0 = pts[0].t_s, pts[0].beat_hz
    pieces: list[tuple[float, str]] = [(t0, segment(0.0, 0.0, b0, 0.0))] if t0 > 0 else []
    cycles = b0 * t0  # beat phase (cycles) at the current point
    for a, b in itertools.pairwise(pts):
        span = b.t_s - a.t_s
        k = (b.beat_hz - a.beat_hz) / (2.0 * span)
        pieces.append((b.t_s, segment(a.t_s, cycles, a.beat_hz, k)))
        cycles += a.beat_hz * span + k * span * span
    expr = segment(pts[-1].t_s, cycles, pts[-1].beat_hz, 0.0)
    for end_t, piece in reversed(pieces):
        expr = f"if(lt(t,{num(end_t)}),{piece},{expr})"
    return expr


def binaural(layer: BinauralLayer, ctx: SourceContext) -> Stream:
    left = sine(layer.carrier_hz, ctx)
    if layer.schedule is None:
        right = sine(layer.carrier_hz + float(layer.beat_hz or 0.0), ctx)
    else:
        expr = f"{num(TONE_AMPLITUDE)}*sin({ramp_phase_expr(layer)})"
        right = lavfi(
            f"aevalsrc=exprs='{expr}':sample_rate={ctx.sample_rate}:duration={num(ctx.length)}", ctx.index
        )
    return stereo(left, right)


def noise(layer: NoiseLayer, ctx: SourceContext) -> Stream:
    """Two decorrelated channels of the layer's colour (see noise_channel)."""
    seed = layer.seed if layer.seed is not None else 1000 + 2 * ctx.index
    return stereo(*(noise_channel(layer.color, s, ctx) for s in (seed, seed + 1)))


def noise_channel(color: str, seed: int, ctx: SourceContext) -> Stream:
    src = (
        f"anoisesrc=color={color}:sample_rate={ctx.sample_rate}:duration={num(ctx.length)}"
        f":amplitude={num(NOISE_AMPLITUDE)}:seed={seed}"
    )
    return lavfi(src, ctx.index)
