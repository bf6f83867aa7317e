"""Hypothesis strategies for job payloads: valid render specs, and invalid ones made by breaking one
thing in a valid spec, each paired with the field path the error message must name.

Valid specs are short (1-1.5 s tracks, 0.2-1 s layers) and use only layers that need no paid
provider: binaural, isochronic, solfeggio, noise, and (rarely, ``speech=True``) espeak speech.

An invalid case is ``Bad(payload, field, kind)``: ``field`` is the path the worker's
"invalid payload: <field>: <rule>" must name, computed while mutating (``layers[2].beat_hz``).
Strings never hold NUL (PostgreSQL's jsonb cannot store it).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_args

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from worker.render.spec import LAYER_REGISTRY, SPEECH_TEXT_MAX_CHARS, Range

Path = tuple[str | int, ...]

# Characters that must never reach a filtergraph as text, and none of which a Token allows.
META = [";", "[a]", ";[a]", "'", "\\", ",", "=", "[out]", " ", "\n", "%", '"', "|", "$(id)", "`"]
# A value a Token *does* allow; appended after a metacharacter it must still be refused.
TOKENISH = ["a", "en", "espeak", "pink", "x:y", "v1.2"]
SECRET_LIKE = "test-secret-access-key-DO-NOT-LEAK"  # tests/support/s3.py's secret


@dataclass(frozen=True)
class Bad:
    payload: Any
    field: str
    kind: str


def fmt(path: Path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out or "payload"


def get(obj: Any, path: Path) -> Any:
    for p in path:
        obj = obj[p]
    return obj


def put(obj: Any, path: Path, value: Any) -> None:
    get(obj, path[:-1])[path[-1]] = value


def delete(obj: Any, path: Path) -> None:
    del get(obj, path[:-1])[path[-1]]


# ---------------------------------------------------------------- valid specs


def num(lo: float, hi: float) -> st.SearchStrategy[float]:
    return (
        st.floats(lo, hi, allow_nan=False, allow_infinity=False)
        .map(lambda x: round(x, 3))
        .filter(lambda x: lo <= x <= hi)
    )


@st.composite
def registry_layer(draw: Any, name: str, duration: float) -> dict[str, Any]:
    """A random valid layer of type ``name``, from the layer registry's own generator."""
    rnd = draw(st.randoms(use_true_random=False))
    return LAYER_REGISTRY[name].example(rnd, duration)


TONE_TYPES = [name for name, t in LAYER_REGISTRY.items() if not t.model.needs_input]
"""Layer types rendered with no input file (speech, espeak only, is added on request)."""


@st.composite
def tone_layer(draw: Any, duration: float) -> dict[str, Any]:
    """Any registered layer type that needs no input file (every new one is covered at once)."""
    return draw(registry_layer(draw(st.sampled_from(TONE_TYPES)), duration))


def speech_layer(duration: float) -> st.SearchStrategy[dict[str, Any]]:
    return registry_layer("speech", duration)


@st.composite
def valid_spec(draw: Any, speech: bool = False) -> dict[str, Any]:
    duration = draw(num(1.0, 1.5))
    spec: dict[str, Any] = {"spec_version": 1, "duration_s": duration}
    layers = draw(st.lists(tone_layer(duration), min_size=1, max_size=3))
    # A mix under EBU R128's absolute gate (-70 LUFS: every layer near -60 dB) is refused as
    # silent by design (tests/render/test_render_audio.py): keep one layer audible.
    layers[0]["gain_db"] = max(layers[0].get("gain_db", 0.0), -30.0)
    if speech:
        layers.insert(draw(st.integers(0, len(layers))), draw(speech_layer(duration)))
        if draw(st.booleans()):
            spec["duration_s"] = "fit"
            spec["tail_s"] = draw(num(0, 0.5))
    spec["layers"] = layers
    if draw(st.booleans()):
        spec["fade_in_s"] = draw(num(0, 0.4))
    if draw(st.booleans()):
        spec["fade_out_s"] = draw(num(0, 0.4))
    if draw(st.booleans()):
        spec["sample_rate"] = draw(st.sampled_from([44100, 48000]))
    if draw(st.booleans()):
        spec["loudness"] = {"target_lufs": draw(num(-36, -6)), "true_peak_dbtp": draw(num(-9, 0))}
    if draw(st.booleans()):
        preview: dict[str, Any] = {}
        mode = draw(st.sampled_from(["cbr", "vbr", "none"]))
        if mode == "cbr":
            preview["bitrate_kbps"] = draw(st.sampled_from([32, 64, 128, 192, 320]))
        elif mode == "vbr":
            preview["vbr_quality"] = draw(st.integers(0, 9))
        if draw(st.booleans()):
            preview["seconds"] = draw(num(1, 3))
        spec["output"] = {
            "master": {
                "format": draw(st.sampled_from(["wav", "flac"])),
                "bit_depth": draw(st.sampled_from([16, 24])),
            },
            "preview": preview,
        }
    return spec


