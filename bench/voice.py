"""How much the limiter takes off the voice of the shipped meditation, per loudness anchor.

Renders worker/render/examples/guided-meditation.json (espeak-ng voice, full length unless
``--seconds``) with ``loudness.anchor`` = speech and = mix, and compares each master with the
same mix unlimited, in the 10 ms blocks where the voice speaks.

    uv run python bench/voice.py [--seconds 600]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

import numpy as np

from tests.render.test_render_voice import EXAMPLE, voice_gain_reduction
from worker.render import RenderSettings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=None, help="track length (default: the example's)")
    args = ap.parse_args()
    for anchor in ("speech", "mix"):
        payload = json.loads(EXAMPLE.read_text())
        if args.seconds:
            payload["duration_s"] = args.seconds
        payload["loudness"]["anchor"] = anchor
        with tempfile.TemporaryDirectory(prefix="bench-voice-") as tmp:
            r = voice_gain_reduction(payload, Path(tmp), RenderSettings(tmp_dir=Path(tmp) / "work"))
        print(f"anchor {anchor:>6}: voice gain reduction over {r.size} blocks of 10 ms: "
              f"99th percentile {np.percentile(r, 99):.2f} dB, max {r.max():.2f} dB, "
              f"> 1 dB in {(r > 1).mean():.1%}, > 3 dB in {(r > 3).mean():.1%}")  # fmt: skip


if __name__ == "__main__":
    main()
