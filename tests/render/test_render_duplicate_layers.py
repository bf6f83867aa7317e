"""Identical layers in one spec (found by tests/scale): ffmpeg-python merges equal nodes, so two
identical layers (or two sharing a source and its first filters) became one node with two outgoing
edges and the graph builder raised ValueError; the worker treated it as an unexpected error and
retried a valid spec until it failed. Each layer must be its own source, and two identical layers
must sum (+6 dB before normalisation), not collapse into one."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from tests.support.audio import decode, peak_hz_per_channel, window
from worker.render import RenderSettings, parse_spec, render
from worker.render.graph import mix_command
from worker.render.spec import LAYER_REGISTRY

SAME = [
    [{"type": "solfeggio", "frequency_hz": 417, "duration_s": 0.5}] * 2,
    [{"type": "noise", "seed": 767}, {"type": "noise", "seed": 767, "gain_db": -3}],
    [{"type": "binaural", "carrier_hz": 200, "beat_hz": 10, "fade_out_s": 0.1}] * 2,
    [
        {
            "type": "binaural",
            "carrier_hz": 200,
            "schedule": [{"t_s": 0, "beat_hz": 5}, {"t_s": 1, "beat_hz": 8}],
        }
    ]
    * 3,
    [{"type": "isochronic", "tone_hz": 300, "rate_hz": 4, "gain_db": -6}] * 2,
]
# Every registered layer type that sounds without an input file, twice the same random example:
# a new type is covered without anyone adding it here.
_rnd = random.Random(5)
SAME += [[kind.example(_rnd, 1.5)] * 2 for kind in LAYER_REGISTRY.values() if not kind.model.needs_input]
IDS = [f"{layers[0]['type']}-{i}" for i, layers in enumerate(SAME)]


@pytest.mark.parametrize("layers", SAME, ids=IDS)
def test_identical_layers_build_a_graph(layers) -> None:
    spec = parse_spec({"spec_version": 1, "duration_s": 1.5, "layers": layers})
    cmd = mix_command(spec, 1.5, {}, "ffmpeg")
    graph = cmd[cmd.index("-filter_complex") + 1]
    assert graph.count("amix=") == 1


def test_two_identical_tones_render_and_sum(tmp_path: Path, settings: RenderSettings) -> None:
    tone = {"type": "solfeggio", "frequency_hz": 528, "gain_db": -20}
    one = parse_spec(
        {"spec_version": 1, "duration_s": 2, "layers": [tone, {"type": "noise", "gain_db": -40}]}
    )
    two = parse_spec(
        {"spec_version": 1, "duration_s": 2, "layers": [tone, tone, {"type": "noise", "gain_db": -40}]}
    )
    r1 = asyncio.run(render(one, {}, tmp_path / "one", settings=settings))
    r2 = asyncio.run(render(two, {}, tmp_path / "two", settings=settings))
    # the doubled tone is 6 dB louder against the same noise: normalisation then takes ~6 dB off
    assert r1.gain_db - r2.gain_db == pytest.approx(6.0, abs=0.5)
    x, sr = decode(r2.master)
    assert all(
        f == pytest.approx(528, abs=0.5) for f in peak_hz_per_channel(window(x, sr, 0.5, 1), sr, 400, 700)
    )


def test_two_layers_reading_one_file_build_a_graph(speech_wav: Path) -> None:
    """A spoken cue repeated ("Breathe in." twice) is one provider file (named by its content), and
    two unlooped music beds from one generated clip share a file too: each layer still gets its own
    input."""
    from worker.render.probe import read_wav_header
    from worker.render.sources import LayerInput

    info = read_wav_header(speech_wav)
    assert info is not None
    cue = {"type": "speech", "text": "Breathe in."}
    bed = {"type": "music", "object": "beds/rain.wav", "loop": False}
    spec = parse_spec(
        {
            "spec_version": 1,
            "duration_s": 9,
            "layers": [cue, {**cue, "start_s": 4}, bed, {**bed, "gain_db": -3}],
        }
    )
    same = LayerInput(speech_wav, info)
    cmd = mix_command(spec, 9, {f"layers[{i}]": same for i in range(4)}, "ffmpeg")
    assert cmd.count("-i") == 5  # the silent bed and one input per layer