# ---------------------------------------------------------------- invalid payloads: the mutations


def _range(field: FieldInfo) -> tuple[Range | None, bool]:
    """The :class:`Range` of a numeric field (None if it has none) and whether None is valid."""
    args = get_args(field.annotation)
    for meta in (*field.metadata, *(m for a in args for m in getattr(a, "__metadata__", ()))):
        if isinstance(meta, Range):
            return meta, type(None) in args
    return None, type(None) in args


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The model inside ``list[Model]`` / ``Model | None`` / ``Annotated[...]``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for a in get_args(annotation):
        found = _submodel(a)
        if found is not None:
            return found
    return None


def model_fields_walk(
    model: type[BaseModel], data: dict[str, Any], base: Path
) -> list[tuple[Path, FieldInfo]]:
    """(path, field) of every field of ``model`` at ``base``, descending into the nested models
    (single or in lists) present in ``data``."""
    out: list[tuple[Path, FieldInfo]] = []
    for name, field in model.model_fields.items():
        out.append((base + (name,), field))
        sub, value = _submodel(field.annotation), data.get(name)
        if sub is None or value is None:
            continue
        if isinstance(value, list):
            for j, item in enumerate(value):
                out += model_fields_walk(sub, item, base + (name, j))
        elif isinstance(value, dict):
            out += model_fields_walk(sub, value, base + (name,))
    return out


def layer_fields(spec: dict[str, Any]) -> list[tuple[Path, FieldInfo]]:
    """Every field of every layer, read from the layer registry's models."""
    out: list[tuple[Path, FieldInfo]] = []
    for i, layer in enumerate(spec["layers"]):
        out += model_fields_walk(LAYER_REGISTRY[layer["type"]].model, layer, ("layers", i))
    return out


def numeric_fields(spec: dict[str, Any]) -> list[tuple[Path, bool]]:
    """(path, optional) of the numeric fields present in ``spec`` or addable to it."""
    out: list[tuple[Path, bool]] = [(("fade_in_s",), False), (("fade_out_s",), False), (("tail_s",), False)]
    if spec.get("duration_s") != "fit":
        out.append((("duration_s",), False))
    out += [(("loudness", "target_lufs"), False), (("loudness", "true_peak_dbtp"), False)]
    for path, field in layer_fields(spec):
        bounds, optional = _range(field)
        if bounds is not None and (get_or_none(spec, path) is not None or not field.is_required()):
            out.append((path, optional))
    return out


def get_or_none(obj: Any, path: Path) -> Any:
    try:
        return get(obj, path)
    except (KeyError, IndexError, TypeError):
        return None


def field_range(spec: dict[str, Any], path: Path) -> tuple[float, float]:
    """Bounds of the numeric field at ``path``: a layer field's from its model, else RANGES."""
    for p, field in layer_fields(spec):
        bounds, _ = _range(field)
        if p == path and bounds is not None:
            return bounds.lo, bounds.hi
    return RANGES[str(path[-1])]


BAD_NUMBERS = st.sampled_from(
    [
        "NaN",
        "nan",
        "Infinity",
        "-Infinity",
        "inf",
        "1",
        "1e400",
        "",
        "0x10",
        True,
        False,
        [],
        [1.0],
        {},
        {"value": 1.0},
        {"$numberDouble": "NaN"},
    ]
)


def _ensure_parent(spec: dict[str, Any], path: Path) -> None:
    if path[0] == "loudness" and "loudness" not in spec:
        spec["loudness"] = {}


def m_wrong_type(draw: Any, spec: dict[str, Any]) -> Bad:
    path, optional = draw(st.sampled_from(numeric_fields(spec)))
    bad = draw(BAD_NUMBERS if optional else st.one_of(BAD_NUMBERS, st.none()))
    _ensure_parent(spec, path)
    put(spec, path, bad)
    return Bad(spec, fmt(path), "wrong_type")


