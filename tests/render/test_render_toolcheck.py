"""The start-up ffmpeg check (worker/render/toolcheck.py) names every filter, encoder and muxer the
renders really use: a build lacking one must be refused by ``run`` and the release phase, not fail
every job. The lists are checked against the ffmpeg commands of real renders, not read from code."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from worker.render.spec import LAYER_REGISTRY
from worker.render.toolcheck import ENCODERS, FILTERS, MUXERS

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)

WRAPPER = """#!/bin/sh
printf '%s\\n' "$@" > "$FFMPEG_ARGV_DIR/$$.$(date +%s%N).argv"
exec {ffmpeg} "$@"
"""


def every_layer_specs() -> list[dict]:
    """Three random examples of every registered layer type (so a new type is covered unasked), in
    specs of at most 12 layers, every optional deliverable on: the first with speech (the
    voice-anchored loudness path, chapters, a pause), the others without (the whole-mix path)."""
    rnd = random.Random(11)
    spoken = [{"type": "speech", "text": "Rest. [pause 1s] And again.", "provider": "espeak"}]
    others = [kind.example(rnd, 4.0) for kind in LAYER_REGISTRY.values() for _ in range(3)]
    for layer in others:
        if layer["type"] == "speech":
            spoken.append(layer)
    others = [x for x in others if x["type"] != "speech"]
    groups = [spoken + others[:6]] + [others[i : i + 12] for i in range(6, len(others), 12)]
    return [
        {
            "spec_version": 1,
            "duration_s": 4,
            "layers": layers,
            "tags": {"title": "Every layer", "artist": "audio-worker"},
            **({"chapters": "speech"} if n == 0 else {}),
            "output": {"full": True, "peaks": True, "master": {"format": "flac", "bit_depth": 16}},
        }
        for n, layers in enumerate(groups)
    ]


def used_names(argv_dir: Path, known_filters: set[str]) -> tuple[set[str], set[str], set[str]]:
    filters: set[str] = set()
    encoders: set[str] = set()
    muxers: set[str] = set()
    for f in argv_dir.glob("*.argv"):
        args = f.read_text().split("\n")
        for flag, value in zip(args, args[1:], strict=False):
            if flag in ("-filter_complex", "-af", "-filter:a", "-lavfi") or (flag == "-i" and "=" in value):
                # a filter's name opens each chain element: after start, ';', ',' or ']' labels
                for name in re.findall(r"(?:^|[;,\]])\s*([a-z0-9_]+)(?=[=;,\[]|$)", value):
                    if name in known_filters:
                        filters.add(name)
            elif flag in ("-c:a", "-acodec", "-codec:a"):
                encoders.add(value)
            elif flag == "-f" and value != "lavfi":
                muxers.add(value)
    return filters, encoders, muxers


def test_the_start_up_check_lists_everything_a_render_of_every_layer_type_uses(tmp_path: Path) -> None:
    real = shutil.which("ffmpeg")
    assert real, "ffmpeg is needed"
    bindir, argv_dir = tmp_path / "bin", tmp_path / "argv"
    bindir.mkdir()
    argv_dir.mkdir()
    wrapper = bindir / "ffmpeg"
    wrapper.write_text(WRAPPER.format(ffmpeg=real))
    wrapper.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "FFMPEG_PATH": str(wrapper),
        "FFMPEG_ARGV_DIR": str(argv_dir),
    }
    for n, payload in enumerate(every_layer_specs()):
        spec = tmp_path / f"spec-{n}.json"
        spec.write_text(json.dumps(payload))
        done = subprocess.run(
            [sys.executable, "-m", "worker", "render", str(spec), "--out", str(tmp_path / f"out-{n}")],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=100,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    listing = subprocess.run([real, "-hide_banner", "-filters"], capture_output=True, text=True, check=True)
    known = set(re.findall(r"^\s*\S+\s+([a-z0-9_]+)\s", listing.stdout, re.MULTILINE))
    filters, encoders, muxers = used_names(argv_dir, known)
    assert {"aevalsrc", "alimiter", "ebur128", "libmp3lame"} & (filters | encoders), (
        "the commands were not seen"
    )
    assert filters - set(FILTERS) == set(), "filters the renders use but the start-up check does not ask for"
    assert encoders - set(ENCODERS) == set(), "encoders the renders use but the check does not ask for"
    assert muxers - set(MUXERS) == set(), "muxers the renders use but the check does not ask for"
