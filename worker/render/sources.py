"""The sound of each layer type: one builder per type, named in the layer registry (spec.py).

A builder turns a validated layer into an ffmpeg-python stream of ``ctx.length`` seconds at the
track rate (stereo, or mono that the common chain upmixes). Only numbers formatted by :func:`num`
reach the filtergraph; no spec string ever does. The layer models are imported for type checking
only: spec.py imports this module to declare its registry.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
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

FRAME_SAMPLES = 4096
"""Samples per frame from the generators. ffmpeg's default (1024) makes four times as many
frames, each handed between the input threads and through every filter: with it the mix pass of a
10-minute track spent a third of its CPU time on frames, not sound. The samples do not depend on it."""
WAV_PACKET_BYTES = 65536
"""Packet size asked of ffmpeg's wav demuxer (its default, 4096 bytes, is 512 stereo float frames)."""

EVAL_DECIMATIONS = (10, 5, 4, 2)
"""Rates (the track rate divided by one of these) at which an expression source may be evaluated
before it is resampled to the track rate: ffmpeg evaluates an expression per sample, the costliest
part of a mix (a binaural ramp was 40% of the mix pass's CPU time at the track rate)."""
EVAL_BAND = 0.25
"""... when its highest frequency is at most this share of the reduced rate (half its Nyquist
frequency, well inside the resampler's flat passband: measured error under -100 dB)."""
EVAL_PAD = 64
"""Samples (at the reduced rate) evaluated before the layer starts and after it ends, so the
resampler's filter sees the tone going on at both edges; trimmed off after resampling."""


def num(x: float) -> str:
    """A plain decimal literal for the filtergraph (no exponent, no ``-0``)."""
    s = f"{x:.12f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def db_to_lin(db: float) -> float:
    return float(10.0 ** (db / 20.0))


@dataclass(frozen=True)
class LoopFiles:
    """A looped input decoded once to PCM (loops.py): the first ``intro_frames`` of ``source``
    play once, then ``unit`` repeats, so the period (``period_frames``) is exact to the sample
    and every seam is crossfaded (or already seamless)."""

    source: Path
    intro_frames: int
    unit: Path
    period_frames: int


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
        f"sine=frequency={num(freq)}:sample_rate={ctx.sample_rate}:duration={num(ctx.length)}"
        f":samples_per_frame={FRAME_SAMPLES}",
        ctx.index,
    )