RANGES: dict[str, tuple[float, float]] = {
    "fade_in_s": (0, 600),
    "fade_out_s": (0, 600),
    "tail_s": (0, 600),
    "target_lufs": (-36, -6),
    "true_peak_dbtp": (-9, 0),
}
"""Bounds of the top-level numeric fields (a layer's come from its model)."""


def m_out_of_range(draw: Any, spec: dict[str, Any]) -> Bad:
    path, _ = draw(st.sampled_from(numeric_fields(spec)))
    if path == ("duration_s",):
        lo, hi = 1, 3600  # RENDER_MAX_DURATION_S default
    else:
        lo, hi = field_range(spec, path)
    below = [lo - d for d in (0.001, 1, 1e6, 1e300)] + [-(10**400)]
    above = [hi + d for d in (0.001, 1, 1e6, 1e300)] + [10**400, 2**63]
    bad = draw(st.sampled_from(below + above))
    _ensure_parent(spec, path)
    put(spec, path, bad)
    return Bad(spec, fmt(path), "out_of_range")


def m_negative_duration(draw: Any, spec: dict[str, Any]) -> Bad:
    paths: list[Path] = [("layers", i, "duration_s") for i in range(len(spec["layers"]))]
    if spec["duration_s"] != "fit":
        paths.append(("duration_s",))
    path = draw(st.sampled_from(paths))
    put(spec, path, draw(st.sampled_from([-1, -0.5, -1e-9, -86400, 0])))
    return Bad(spec, fmt(path), "negative_duration")


def m_beat_out_of_range(draw: Any, spec: dict[str, Any]) -> Bad:
    i = draw(st.integers(0, len(spec["layers"]) - 1))
    bad = draw(st.sampled_from([0, 0.49, 40.01, 41, 1000, -5, 1e308]))
    layer = {"type": "binaural", "carrier_hz": 200}
    if draw(st.booleans()):
        layer["beat_hz"] = bad
        field = f"layers[{i}].beat_hz"
    else:
        j = draw(st.integers(0, 2))
        layer["schedule"] = [{"t_s": k, "beat_hz": bad if k == j else 10} for k in range(3)]
        field = f"layers[{i}].schedule[{j}].beat_hz"
    spec["layers"][i] = layer
    return Bad(spec, field, "beat_out_of_range")


def m_unknown_layer_type(draw: Any, spec: dict[str, Any]) -> Bad:
    i = draw(st.integers(0, len(spec["layers"]) - 1))
    bad = draw(
        st.sampled_from(
            [
                "tone",
                "sine",
                "Noise",
                "NOISE",
                "noise;[a]",
                "noise ",
                "",
                "music2",
                "amix",
                5,
                1.5,
                True,
                None,
                [],
                {},
                ["noise"],
            ]
        )
    )
    spec["layers"][i]["type"] = bad
    return Bad(spec, f"layers[{i}].type", "unknown_layer_type")


def m_missing_field(draw: Any, spec: dict[str, Any]) -> Bad:
    paths: list[Path] = [("spec_version",), ("duration_s",), ("layers",)]
    paths += [
        p for p, field in layer_fields(spec) if field.is_required() and get_or_none(spec, p) is not None
    ]
    path = draw(st.sampled_from(paths))
    delete(spec, path)
    return Bad(spec, fmt(path), "missing_field")


EXTRA_KEYS = st.sampled_from(
    [
        "volume",
        "gain",
        "beat",
        "x;[a]",
        "a:b",
        "__proto__",
        "constructor",
        "type2",
        "layers ",
        "Duration_s",
        "'",
        "é",
        "🎵",
    ]
)


def m_extra_field(draw: Any, spec: dict[str, Any]) -> Bad:
    parents: list[Path] = [()]
    for i, layer in enumerate(spec["layers"]):
        parents.append(("layers", i))
        parents += [("layers", i, "schedule", j) for j in range(len(layer.get("schedule") or []))]
    if "loudness" in spec:
        parents.append(("loudness",))
    if "output" in spec:
        parents += [("output",), ("output", "master"), ("output", "preview")]
    parent = draw(st.sampled_from(parents))
    key = draw(EXTRA_KEYS)
    get(spec, parent)[key] = draw(st.sampled_from([1, "x", None, {"a": 1}, [1]]))
    return Bad(spec, fmt(parent + (key,)), "extra_field")


