"""Build the two ffmpeg commands of a render with ffmpeg-python.

Pass 1 (mix): every layer is a source (lavfi generator or input file) shaped by its fades, gain
and start offset; music is ducked under the speech bus; everything is summed on a silent bed of
exactly the track length, faded, measured by ebur128 (true peak) and written as raw 32-bit float
PCM to the job's temp dir, so expensive synthesis happens once.

Pass 2 (master): that mix, gained (and limited when needed), measured again, split into the master
(wav/flac) and the MP3 preview.

Only numbers formatted here reach the filtergraph; no spec string ever does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ffmpeg

from worker.render.loudness import GainPlan
from worker.render.probe import AudioInfo
from worker.render.sources import FRAME_SAMPLES, LayerInput, SourceContext, Stream, db_to_lin, lavfi, num
from worker.render.spec import LayerBase, MusicLayer, RenderSpec, SpeechLayer, layer_type

__all__ = ["LayerInput", "fit_duration", "layer_length", "master_command", "measure_command", "mix_command"]

EDGE_FADE_S = 0.02  # raised-cosine fade at a layer edge that asks for none (or a shorter one)
PREVIEW_FADE_S = 1.0  # fade-out at the end of a shortened preview
MIX_FILE = "mix.w64"  # 32-bit float Wave64 (no 4 GiB limit), relative to the job's temp dir
MASTER_STEM, PREVIEW_FILE = "master", "preview.mp3"


def layer_length(layer: LayerBase, duration_s: float, info: AudioInfo | None) -> float:
    """Seconds the layer sounds for, from its start, within a track of ``duration_s``."""
    start = layer.start_s
    length = duration_s - start
    if layer.duration_s is not None:
        length = min(length, layer.duration_s)
    if info is not None and not (isinstance(layer, MusicLayer) and layer.loop):
        length = min(length, info.duration_s)
    return max(0.0, length)


def fit_duration(spec: RenderSpec, infos: dict[str, AudioInfo], max_duration_s: float) -> float:
    """Track length of a ``"fit"`` spec: end of the last speech layer plus the tail, capped."""
    if spec.duration_s != "fit":
        return float(spec.duration_s)
    ends = [
        x.start_s + min(infos[x.key].duration_s, x.duration_s or float("inf")) for x in spec.speech_layers()
    ]
    return min(max(ends) + spec.tail_s, max_duration_s)


def _shape(stream: Stream, layer: LayerBase, sr: int, length: float) -> Stream:
    """Common layer chain: stereo float at the track rate, fades, gain, start offset."""
    s = stream.filter("aformat", sample_fmts="fltp", sample_rates=sr, channel_layouts="stereo")
    edge = min(EDGE_FADE_S, length / 2)  # every edge: at least a short raised cosine, no click
    for kind, asked in (("in", layer.fade_in_s), ("out", layer.fade_out_s)):
        d, curve = (min(asked, length), "tri") if asked > edge else (edge, "hsin")
        st = 0.0 if kind == "in" else length - d
        s = s.filter("afade", t=kind, st=num(st), d=num(d), curve=curve)
    gain = layer.gain_db
    if gain != 0:
        s = s.filter("volume", volume=num(db_to_lin(gain)))
    start = layer.start_s
    if start > 0:
        s = s.filter("adelay", delays=f"{round(start * sr)}S", all=1)
    return s


def mix_command(
    spec: RenderSpec,
    duration_s: float,
    inputs: dict[str, LayerInput],
    ffmpeg_path: str,
    *,
    meter_speech: bool = False,
) -> list[str]:
    """Pass 1 (run in the temp dir): the unnormalised mix, measured (ebur128 loudness, sample
    peak), written to ``MIX_FILE``. With ``meter_speech`` the speech bus is metered too (a second
    ebur128 summary, without a peak section: see engine._mix)."""
    sr = spec.sample_rate
    total = round(duration_s * sr)
    speech: list[Stream] = []
    music: list[tuple[MusicLayer, Stream]] = []
    other: list[Stream] = []
    for i, layer in enumerate(spec.layers):
        inp = inputs.get(layer.key)
        length = layer_length(layer, duration_s, inp.info if inp else None)
        if length < 0.001:
            continue
        ctx = SourceContext(sample_rate=sr, length=length, index=i, input=inp)
        s = _shape(layer_type(layer).source(layer, ctx), layer, sr, length)
        if isinstance(layer, SpeechLayer):
            speech.append(s)
        elif isinstance(layer, MusicLayer):
            music.append((layer, s))
        else:
            other.append(s)

    ducked = [(x, s) for x, s in music if x.duck is not None] if speech else []
    meters: list[Any] = []
    if speech and meter_speech:
        bus = _bus(speech)
        taps = bus.filter_multi_output("asplit", 2)
        speech = [taps[0]]
        meter = taps[1].filter("ebur128", peak="none", framelog="verbose")
        meters.append(ffmpeg.output(meter, "-", f="null"))
    if ducked:
        taps = _bus(speech).filter_multi_output("asplit", len(ducked) + 1)
        speech = [taps[0]]
        duck_ids = {id(x) for x, _ in ducked}
        for n, (layer, s) in enumerate(ducked, start=1):
            d = layer.duck
            assert d is not None
            sc = taps[n].filter("apad")  # the sidechain must outlast the music
            other.append(
                ffmpeg.filter(
                    [s, sc],
                    "sidechaincompress",
                    threshold=num(db_to_lin(d.threshold_db)),
                    ratio=num(d.ratio),
                    attack=num(d.attack_ms),
                    release=num(d.release_ms),
                    detection="rms",
                )  # fmt: skip
            )
        other.extend(s for x, s in music if id(x) not in duck_ids)
    else:
        other.extend(s for _, s in music)

    bed = lavfi(
        f"anullsrc=channel_layout=stereo:sample_rate={sr}:duration={num(duration_s + 0.1)}"
        f":nb_samples={FRAME_SAMPLES}"
    )
    streams = [bed, *speech, *other]
    mix = ffmpeg.filter(
        streams, "amix", inputs=len(streams), duration="first", normalize=0, dropout_transition=0
    )
    mix = mix.filter("atrim", end_sample=total)
    if spec.fade_in_s > 0:
        mix = mix.filter("afade", t="in", st=0, d=num(spec.fade_in_s))
    if spec.fade_out_s > 0:
        mix = mix.filter("afade", t="out", st=num(duration_s - spec.fade_out_s), d=num(spec.fade_out_s))
    mix = mix.filter("ebur128", peak="sample", framelog="verbose")  # true peak is metered on the master
    out = ffmpeg.output(mix, MIX_FILE, f="w64", acodec="pcm_f32le", ar=sr, ac=2)
    if meters:
        out = ffmpeg.merge_outputs(out, *meters)
    return list(out.global_args("-loglevel", "info").overwrite_output().compile(cmd=ffmpeg_path))


def _bus(streams: list[Stream]) -> Stream:
    """The streams summed (one stream as is)."""
    if len(streams) == 1:
        return streams[0]
    return ffmpeg.filter(streams, "amix", inputs=len(streams), normalize=0, dropout_transition=0)


def _limiter(limit_db: float, plan: GainPlan) -> str:
    return (
        f"alimiter=limit={num(db_to_lin(limit_db))}:attack={num(plan.attack_ms)}"
        f":release={num(plan.release_ms)}:level=0:latency=1"
    )


def _gain_chain(plan: GainPlan, peak: str | None) -> str:
    """Filter chain text (numbers only) applying the plan to the mix and metering the result."""
    chain = f"volume=volume={num(db_to_lin(plan.gain_db))}:precision=double"
    if plan.limit_dbtp is not None:
        chain += f",{_limiter(plan.limit_dbtp, plan)}"
    return chain if peak is None else f"{chain},ebur128=peak={peak}:framelog=verbose"


def measure_command(plan: GainPlan, ffmpeg_path: str) -> list[str]:
    """Calibration pass (run in the temp dir): loudness of the gained, limited mix; nothing is
    written and the costly true-peak meter is left to the master pass."""
    s = ffmpeg.input(f"amovie={MIX_FILE},{_gain_chain(plan, 'none')}", f="lavfi")["a"]
    cmd: list[str] = ffmpeg.output(s, "-", f="null").global_args("-loglevel", "info").compile(cmd=ffmpeg_path)
    return cmd


def master_command(spec: RenderSpec, duration_s: float, plan: GainPlan, ffmpeg_path: str) -> list[str]:
    """Pass 2 (run in the temp dir): gain (+ limiter) and the true-peak meter on a lavfi input,
    which ffmpeg runs in its own thread alongside the encoders; then master and preview written
    by the same process."""
    sr = spec.sample_rate
    gained = ffmpeg.input(f"amovie={MIX_FILE},{_gain_chain(plan, 'true')}", f="lavfi")["a"]
    # ffmpeg 5.x reads inputs on their own threads only when there are several: add a tiny one.
    spare = ffmpeg.input("anullsrc=duration=0.01", f="lavfi")["a"].output("-", f="null")
    split = gained.filter_multi_output("asplit", 2)
    master_s, preview_s = split[0], split[1]

    m = spec.output.master
    if m.format == "wav":
        mopts: dict[str, Any] = {"acodec": f"pcm_s{m.bit_depth}le", "f": "wav", "rf64": "auto"}
    else:
        mopts = {"acodec": "flac", "f": "flac", "sample_fmt": "s16" if m.bit_depth == 16 else "s32"}
    master_out = ffmpeg.output(master_s, f"{MASTER_STEM}.{m.format}", ar=sr, ac=2, **mopts)

    preview_out = _preview_output(spec, duration_s, plan, preview_s)
    merged = ffmpeg.merge_outputs(master_out, preview_out, spare)
    cmd: list[str] = merged.global_args("-loglevel", "info").overwrite_output().compile(cmd=ffmpeg_path)
    return cmd


def _preview_output(spec: RenderSpec, duration_s: float, plan: GainPlan, s: Stream) -> Stream:
    """The MP3 preview of the gained mix: shortened (with a fade) when asked, and limited a little
    under the master's ceiling when its peaks come near it (lossy coding adds overshoot)."""
    sr, p = spec.sample_rate, spec.output.preview
    if p.seconds is not None and p.seconds < duration_s:
        s = s.filter("atrim", end_sample=round(p.seconds * sr))
        fade = min(PREVIEW_FADE_S, p.seconds / 2)
        s = s.filter("afade", t="out", st=num(p.seconds - fade), d=num(fade))
    if plan.preview_limit_dbtp is not None:
        s = s.filter("alimiter", limit=num(db_to_lin(plan.preview_limit_dbtp)), attack=5, release=50,
                     level=0, latency=1)  # fmt: skip
    popts: dict[str, Any] = {"acodec": "libmp3lame", "f": "mp3"}
    if p.vbr_quality is not None:
        popts["q:a"] = p.vbr_quality
    else:
        popts["b:a"] = f"{p.bitrate_kbps or 192}k"
    return ffmpeg.output(s, PREVIEW_FILE, ar=sr, ac=2, **popts)


def preview_command(spec: RenderSpec, duration_s: float, plan: GainPlan, ffmpeg_path: str) -> list[str]:
    """The preview alone, encoded again from the mix (when its true peak came out too high)."""
    s = ffmpeg.input(f"amovie={MIX_FILE},{_gain_chain(plan, None)}", f="lavfi")["a"]
    out = _preview_output(spec, duration_s, plan, s)
    return list(out.global_args("-loglevel", "info").overwrite_output().compile(cmd=ffmpeg_path))


def true_peak_command(ffmpeg_path: str, path: str | Path = PREVIEW_FILE) -> list[str]:
    """Meter an encoded file (the preview, by default) as a listener decodes it (true peak, 4x
    oversampled)."""
    s = ffmpeg.input(str(path))["a:0"].filter("ebur128", peak="true", framelog="verbose")
    return list(ffmpeg.output(s, "-", f="null").global_args("-loglevel", "info").compile(cmd=ffmpeg_path))
