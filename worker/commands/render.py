"""``python -m worker render SPEC.json --out DIR``: render locally, no database or storage."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
from pathlib import Path

from worker.errors import JobError, PayloadError
from worker.job import workdir
from worker.queue.payload import decode_payload
from worker.render.deliverables import Deliverables, make_deliverables
from worker.render.engine import RenderResult, render
from worker.render.parse import parse_spec
from worker.render.settings import RenderSettings
from worker.render.spec import MusicLayer, RenderSpec, SpeechLayer
from worker.render.tags import read_cover

COVER = "tags.cover"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m worker render",
        description="Render a spec file locally to DIR/master.{wav,flac} and DIR/preview.mp3 "
        "(and DIR/full.mp3, DIR/peaks.json when the spec asks).",
    )
    p.add_argument("spec", type=Path, help="spec JSON file (spec_version 1 or the legacy music job)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument(
        "--input", action="append", default=[], metavar="KEY=FILE",
        help="audio file for a speech/music layer, e.g. layers[0]=voice.wav, or the cover image "
        "tags.cover=cover.jpg (repeatable)",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


async def _speech(layer: SpeechLayer, out_dir: Path) -> Path:
    """Speech from the configured provider (espeak-ng when no API key is set)."""
    from worker.providers import fetch_speech

    return await fetch_speech(
        text=layer.text, provider=layer.provider, voice=layer.voice, model=layer.model,
        speed=layer.speed, out_dir=out_dir,
    )  # fmt: skip


async def _music(layer: MusicLayer, out_dir: Path) -> Path:
    if layer.generate is None:
        raise PayloadError(layer.key, f"music from storage/URL: pass --input {layer.key}=FILE")
    from worker.providers import fetch_music

    g = layer.generate
    return await fetch_music(
        provider=g.provider, prompt=g.prompt, seconds=g.seconds, seed=g.seed, out_dir=out_dir
    )


async def _inputs(spec: RenderSpec, given: dict[str, Path], work: Path) -> dict[str, Path]:
    inputs = dict(given)
    for layer in spec.input_layers():
        if layer.key in inputs:
            continue
        if isinstance(layer, SpeechLayer):
            inputs[layer.key] = await _speech(layer, work)
        elif isinstance(layer, MusicLayer):
            inputs[layer.key] = await _music(layer, work)
    return inputs


class _Bar:
    """A progress bar on stderr (a line per 10 % when stderr is not a terminal)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.tty, self.last = enabled, sys.stderr.isatty(), -10.0

    def __call__(self, pct: float) -> None:
        if not self.enabled:
            return
        if self.tty:
            n = int(pct / 100 * 40)
            sys.stderr.write(f"\rrendering [{'#' * n}{'.' * (40 - n)}] {pct:5.1f}%")
            if pct >= 100:
                sys.stderr.write("\n")
            sys.stderr.flush()
        elif pct - self.last >= 10 or (pct >= 100 > self.last):
            self.last = pct
            print(f"rendering {pct:5.1f}%", file=sys.stderr, flush=True)


def _anchored(r: RenderResult) -> float:
    """Loudness of what was brought to the target (the speech, or the whole mix)."""
    return r.speech_lufs if r.speech_lufs is not None else r.integrated_lufs


def _summary(r: RenderResult, extra: Deliverables) -> str:
    lra = "n/a" if r.lra is None else f"{r.lra:.1f} LU"
    files = "".join(
        f"{name + ':':<10}{path}\n" for name, path in (("full", extra.full), ("peaks", extra.peaks)) if path
    )
    return (
        f"master:   {r.master}\npreview:  {r.preview}\n{files}"
        f"duration: {r.duration_s:.3f} s ({r.sample_rate} Hz, {r.master_format} {r.master_bit_depth}-bit)\n"
        f"loudness: {_anchored(r):.1f} LUFS {r.anchor} (target {r.target_lufs:g}), "
        f"{r.integrated_lufs:.1f} LUFS integrated, "
        f"true peak {r.true_peak_dbtp:.1f} dBTP (ceiling {r.ceiling_dbtp:g}), LRA {lra}\n"
        f"render:   {r.render_seconds:.2f} s ({r.duration_s / max(r.render_seconds, 1e-6):.1f}x realtime)"
    )


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    given: dict[str, Path] = {}
    for item in args.input:
        key, sep, file = item.partition("=")
        if not sep or not file:
            print(f"error: --input wants KEY=FILE, got {item!r}", file=sys.stderr)
            return 2
        given[key.strip()] = Path(file)
    try:
        payload = decode_payload(args.spec.read_bytes())
    except OSError as exc:
        print(f"error: cannot read {args.spec}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except (PayloadError, UnicodeDecodeError) as exc:
        print(f"error: {args.spec}: {exc}", file=sys.stderr)
        return 2
    try:
        settings = RenderSettings()
        spec = parse_spec(payload, settings)
        unknown = set(given) - {x.key for x in spec.input_layers()} - {COVER}
        if unknown:
            print(f"error: --input for no speech/music layer: {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        # The worker's scratch scheme (worker.job.workdir): a render killed with SIGKILL leaves its
        # files in a locked directory that the next render or worker on this machine removes.
        workdir.clean_dead(settings.tmp_dir)
        work = Path(tempfile.mkdtemp(prefix="render-cli-", dir=workdir.process_dir(settings.tmp_dir)))
        try:
            result, extra = asyncio.run(_run(spec, given, work, args.out, settings, _Bar(not args.quiet)))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    except JobError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, PayloadError) else 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    if args.json:
        doc = result.model_dump(mode="json") | {"full": extra.full and str(extra.full),
               "peaks": extra.peaks and str(extra.peaks), "chapters": [vars(c) for c in extra.chapters]}  # fmt: skip
        print(json.dumps(doc, indent=2))
    else:
        print(_summary(result, extra))
    return 0


async def _run(
    spec: RenderSpec, given: dict[str, Path], work: Path, out: Path, settings: RenderSettings, bar: _Bar
) -> tuple[RenderResult, Deliverables]:
    wants_cover = spec.tags is not None and spec.tags.cover is not None
    if wants_cover and COVER not in given:
        raise PayloadError(COVER, f"a storage object: pass --input {COVER}=FILE")
    cover = read_cover(given.pop(COVER)) if COVER in given else None
    inputs = await _inputs(spec, given, work)
    result = await render(spec, inputs, out, on_progress=bar, settings=settings)
    return await make_deliverables(spec, result, cover=cover, settings=settings)