def m_extra_nesting(draw: Any, spec: dict[str, Any]) -> Bad:
    choices: list[Path] = [("duration_s",), ("layers",)]
    if "loudness" in spec:
        choices.append(("loudness",))
    if "output" in spec:
        choices += [("output",), ("output", "master"), ("output", "preview")]
    for i, layer in enumerate(spec["layers"]):
        choices += [("layers", i), ("layers", i, "gain_db") if "gain_db" in layer else ("layers", i)]
        if "schedule" in layer:
            choices += [("layers", i, "schedule"), ("layers", i, "schedule", 0)]
    path = draw(st.sampled_from(choices))
    value = get(spec, path)
    wrap = draw(st.sampled_from(["list", "dict", "deep", "json-string"]))
    if wrap == "list" and isinstance(value, list):
        wrap = "dict"  # a list of lists
        value = [value]
    if wrap == "list":
        bad: Any = [value]
    elif wrap == "dict":
        bad = {"value": value}
    elif wrap == "deep":
        bad = value
        for _ in range(draw(st.integers(2, 60))):
            bad = [bad] if draw(st.booleans()) else {"v": bad}
    else:
        bad = json.dumps(value)
    put(spec, path, bad)
    return Bad(spec, fmt(path), "extra_nesting")


def m_huge_array(draw: Any, spec: dict[str, Any]) -> Bad:
    what = draw(st.sampled_from(["layers", "schedule", "text"]))
    if what == "layers":
        n = draw(st.sampled_from([17, 18, 64, 500]))
        spec["layers"] = [copy.deepcopy(spec["layers"][k % len(spec["layers"])]) for k in range(n)]
        return Bad(spec, "layers", "huge_array")
    i = draw(st.integers(0, len(spec["layers"]) - 1))
    if what == "schedule":
        n = draw(st.sampled_from([65, 100, 2000]))
        spec["layers"][i] = {
            "type": "binaural",
            "carrier_hz": 200,
            "schedule": [{"t_s": k * 0.01, "beat_hz": 5} for k in range(n)],
        }
        return Bad(spec, f"layers[{i}].schedule", "huge_array")
    n = draw(st.sampled_from([SPEECH_TEXT_MAX_CHARS + 1, 2 * SPEECH_TEXT_MAX_CHARS]))
    spec["layers"][i] = {"type": "speech", "provider": "espeak", "text": "a;[b] " * (n // 6 + 1)}
    return Bad(spec, f"layers[{i}].text", "huge_array")


def bad_string(draw: Any, *, token: bool = False) -> str:
    """A string with a filtergraph metacharacter; with ``token`` one a Token pattern refuses."""
    head = draw(st.sampled_from(TOKENISH))
    meta = draw(st.sampled_from(META))
    tail = draw(st.sampled_from(["", "a", "anullsink", "[b];[b]anull"]))
    s = draw(st.sampled_from([head + meta + tail, meta + head, head + meta]))
    if token and draw(st.integers(0, 9)) == 0:
        s = SECRET_LIKE + meta  # refused, and never echoed back
    return s


def m_metachar_string(draw: Any, spec: dict[str, Any]) -> Bad:
    """A metacharacter in one string field: the field is refused (Literal or Token), never rendered."""
    i = draw(st.integers(0, len(spec["layers"]) - 1))
    target = draw(
        st.sampled_from(
            [
                "type",
                "color",
                "duration_s",
                "spec_version",
                "format",
                "voice",
                "provider",
                "model",
                "object",
                "mode",
                "gen_provider",
                "url",
                "prompt",
            ]
        )
    )
    if target == "type":
        spec["layers"][i]["type"] = bad_string(draw)
        return Bad(spec, f"layers[{i}].type", "metachar")
    if target == "color":
        spec["layers"][i] = {"type": "noise", "color": bad_string(draw)}
        return Bad(spec, f"layers[{i}].color", "metachar")
    if target == "duration_s":
        spec["duration_s"] = draw(st.sampled_from(["fit;[a]", "fit'", "1;[a]", "1.5", "fit "]))
        return Bad(spec, "duration_s", "metachar")
    if target == "spec_version":
        spec["spec_version"] = draw(st.sampled_from(["1;[a]", "1", "1'", "v1"]))
        return Bad(spec, "spec_version", "metachar")
    if target == "format":
        spec["output"] = {"master": {"format": draw(st.sampled_from(["wav;[a]", "wav'", "mp3", "wav:x"]))}}
        return Bad(spec, "output.master.format", "metachar")
    if target in ("voice", "provider", "model"):
        layer = {
            "type": "speech",
            "text": "hi; [a] 'b'",
            "provider": "espeak",
            target: bad_string(draw, token=True),
        }
        spec["layers"][i] = layer
        return Bad(spec, f"layers[{i}].{target}", "metachar")
    if target == "object":
        spec["layers"][i] = {"type": "music", "object": bad_string(draw)}
        return Bad(spec, f"layers[{i}].object", "metachar")
    if target in ("mode", "gen_provider"):
        key = "mode" if target == "mode" else "provider"
        spec["layers"][i] = {
            "type": "music",
            "generate": {"prompt": "rain; [a]", key: bad_string(draw, token=True)},
        }
        return Bad(spec, f"layers[{i}].generate.{key}", "metachar")
    if target == "url":
        spec["layers"][i] = {
            "type": "music",
            "url": draw(
                st.sampled_from(
                    [
                        "ftp://x/a.mp3",
                        "file:///etc/passwd",
                        "javascript:alert(1)",
                        ";[a]",
                        "http://",
                        "not a url",
                    ]
                )
            ),
        }
        return Bad(spec, f"layers[{i}].url", "metachar")
    # prompt: the free-text field; empty or too long is the error (metacharacters in it are fine)
    spec["layers"][i] = {"type": "music", "generate": {"prompt": draw(st.sampled_from(["", "x;[a]" * 500]))}}
    return Bad(spec, f"layers[{i}].generate.prompt", "metachar")


def m_cross_field(draw: Any, spec: dict[str, Any]) -> Bad:
    i = draw(st.integers(0, len(spec["layers"]) - 1))
    rule = draw(
        st.sampled_from(
            [
                "both_beats",
                "no_beat",
                "schedule_order",
                "carrier_plus_beat",
                "fades",
                "start_after_end",
                "preview_both",
                "fit_no_speech",
                "music_sources",
                "empty_layers",
                "empty_schedule",
                "sample_rate",
                "bit_depth",
            ]
        )
    )
    if rule == "both_beats":
        spec["layers"][i] = {
            "type": "binaural",
            "carrier_hz": 200,
            "beat_hz": 5,
            "schedule": [{"t_s": 0, "beat_hz": 5}],
        }
        return Bad(spec, f"layers[{i}].beat_hz", rule)
    if rule == "no_beat":
        spec["layers"][i] = {"type": "binaural", "carrier_hz": 200}
        return Bad(spec, f"layers[{i}].beat_hz", rule)
    if rule == "schedule_order":
        t = draw(st.sampled_from([[0, 0], [1, 0.5], [0, 2, 1]]))
        spec["layers"][i] = {
            "type": "binaural",
            "carrier_hz": 200,
            "schedule": [{"t_s": x, "beat_hz": 5} for x in t],
        }
        return Bad(spec, f"layers[{i}].schedule", rule)
    if rule == "carrier_plus_beat":
        spec["layers"][i] = {"type": "binaural", "carrier_hz": 19990, "beat_hz": 10.5}
        return Bad(spec, f"layers[{i}].carrier_hz", rule)
    if rule == "fades":
        d = spec["duration_s"]
        if d == "fit":
            spec["duration_s"] = d = 1.2
        spec["fade_in_s"], spec["fade_out_s"] = round(d / 2 + 0.01, 3), round(d / 2 + 0.01, 3)
        return Bad(spec, "fade_out_s", rule)
    if rule == "start_after_end":
        d = spec["duration_s"]
        if d == "fit":
            spec["duration_s"] = d = 1.2
        spec["layers"][i]["start_s"] = draw(st.sampled_from([d, d + 0.001, 100]))
        return Bad(spec, f"layers[{i}].start_s", rule)
    if rule == "preview_both":
        spec["output"] = {"preview": {"bitrate_kbps": 128, "vbr_quality": 2}}
        return Bad(spec, "output.preview.vbr_quality", rule)
    if rule == "fit_no_speech":
        spec["layers"] = [x for x in spec["layers"] if x["type"] != "speech"] or [{"type": "noise"}]
        spec["duration_s"] = "fit"
        return Bad(spec, "duration_s", rule)
    if rule == "music_sources":
        layer: dict[str, Any] = {"type": "music"}
        if draw(st.booleans()):
            layer.update(object="a/b.mp3", url="https://example.com/a.mp3")
        spec["layers"][i] = layer
        return Bad(spec, f"layers[{i}].source", rule)
    if rule == "empty_layers":
        spec["layers"] = draw(st.sampled_from([[], None, "noise", 5, {}]))
        return Bad(spec, "layers", rule)
    if rule == "empty_schedule":
        spec["layers"][i] = {"type": "binaural", "carrier_hz": 200, "schedule": []}
        return Bad(spec, f"layers[{i}].schedule", rule)
    if rule == "sample_rate":
        spec["sample_rate"] = draw(st.sampled_from([22050, 96000, 0, -44100, "44100", 44100.5]))
        return Bad(spec, "sample_rate", rule)
    spec["output"] = {"master": {"bit_depth": draw(st.sampled_from([8, 32, "24", 24.5]))}}
    return Bad(spec, "output.master.bit_depth", rule)


def m_layer_not_object(draw: Any, spec: dict[str, Any]) -> Bad:
    i = draw(st.integers(0, len(spec["layers"]) - 1))
    spec["layers"][i] = draw(st.sampled_from([5, "noise", None, True, [], ["noise"], 1.5]))
    return Bad(spec, f"layers[{i}]", "layer_not_object")


def m_version(draw: Any, spec: dict[str, Any]) -> Bad:
    spec["spec_version"] = draw(st.sampled_from([0, 2, -1, 10**30, True, False, None, "", [1], {"v": 1}]))
    return Bad(spec, "spec_version", "version")


def m_legacy(draw: Any, spec: dict[str, Any]) -> Bad:
    legacy: dict[str, Any] = {"prompt": "calm piano; [a]", "duration": 10}
    broken = draw(st.sampled_from(["prompt", "duration", "quality", "mode", "extra", "missing_duration"]))
    if broken == "prompt":
        legacy["prompt"] = draw(st.sampled_from(["", 5, None, ["x"], "x" * 2001]))
    elif broken == "duration":
        legacy["duration"] = draw(st.sampled_from([0, 61, -1, "10", "NaN", 10**400, None]))
    elif broken == "quality":
        legacy["quality"] = draw(st.sampled_from(["ultra", "HIGH", "high;[a]", 1]))
    elif broken == "mode":
        legacy["mode"] = bad_string(draw, token=True)
    elif broken == "extra":
        legacy["layers"] = spec["layers"]
        return Bad(legacy, "layers", "legacy")
    else:
        del legacy["duration"]
        return Bad(legacy, "duration", "legacy")
    return Bad(legacy, broken, "legacy")


MUTATIONS: list[Callable[[Any, dict[str, Any]], Bad]] = [
    m_wrong_type,
    m_out_of_range,
    m_negative_duration,
    m_beat_out_of_range,
    m_unknown_layer_type,
    m_missing_field,
    m_extra_field,
    m_extra_nesting,
    m_huge_array,
    m_metachar_string,
    m_cross_field,
    m_layer_not_object,
    m_version,
    m_legacy,
]


@st.composite
def invalid_batch(draw: Any, k: int = 5) -> list[Bad]:
    """``k`` invalid payloads, each one valid spec broken one way (a fresh copy per mutation).

    Batching keeps generation fast: drawing the valid base costs far more than a mutation.
    """
    spec = draw(valid_spec(speech=draw(st.integers(0, 4)) == 0))  # speech fields are mutated too
    return [draw(st.sampled_from(MUTATIONS))(draw, copy.deepcopy(spec)) for _ in range(k)]


def invalid_payload() -> st.SearchStrategy[Bad]:
    return invalid_batch(1).map(lambda b: b[0])


JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["spec_version", "duration_s", "layers", "type", "prompt", "x"])
            | st.text(max_size=5),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@st.composite
def any_payloads(draw: Any, k: int = 5) -> list[Any]:
    """``k`` payloads of anything: invalid ones (one base spec broken ``k`` ways), the base itself,
    and arbitrary JSON (often not even an object), for parse_spec in-process."""
    bads = draw(invalid_batch(k))
    return [b.payload for b in bads] + [draw(JUNK)]


def names_field(message: str, bad: Bad) -> bool:
    """Whether a job's error message names the broken field: exactly, or (for a value wrapped in
    extra lists/objects) a path inside it, e.g. ``output.value`` for ``output: {"value": {...}}``."""
    if message.startswith(f"invalid payload: {bad.field}: "):
        return True
    return bad.kind == "extra_nesting" and message.startswith(
        (f"invalid payload: {bad.field}.", f"invalid payload: {bad.field}[")
    )


def collect(strategy: st.SearchStrategy[Any], n: int) -> list[Any]:
    """``n`` examples of ``strategy``, the same ones on every run (derandomized, no database)."""
    out: list[Any] = []

    @settings(
        max_examples=n,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def gather(x: Any) -> None:
        out.append(x)

    gather()
    return out
