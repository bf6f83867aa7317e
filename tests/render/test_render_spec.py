"""Spec validation: good specs parse, bad ones fail naming the field and the rule."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from worker.errors import PayloadError
from worker.render import RenderSettings, parse_spec
from worker.render.spec import LAYER_TYPES, MusicLayer

EXAMPLES = Path(__file__).resolve().parents[2] / "worker" / "render" / "examples"


def spec(*layers: dict, **top: object) -> dict:
    return {"spec_version": 1, "duration_s": 10, "layers": list(layers), **top}


BIN = {"type": "binaural", "carrier_hz": 200, "beat_hz": 10}


def fails(payload: object, message: str, settings: RenderSettings | None = None) -> None:
    with pytest.raises(PayloadError) as exc:
        parse_spec(payload, settings)
    assert str(exc.value) == message


def test_good_spec_parses_with_defaults_and_layer_keys() -> None:
    s = parse_spec(spec(BIN, {"type": "speech", "text": "hello"}, {"type": "music", "object": "b/m.mp3"}))
    assert [x.key for x in s.layers] == ["layers[0]", "layers[1]", "layers[2]"]
    assert [x.key for x in s.input_layers()] == ["layers[1]", "layers[2]"]
    assert s.sample_rate == 44100 and s.loudness.target_lufs == -16 and s.loudness.true_peak_dbtp == -1.5
    assert json.loads(s.model_dump_json())["layers"][0]["carrier_hz"] == 200


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            spec({**BIN, "carrier_hz": 10}),
            "invalid payload: layers[0].carrier_hz: must be between 20 and 20000 Hz",
        ),
        (spec({**BIN, "beat_hz": 41}), "invalid payload: layers[0].beat_hz: must be between 0.5 and 40 Hz"),
        (
            spec(BIN, {**BIN, "beat_hz": math.nan}),
            "invalid payload: layers[1].beat_hz: must be a finite number",
        ),
        (spec({**BIN, "gain_db": 40}), "invalid payload: layers[0].gain_db: must be between -60 and 20 dB"),
        (
            spec({"type": "theremin"}),
            f"invalid payload: layers[0].type: unknown layer type (expected one of: {', '.join(LAYER_TYPES)})",
        ),
        (
            spec({"carrier_hz": 200}),
            f"invalid payload: layers[0].type: required (one of: {', '.join(LAYER_TYPES)})",
        ),
        (
            spec({"type": "binaural", "carrier_hz": 200}),
            "invalid payload: layers[0].beat_hz: give exactly one of beat_hz or schedule",
        ),
        (
            spec(
                {
                    "type": "binaural",
                    "carrier_hz": 200,
                    "schedule": [{"t_s": 5, "beat_hz": 10}, {"t_s": 5, "beat_hz": 4}],
                }
            ),
            "invalid payload: layers[0].schedule: times must be strictly increasing",
        ),
        (
            spec({"type": "noise", "color": "purple"}),
            "invalid payload: layers[0].color: must be one of 'white', 'pink', 'brown', 'blue', 'violet' or 'velvet'",
        ),
        (spec({"type": "noise", "volume": 3}), "invalid payload: layers[0].volume: unknown field"),
        (
            spec({"type": "speech", "text": "hi", "voice": "en'; rm -rf /"}),
            "invalid payload: layers[0].voice: must be a short name of letters, digits and _ . : @ + - (or a safe path)",
        ),
        (
            spec({"type": "music", "object": "a.mp3", "url": "https://example.com/a.mp3"}),
            "invalid payload: layers[0].source: give exactly one of object, url, generate",
        ),
        (spec(BIN, duration_s=7200), "invalid payload: duration_s: must be at most 3600 s"),
        (spec(BIN, duration_s="fit"), 'invalid payload: duration_s: "fit" needs at least one speech layer'),
        (
            spec({**BIN, "start_s": 10}),
            "invalid payload: layers[0].start_s: must be before the end of the track (10 s)",
        ),
        (spec(BIN, sample_rate=22050), "invalid payload: sample_rate: must be one of 44100 or 48000"),
        (spec(BIN, spec_version=2), "invalid payload: spec_version: unsupported version (supported: 1)"),
        ({"layers": []}, "invalid payload: spec_version: required (supported: 1)"),
        (spec(), "invalid payload: layers: list should have at least 1 item after validation, not 0"),
        ({"prompt": "calm piano", "duration": 90}, "invalid payload: duration: must be between 1 and 60 s"),
        (
            {"prompt": "calm piano", "duration": 20, "quality": "ultra"},
            "invalid payload: quality: must be one of 'low', 'medium' or 'high'",
        ),
        ([1, 2], "invalid payload: payload: must be a JSON object"),
    ],
)
def test_bad_specs_fail_naming_field_and_rule(payload: object, message: str) -> None:
    fails(payload, message, RenderSettings(max_duration_s=3600))


def test_max_duration_comes_from_settings() -> None:
    fails(
        spec(BIN, duration_s=120),
        "invalid payload: duration_s: must be at most 60 s",
        RenderSettings(max_duration_s=60),
    )
    assert parse_spec(spec(BIN, duration_s=60), RenderSettings(max_duration_s=60)).duration_s == 60


def test_settings_read_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENDER_MAX_DURATION_S", "90")
    monkeypatch.setenv("FFMPEG_STALL_TIMEOUT_S", "5")
    s = RenderSettings()
    assert (s.max_duration_s, s.stall_timeout_s) == (90, 5)
    monkeypatch.setenv("RENDER_MAX_DURATION_S", "0")
    with pytest.raises(ValueError):
        RenderSettings()


def test_legacy_job_maps_to_one_generated_music_layer() -> None:
    s = parse_spec({"prompt": "calm piano", "duration": 20, "quality": "high", "mode": "instrumental"})
    assert s.duration_s == 20 and len(s.layers) == 1
    layer = s.layers[0]
    assert isinstance(layer, MusicLayer) and layer.generate is not None
    assert (layer.generate.prompt, layer.generate.seconds, layer.generate.mode) == (
        "calm piano",
        20,
        "instrumental",
    )
    assert s.output.preview.bitrate_kbps == 320 and s.output.master.bit_depth == 24
    assert [x.key for x in s.input_layers()] == ["layers[0]"]


def test_schedule_beat_is_interpolated_linearly() -> None:
    s = parse_spec(spec({"type": "binaural", "carrier_hz": 200,
                         "schedule": [{"t_s": 2, "beat_hz": 10}, {"t_s": 6, "beat_hz": 6}]}))  # fmt: skip
    layer = s.layers[0]
    assert [layer.beat_at(t) for t in (0, 2, 4, 6, 9)] == [10, 10, 8, 6, 6]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.name)
def test_example_specs_are_valid(path: Path) -> None:
    parse_spec(json.loads(path.read_text()))


def test_no_spec_string_reaches_the_ffmpeg_command(tmp_path: Path) -> None:
    from worker.render.graph import LayerInput, mix_command
    from worker.render.probe import AudioInfo

    marker = "INJECT'],amovie=/etc/passwd;"
    s = parse_spec(spec(
        {"type": "speech", "text": marker, "voice": "en-us"},
        {"type": "music", "generate": {"prompt": marker, "mode": "calm"}, "duck": True},
        {"type": "binaural", "carrier_hz": 200.123456, "schedule": [{"t_s": 0, "beat_hz": 10}, {"t_s": 9, "beat_hz": 4}]},
    ))  # fmt: skip
    info = AudioInfo(3.0, 22050, 1, "pcm_s16le")
    files = {k: LayerInput(tmp_path / f"{k}.wav", info) for k in ("layers[0]", "layers[1]")}
    cmd = " ".join(mix_command(s, 10.0, files, "ffmpeg"))
    assert "INJECT" not in cmd and "passwd" not in cmd and "en-us" not in cmd and "calm" not in cmd


@given(st.dictionaries(st.sampled_from(["spec_version", "duration_s", "layers", "prompt", "duration", "sample_rate"]),
                       st.one_of(st.none(), st.booleans(), st.floats(), st.integers(), st.text(max_size=5),
                                 st.lists(st.dictionaries(st.text(max_size=8), st.floats() | st.text(max_size=4)), max_size=2))))  # fmt: skip
@hyp_settings(max_examples=200, deadline=None)
def test_any_payload_either_parses_or_raises_payload_error(payload: dict) -> None:
    try:
        parse_spec(payload)
    except PayloadError as exc:
        assert exc.field and exc.rule


def test_every_registered_layer_type_parses_its_examples_names_its_fields_and_is_documented() -> None:
    """Walks the layer registry, so a new layer type gets these checks without anyone listing it:
    its random examples parse, an error inside it names ``layers[i].<field>`` (never the type tag),
    and README's spec table has its row."""
    import random

    from worker.render.spec import LAYER_REGISTRY

    readme = (EXAMPLES.parents[2] / "README.md").read_text()
    rnd = random.Random(7)
    for name, kind in LAYER_REGISTRY.items():
        assert f"| `{name}` |" in readme, f"README's layer table lacks {name}"
        for _ in range(20):
            layer = kind.example(rnd, 1.2)
            parsed = parse_spec(spec(BIN, layer, duration_s=1.2))
            assert isinstance(parsed.layers[1], kind.model)
        fails(
            spec(BIN, {**kind.example(rnd, 1.2), "no_such_field": 1}),
            "invalid payload: layers[1].no_such_field: unknown field",
        )


