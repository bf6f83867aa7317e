"""Render-engine benchmark: a five-layer track (voice, ducked looped music, binaural ramp, 528 Hz,
pink noise) rendered by ``worker.render.render``.

Prints the realtime factor, the peak memory of the whole process tree (Python + ffmpeg), the
peak RSS of the Python process itself, and the ratio of our render time to one hand-written ffmpeg
command that writes the same master + preview with the gain we measured (the floor: it cannot
know that gain without measuring, so it is a true lower bound). The floor makes its sound the way
the engine does (its pink noise filters, the binaural ramp evaluated at a tenth of the rate and
resampled, 4096-sample frames), so the ratio measures the engine's passes, meters and limiters.

    uv run python bench/render.py                 # 10-minute track, with the floor
    uv run python bench/render.py --memory 5 60   # Python/tree peak memory of 5- and 60-minute renders

Each render runs in a child process so per-render peak RSS is clean.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [
    p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"
]  # bench/queue.py is not stdlib queue
sys.path.insert(0, str(ROOT))

TEXT = (
    "Welcome. Settle into a comfortable position and let your eyes close. Breathe in slowly, and let "
    "the breath go. With every breath your body grows heavier and softer. Thoughts come and go like "
    "clouds; let them pass. You are calm. You are safe. Rest here, in this quiet, as long as you like."
)
SCHEDULE = [(0, 10), (0.2, 10), (0.8, 5), (1.0, 5)]  # (fraction of the track, beat Hz)


def spec_payload(seconds: float) -> dict:
    return {
        "spec_version": 1,
        "duration_s": seconds,
        "fade_in_s": 5,
        "fade_out_s": 10,
        "layers": [
            {"type": "speech", "text": TEXT, "start_s": 5},
            {"type": "music", "object": "bench/music.wav", "gain_db": -10, "duck": True, "fade_in_s": 3},
            {"type": "binaural", "carrier_hz": 200, "gain_db": -14,
             "schedule": [{"t_s": round(f * seconds, 3), "beat_hz": b} for f, b in SCHEDULE]},
            {"type": "solfeggio", "frequency_hz": 528, "gain_db": -22},
            {"type": "noise", "color": "pink", "gain_db": -20},
        ],
        "output": {"master": {"format": "wav", "bit_depth": 24}, "preview": {"bitrate_kbps": 192}},
    }  # fmt: skip


def make_inputs(work: Path) -> dict[str, Path]:
    speech, music = work / "speech.wav", work / "music.wav"
    if not speech.exists():
        subprocess.run(["espeak-ng", "-w", str(speech), TEXT], check=True)
    if not music.exists():  # a 20 s A-minor pad as stand-in music, looped by the engine
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=220:d=20", "-f", "lavfi", "-i",
             "sine=261.63:d=20", "-f", "lavfi", "-i", "sine=329.63:d=20", "-filter_complex",
             "amix=inputs=3,tremolo=f=0.25:d=0.4", "-ac", "2", str(music)], check=True,
        )  # fmt: skip
    return {"layers[0]": speech, "layers[1]": music}


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def tree(root: int) -> list[int]:
    """``root`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


class TreeSampler(threading.Thread):
    """Samples the summed RSS of a process tree every 20 ms; ``peak_kb`` is the maximum seen."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root, self.peak_kb, self.stop = root, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak_kb = max(self.peak_kb, sum(rss_kb(p) for p in tree(self.root)))
            time.sleep(0.02)


def child(seconds: float, work: Path, out: Path) -> None:
    """Render once in this process; print figures as JSON."""
    from worker.render import RenderSettings, parse_spec, render

    settings = RenderSettings(max_duration_s=max(seconds, 3600), tmp_dir=work / "tmp")
    spec = parse_spec(spec_payload(seconds), settings)
    t = time.monotonic()
    result = asyncio.run(render(spec, make_inputs(work), out, settings=settings))
    wall = time.monotonic() - t
    import resource

    cpu = sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for f in ("ru_utime", "ru_stime"))  # fmt: skip
    hwm = next(
        int(x.split()[1])
        for x in Path("/proc/self/status").read_text().splitlines()
        if x.startswith("VmHWM:")
    )
    print(
        json.dumps(
            {"wall_s": wall, "cpu_s": cpu, "python_peak_kb": hwm, "result": result.model_dump(mode="json")}
        )
    )


def measured_child(seconds: float, work: Path, out: Path) -> dict:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", str(seconds), "--work", str(work), "--out", str(out)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    sampler = TreeSampler(proc.pid)
    sampler.start()
    stdout, _ = proc.communicate()
    sampler.stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"render failed (exit {proc.returncode})")
    figures = json.loads(stdout.strip().splitlines()[-1])
    figures["tree_peak_kb"] = sampler.peak_kb
    return figures


def floor_command(
    seconds: float, inputs: dict[str, Path], gain_db: float, limiter_db: float | None, out: Path,
    speech_anchor: bool = False,
) -> list[str]:  # fmt: skip
    """The same track as one hand-written ffmpeg command, given the gain (and limiter) we measured."""
    sr, n = 44100, round(seconds * 44100)
    pts = [(f * seconds, b) for f, b in SCHEDULE]
    # right-channel phase (radians) of the piecewise-linear beat, constants folded per segment
    tau, fc, expr, cycles, pieces = 2 * math.pi, 200.0, "", 0.0, []
    for (t0, b0), (t1, b1) in itertools.pairwise(pts):
        k = (b1 - b0) / (2 * (t1 - t0))
        pieces.append(
            (
                t1,
                f"{tau * (fc * t0 + cycles):.12f}+{tau * (fc + b0):.12f}*(T-{t0})+{tau * k:.12f}*(T-{t0})*(T-{t0})",
            )
        )
        cycles += b0 * (t1 - t0) + k * (t1 - t0) ** 2
    t_end, b_end = pts[-1]
    expr = f"{tau * (fc * t_end + cycles):.12f}+{tau * (fc + b_end):.12f}*(T-{t_end})"
    for end, piece in reversed(pieces):
        expr = f"if(lt(T,{end}),{piece},{expr})"
    # both ears evaluated at a tenth of the rate from 64 samples before the start, resampled and
    # trimmed, 4096-sample frames, 64 KiB wav packets: what the engine does (sources.py)
    low, pad, frame = sr // 10, 64, 4096
    t_low = f"st(0,(n-{pad})/{low})"
    ears = f"{t_low};0.125*sin({tau * fc:.12f}*ld(0))|{t_low};0.125*sin({expr.replace('T', 'ld(0)')})"
    binaural = f"aevalsrc=exprs='{ears}':sample_rate={low}:duration={(n // 10 + 2 * pad + 1) / low:.12f}:nb_samples={frame // 10}"
    from worker.render.sources import colour_filter

    attack, release = (1, 10) if speech_anchor else (5, 50)  # what the engine's plan uses
    lim = (
        f",alimiter=limit={10 ** (limiter_db / 20)}:attack={attack}:release={release}:level=0:latency=1"
        if limiter_db
        else ""
    )
    sections, pink_gain = colour_filter("pink", sr)  # the engine's own pink noise
    pink = "".join(f",biquad=b0={b[0]}:b1={b[1]}:b2={b[2]}:a0=1:a1={a[1]}:a2={a[2]}:precision=f64"
                   for b, a in sections) + f",volume={pink_gain}:precision=double"  # fmt: skip
    fmt = "aformat=sample_fmts=fltp:sample_rates=44100:channel_layouts=stereo"
    graph = (
        f"[0:a]{fmt},adelay=delays={5 * sr}S:all=1,asplit=2[sp][sc];"
        f"[1:a]{fmt},afade=t=in:st=0:d=3,volume={10 ** (-10 / 20)},apad[mu];[sc]apad[sca];"
        f"[mu][sca]sidechaincompress=threshold={10 ** (-35 / 20)}:ratio=8:attack=20:release=400:detection=rms[duck];"
        f"[2:a]aresample={sr},atrim=start_sample={pad * 10}:end_sample={pad * 10 + n},asetpts=N,{fmt},volume={10 ** (-14 / 20)}[bin];"
        f"[3:a]{fmt},volume={10 ** (-22 / 20)}[sol];"
        f"[4:a][5:a]amerge=inputs=2,{fmt},volume={10 ** (-20 / 20)}[noi];"
        f"[6:a][sp][duck][bin][sol][noi]amix=inputs=6:duration=first:normalize=0:dropout_transition=0,"
        f"atrim=end_sample={n},afade=t=in:st=0:d=5,afade=t=out:st={seconds - 10}:d=10,"
        f"volume={10 ** (gain_db / 20)}:precision=double{lim},asplit=2[m][p]"
    )

    def lavfi(d):
        return ["-f", "lavfi", "-i", d]

    return [
        "ffmpeg", "-nostdin", "-v", "error", "-y",
        "-max_size", "65536", "-t", str(seconds), "-i", str(inputs["layers[0]"]),
        "-max_size", "65536", "-stream_loop", "-1", "-t", str(seconds), "-i", str(inputs["layers[1]"]),
        *lavfi(binaural),
        *lavfi(f"sine=frequency=528:sample_rate={sr}:duration={seconds}:samples_per_frame={frame}"),
        *lavfi(f"anoisesrc=color=white:sample_rate={sr}:duration={seconds}:amplitude=0.1:seed=1008:nb_samples={frame}{pink}"),
        *lavfi(f"anoisesrc=color=white:sample_rate={sr}:duration={seconds}:amplitude=0.1:seed=1009:nb_samples={frame}{pink}"),
        *lavfi(f"anullsrc=channel_layout=stereo:sample_rate={sr}:duration={seconds + 0.1}:nb_samples={frame}"),
        "-filter_complex", graph,
        "-map", "[m]", "-ar", str(sr), "-ac", "2", "-acodec", "pcm_s24le", "-f", "wav", str(out / "floor.wav"),
        "-map", "[p]", "-ar", str(sr), "-ac", "2", "-acodec", "libmp3lame", "-b:a", "192k", str(out / "floor.mp3"),
    ]  # fmt: skip


def mb(kb: int) -> str:
    return f"{kb / 1024:.0f} MB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="track length of the main run")
    ap.add_argument(
        "--memory", type=float, nargs="*", default=[], metavar="MIN", help="extra runs, memory only"
    )
    ap.add_argument("--no-floor", action="store_true")
    ap.add_argument("--child", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        child(args.child, args.work, args.out)
        return

    with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
        work = Path(tmp)
        inputs = make_inputs(work)
        seconds = args.minutes * 60
        print(f"track: {args.minutes:g} min, 5 layers (speech, ducked looped music, binaural ramp, 528 Hz, pink noise); "
              f"master wav 24-bit + mp3 192k full length; cpus: {os.cpu_count()}")  # fmt: skip
        fig = measured_child(seconds, work, work / "out")
        r = fig["result"]
        print(f"render:        {fig['wall_s']:.2f} s wall, {fig['cpu_s']:.2f} s CPU ({seconds / fig['wall_s']:.1f}x realtime), "
              f"{r['passes']} ffmpeg passes, limiter {'on' if r['limiter'] else 'off'}")  # fmt: skip
        print(f"loudness:      {r['integrated_lufs']:.1f} LUFS integrated, anchor {r.get('anchor')} "
              f"{r.get('speech_lufs') or r['integrated_lufs']:.1f} LUFS (target {r['target_lufs']:g}), "
              f"true peak {r['true_peak_dbtp']:.1f} dBTP (ceiling {r['ceiling_dbtp']:g})")  # fmt: skip
        print(
            f"peak memory:   process tree {mb(fig['tree_peak_kb'])}, Python process {mb(fig['python_peak_kb'])}"
        )
        if not args.no_floor:
            speech_anchor = r.get("anchor") == "speech"
            limiter_db = r["ceiling_dbtp"] - (0.3 if speech_anchor else 0.8) if r["limiter"] else None
            cmd = floor_command(seconds, inputs, r["gain_db"], limiter_db, work, speech_anchor)
            import resource

            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.monotonic()
            subprocess.run(cmd, check=True)
            floor = time.monotonic() - t
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            floor_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            print(f"floor:         {floor:.2f} s wall, {floor_cpu:.2f} s CPU for one hand-written ffmpeg command "
                  f"({seconds / floor:.1f}x realtime)")  # fmt: skip
            print(
                f"ours / floor:  {fig['wall_s'] / floor:.2f} wall time, {fig['cpu_s'] / floor_cpu:.2f} CPU time"
            )
            err = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-i", str(work / "floor.wav"),
                                  "-af", "ebur128=peak=true:framelog=verbose", "-f", "null", "-"],
                                 capture_output=True, text=True).stderr  # fmt: skip
            summary = " ".join(err[err.rfind("Summary:") :].split())
            print(f"floor output:  {summary[:160]}  (same track: check it matches ours)")
        for minutes in args.memory:
            f = measured_child(minutes * 60, work, work / f"out-{minutes:g}")
            print(f"memory {minutes:>4g} min: process tree {mb(f['tree_peak_kb'])}, Python process "
                  f"{mb(f['python_peak_kb'])} ({f['wall_s']:.1f} s wall, {minutes * 60 / f['wall_s']:.1f}x realtime)")  # fmt: skip


if __name__ == "__main__":
    main()