def eval_source(exprs: Callable[[str], list[str]], top_hz: float, ctx: SourceContext) -> Stream:
    """An ``aevalsrc`` of ``ctx.length`` seconds whose channel expressions ``exprs(t)`` are functions
    of the time text ``t`` (seconds from the layer's start). When the sound's highest frequency
    ``top_hz`` allows, it is evaluated at a fraction of the track rate from ``EVAL_PAD`` samples
    before the start to as many after the end, resampled to the track rate and trimmed to the
    layer's samples: the same sound for a fraction of the evaluations."""
    sr = ctx.sample_rate
    k = next((k for k in EVAL_DECIMATIONS if sr % k == 0 and top_hz <= EVAL_BAND * sr / k), 1)
    if k == 1:
        return lavfi(
            f"aevalsrc=exprs='{'|'.join(exprs('t'))}':sample_rate={sr}:duration={num(ctx.length)}"
            f":nb_samples={FRAME_SAMPLES}",
            ctx.index,
        )
    rate, samples = sr // k, round(ctx.length * sr)
    # st/ld: the shifted time is computed once per sample; t = (n - pad) / rate, exact multiples
    t = "ld(0)"
    shifted = "|".join(f"st(0,(n-{EVAL_PAD})/{rate});{e}" for e in exprs(t))
    low = -(-samples // k) + 2 * EVAL_PAD  # samples at the reduced rate, pads included
    src = lavfi(
        f"aevalsrc=exprs='{shifted}':sample_rate={rate}:duration={num((low + 1) / rate)}"
        f":nb_samples={FRAME_SAMPLES // k}",
        ctx.index,
    )
    return (
        src.filter("aresample", sr)
        .filter("atrim", start_sample=EVAL_PAD * k, end_sample=EVAL_PAD * k + samples)
        .filter("asetpts", "N")  # aresample's time base is 1/sr; N/SR/TB rounds some frames a sample early
    )


def stereo(left: Stream, right: Stream) -> Stream:
    return ffmpeg.filter([left, right], "amerge", inputs=2)


def file_input(path: Path, ctx: SourceContext, **options: Any) -> Stream:
    """An input file read by this layer only. Two layers often read one file (a repeated spoken
    cue is one provider file, named by its content) and ffmpeg-python would merge their equal input
    nodes into one with two outgoing edges (a ValueError): the layer's index, spelled as ``./``
    path segments, makes the name its own while naming the same file."""
    return ffmpeg.input(f"{path.parent}/{'./' * ctx.index}{path.name}", **options)["a:0"]


def _wav_options(info: AudioInfo | None) -> dict[str, Any]:
    return {"max_size": WAV_PACKET_BYTES} if info is None or info.container == "wav" else {}


def speech(layer: SpeechLayer, ctx: SourceContext) -> Stream:
    assert ctx.input is not None
    return file_input(ctx.input.path, ctx, t=num(ctx.length), **_wav_options(ctx.input.info))


def music(layer: MusicLayer, ctx: SourceContext) -> Stream:
    """The file as is, or (looped) its decoded intro followed by the loop unit repeated."""
    inp = ctx.input
    assert inp is not None
    if inp.loop is None:
        return file_input(inp.path, ctx, t=num(ctx.length), **_wav_options(inp.info))
    loop, wav = inp.loop, _wav_options(None)  # loops.py writes WAV files
    unit = file_input(loop.unit, ctx, stream_loop=-1, t=num(ctx.length + 1.0), **wav)
    if loop.intro_frames:
        intro = file_input(loop.source, ctx, **wav).filter("atrim", end_sample=loop.intro_frames)
        unit = ffmpeg.filter([intro, unit], "concat", n=2, v=0, a=1)
    # Timestamps by sample count, in integers: N/SR/TB evaluated in floating point truncates some
    # frames' timestamps a sample early (N/44100/(1/44100) < N for 13% of N), and afade places its
    # fades by timestamp: a fade moved by a sample on those frames.
    exact = unit.filter("asettb", "1/sr").filter("asetpts", "N")
    return exact.filter("atrim", end_sample=round(ctx.length * ctx.sample_rate))


def solfeggio(layer: SolfeggioLayer, ctx: SourceContext) -> Stream:
    return sine(layer.frequency_hz, ctx)


def isochronic(layer: IsochronicLayer, ctx: SourceContext) -> Stream:
    """The tone under a raised-cosine pulse envelope evaluated at exact times, so the pulse rate
    is exact (a period is not rounded to whole samples)."""
    two_pi = 2.0 * math.pi

    def exprs(t: str) -> list[str]:
        return [
            f"{num(TONE_AMPLITUDE)}*sin({num(two_pi * layer.tone_hz)}*{t})"
            f"*(0.5-0.5*cos({num(two_pi * layer.rate_hz)}*{t}))"
        ]

    return eval_source(exprs, layer.tone_hz + layer.rate_hz, ctx)


def ramp_phase_expr(layer: BinauralLayer, t: str = "t") -> str:
    """ffmpeg expression (of the time text ``t``, seconds) for the right channel's phase in radians:
    2*pi*(carrier*t + integral of the piecewise-linear beat), so the frequency ramps without phase
    jumps. Constants are folded per segment (fewer nodes for ffmpeg's per-sample evaluator)."""
    two_pi, fc = 2.0 * math.pi, layer.carrier_hz
    pts = layer.schedule or []

    def segment(t_a: float, cycles_a: float, beat: float, k: float) -> str:
        """Phase from ``t_a`` where the beat phase is ``cycles_a`` and the beat starts at ``beat``."""
        u = t if t_a == 0 else f"({t}-{num(t_a)})"
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
        expr = f"if(lt({t},{num(end_t)}),{piece},{expr})"
    return expr


def binaural(layer: BinauralLayer, ctx: SourceContext) -> Stream:
    if layer.schedule is None:
        left = sine(layer.carrier_hz, ctx)
        return stereo(left, sine(layer.carrier_hz + float(layer.beat_hz or 0.0), ctx))
    amp, carrier = num(TONE_AMPLITUDE), num(2.0 * math.pi * layer.carrier_hz)

    def exprs(t: str) -> list[str]:  # both ears from one source: resampled alike, in phase
        return [f"{amp}*sin({carrier}*{t})", f"{amp}*sin({ramp_phase_expr(layer, t)})"]

    return eval_source(exprs, layer.carrier_hz + max(p.beat_hz for p in layer.schedule), ctx)


def noise(layer: NoiseLayer, ctx: SourceContext) -> Stream:
    """Two decorrelated channels of the layer's colour (see noise_channel)."""
    seed = layer.seed if layer.seed is not None else 1000 + 2 * ctx.index
    return stereo(*(noise_channel(layer.color, s, ctx) for s in (seed, seed + 1)))


# ---------------------------------------------------------------- noise colours, by definition
# Each colour is made here from white noise with filters of our own (ffmpeg's anoisesrc colours
# differ between versions, and 5.1's blue, violet, brown and velvet are wrong): the slope of the
# power spectrum is pink -3, brown -6, blue +3, violet +6 dB per octave; velvet is sparse impulses.

NOISE_RMS = {"white": 0.0577, "velvet": 0.0707}
"""RMS level of each colour (others: COLOURED_RMS), the levels anoisesrc gave before, so existing
specs keep their balance."""
COLOURED_RMS = 0.02
VELVET_DENSITY_HZ = 2205.0  # impulses per second (one per grid cell of sr/density samples)
BROWN_CORNER_HZ = 10.0  # the integrator's leak: flat below, -6 dB/octave above
TOP_OCTAVE_TRIM = {"pink": 0.05, "brown": 0.12}
"""A zero at -c straightens the slope near Nyquist, where a digital pole/zero bends it."""

Section = tuple[tuple[float, float, float], tuple[float, float, float]]
"""A biquad ``((b0, b1, b2), (1, a1, a2))``."""


def _pink_roots(sr: int) -> tuple[list[float], list[float]]:
    """Zeros and poles (real, z-plane) of a -3 dB/octave filter: one pole every two octaves from
    3 Hz up, a zero an octave above each, mapped by z = exp(-2 pi f / sr)."""
    poles_hz = [3.0 * 4.0**k for k in range(8) if 3.0 * 4.0**k < 40000]
    zeros = [math.exp(-2 * math.pi * f * 2.0 / sr) for f in poles_hz] + [-TOP_OCTAVE_TRIM["pink"]]
    poles = [math.exp(-2 * math.pi * f / sr) for f in poles_hz] + [0.0]
    return zeros, poles


def _sections(zeros: list[float], poles: list[float]) -> list[Section]:
    """Real roots paired into biquads (both lists of even length)."""
    out: list[Section] = []
    for i in range(0, len(zeros), 2):
        z1, z2, p1, p2 = zeros[i], zeros[i + 1], poles[i], poles[i + 1]
        out.append(((1.0, -(z1 + z2), z1 * z2), (1.0, -(p1 + p2), p1 * p2)))
    return out


@functools.lru_cache(maxsize=16)
def colour_filter(color: str, sr: int) -> tuple[list[Section], float]:
    """Biquads that turn white noise into ``color`` and the gain that brings it to its RMS."""
    if color in ("pink", "blue"):
        zeros, poles = _pink_roots(sr)
        if color == "blue":
            zeros, poles = poles, zeros
    else:
        leak, trim = math.exp(-2 * math.pi * BROWN_CORNER_HZ / sr), TOP_OCTAVE_TRIM["brown"]
        zeros, poles = [-trim, 0.0], [leak, 0.0]  # a leaky integrator
        if color == "violet":
            zeros, poles = [1.0, 0.0], [-trim, 0.0]  # a differentiator
    sections = _sections(zeros, poles)
    white_rms = NOISE_RMS["white"]
    return sections, COLOURED_RMS / (white_rms * math.sqrt(_power_gain(sections)))


def _power_gain(sections: list[Section], points: int = 4000) -> float:
    """The filter's gain on white noise power, (1/pi) * integral of |H|^2 over 0..pi, summed on a
    log-spaced grid (the colours' action is spread evenly over octaves)."""
    lo, hi = math.log(1e-6), math.log(math.pi)
    total, prev = 0.0, None
    for i in range(points + 1):
        w = math.exp(lo + (hi - lo) * i / points)
        z1 = complex(math.cos(w), -math.sin(w))  # z^-1 on the unit circle
        h = 1.0 + 0j
        for (b0, b1, b2), (_, a1, a2) in sections:
            h *= (b0 + b1 * z1 + b2 * z1 * z1) / (1.0 + a1 * z1 + a2 * z1 * z1)
        cur = (w, abs(h) ** 2)
        if prev is not None:
            total += (cur[0] - prev[0]) * (cur[1] + prev[1]) / 2
        prev = cur
    return total / math.pi


def noise_channel(color: str, seed: int, ctx: SourceContext) -> Stream:
    """One channel of noise: white (uniform) noise, filtered to its colour; or velvet impulses."""
    sr, dur = ctx.sample_rate, num(ctx.length)
    if color == "velvet":
        return lavfi(
            f"aevalsrc=exprs='{velvet_expr(seed, sr)}':sample_rate={sr}:duration={dur}:nb_samples={FRAME_SAMPLES}",
            ctx.index,
        )
    white_amp = NOISE_RMS["white"] * math.sqrt(3.0)  # a uniform distribution's RMS is amplitude/sqrt(3)
    desc = (
        f"anoisesrc=color=white:sample_rate={sr}:duration={dur}:amplitude={num(white_amp)}:seed={seed}"
        f":nb_samples={FRAME_SAMPLES}"
    )
    if color != "white":
        sections, gain = colour_filter(color, sr)
        for (b0, b1, b2), (_, a1, a2) in sections:
            desc += (
                f",biquad=b0={num(b0)}:b1={num(b1)}:b2={num(b2)}:a0=1:a1={num(a1)}:a2={num(a2)}:precision=f64"
            )
        desc += f",volume=volume={num(gain)}:precision=double"
    return lavfi(desc, ctx.index)


def velvet_expr(seed: int, sr: int) -> str:
    """Velvet noise: in each cell of ``sr / VELVET_DENSITY_HZ`` samples one impulse of random sign
    at a random position (both hashed from the cell number and the seed), zero elsewhere."""
    cell = max(2, round(sr / VELVET_DENSITY_HZ))
    amp = NOISE_RMS["velvet"] * math.sqrt(cell)
    offset = num((seed % 1_000_003) * 0.754877666)

    def hashed(mult: str) -> str:
        return f"mod(abs(sin(floor(n/{cell})*{mult}+{offset}))*43758.5453,1)"

    pos = f"eq(mod(n,{cell}),floor({cell}*{hashed('12.9898')}))"
    sign = f"(2*gte({hashed('78.233')},0.5)-1)"
    return f"{num(amp)}*{pos}*{sign}"