def test_loudness_presets_fill_what_the_spec_leaves_and_anchor_defaults_to_speech() -> None:
    from worker.render.spec import LOUDNESS_PRESETS

    expected = {
        "apple-podcasts": (-16, -1),
        "spotify": (-14, -1),
        "youtube": (-14, -1),
        "ebu-r128": (-23, -1),
    }
    for name, (lufs, tp) in expected.items():
        s = parse_spec(spec(BIN, loudness={"preset": name}))
        assert (s.loudness.target_lufs, s.loudness.true_peak_dbtp) == (lufs, tp)
    assert LOUDNESS_PRESETS["sleep"].target_lufs < -20 and LOUDNESS_PRESETS["sleep"].why
    s = parse_spec(spec(BIN, loudness={"preset": "spotify", "true_peak_dbtp": -2}))
    assert (s.loudness.target_lufs, s.loudness.true_peak_dbtp) == (-14, -2)
    fails(spec(BIN, loudness={"preset": "loud"}), "invalid payload: loudness.preset: must be one of "
          "apple-podcasts, spotify, youtube, ebu-r128, sleep")  # fmt: skip
    assert parse_spec(spec(BIN)).loudness_anchor == "mix"
    assert parse_spec(spec(BIN, {"type": "speech", "text": "hi"})).loudness_anchor == "speech"
    mixed = parse_spec(spec(BIN, {"type": "speech", "text": "hi"}, loudness={"anchor": "mix"}))
    assert mixed.loudness_anchor == "mix"
    fails(spec(BIN, loudness={"anchor": "speech"}),
          'invalid payload: loudness.anchor: "speech" needs at least one speech layer')  # fmt: skip


@pytest.mark.parametrize(
    ("layer", "field"),
    [
        ({"type": "speech", "text": "Hi.", "provider": "polly"}, "layers[1].provider"),
        (
            {"type": "music", "generate": {"prompt": "rain", "provider": "suno"}},
            "layers[1].generate.provider",
        ),
    ],
)
def test_unknown_provider_is_refused_when_the_spec_is_read(layer, field):
    """Before any layer is fetched: a paid layer earlier in the spec is never bought for a job that must fail."""
    with pytest.raises(
        PayloadError, match=rf"{re.escape(field)}: unknown (speech|music) provider \(one of: "
    ):
        parse_spec(spec(BIN, layer))
