"""The render spec (``spec_version: 1``): what a job asks the engine to render.

Every number is range-checked and finite; every string that could name something is a short
identifier. Nothing in a spec is ever copied into the filtergraph as text: the graph builder
formats the validated numbers itself.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Generic, Literal, TypeVar, Union, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    HttpUrl,
    PrivateAttr,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import CoreSchema, core_schema

from worker.providers import registry
from worker.providers.pauses import PauseMarkerError, split_pauses
from worker.providers.provider import Kind
from worker.render import sources
from worker.render.sources import SourceContext, Stream

SPEC_VERSION = 1
SOLFEGGIO_HZ = (174, 285, 396, 417, 528, 639, 741, 852, 963)
NoiseColor = Literal["white", "pink", "brown", "blue", "violet", "velvet"]
NOISE_COLORS: tuple[str, ...] = get_args(NoiseColor)


def _fmt(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True)
class Range:
    """A finite float in [lo, hi] whose error message states the rule: ``Annotated[float, Range(...)]``.

    Pydantic builds the check from it; the random-spec tests read the bounds from the field's
    metadata to derive out-of-range values; type checkers see a plain ``float``."""

    lo: float
    hi: float
    unit: str = ""

    def check(self, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be a finite number")
        if not self.lo <= v <= self.hi:
            suffix = f" {self.unit}" if self.unit else ""
            raise ValueError(f"must be between {_fmt(self.lo)} and {_fmt(self.hi)}{suffix}")
        return v

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(
            self.check, core_schema.float_schema(strict=True, allow_inf_nan=True)
        )


Token = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@+\-]{0,127}$")]
"""A provider, voice, model or mode name: letters, digits and ``_ . : @ + -``."""


def _no_dotdot(v: str) -> str:
    if ".." in v:
        raise ValueError("must not contain '..'")
    return v


ObjectPath = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_./\-]{0,511}$"), AfterValidator(_no_dotdot)
]
"""A storage object path ``bucket/dir/file.mp3`` (no ``..``)."""

Seconds = Annotated[float, Range(0, 86400, "s")]
FadeSeconds = Annotated[float, Range(0, 600, "s")]
GainDb = Annotated[float, Range(-60, 20, "dB")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LayerBase(_Model):
    type: str
    """The layer type's name (each model narrows it to its own literal: the union's tag)."""
    gain_db: GainDb = 0.0
    start_s: Seconds = 0.0
    duration_s: Annotated[float, Range(0.1, 86400, "s")] | None = None
    """Length of the layer from ``start_s``; default: to the end of the track (speech: its own length)."""
    fade_in_s: FadeSeconds = 0.0
    fade_out_s: FadeSeconds = 0.0
    _key: str = PrivateAttr(default="")

    @property
    def key(self) -> str:
        """Stable name of the layer in its spec, ``layers[<index>]``."""
        return self._key

    needs_input: ClassVar[bool] = False
    """Whether the layer is rendered from an external audio file (speech, music)."""


SPEECH_TEXT_MAX_CHARS = 100_000
"""A 30-minute guided script is ~27,000 characters (150 words a minute); 100,000 covers the longest
track a worker may render (RENDER_MAX_DURATION_S default 1 h: ~54,000 spoken characters) with room
for pause markers, and matches SPEECH_MAX_CHARS' default, which operators may set lower."""


def _pauses_ok(text: str) -> str:
    try:
        split_pauses(text)
    except PauseMarkerError as exc:
        raise ValueError(str(exc)) from None
    return text


def _provider_of(kind: Kind) -> AfterValidator:
    """A provider name the registry knows for ``kind``: refused when the spec is read, before any
    paid call of the job's other layers."""

    def check(name: str) -> str:
        if name not in registry.names(kind):
            raise ValueError(f"unknown {kind} provider (one of: {', '.join(registry.names(kind))})")
        return name

    return AfterValidator(check)


class SpeechLayer(LayerBase):
    """Text spoken by a provider's voice; the pipeline supplies the audio file. Pause markers
    (``[pause 10s]``, ``<break time="500ms"/>``) become exact silence."""

    type: Literal["speech"]
    needs_input: ClassVar[bool] = True
    text: Annotated[
        str, StringConstraints(min_length=1, max_length=SPEECH_TEXT_MAX_CHARS), AfterValidator(_pauses_ok)
    ]
    provider: Annotated[Token, _provider_of("speech")] | None = None
    voice: Token | None = None
    model: Token | None = None
    speed: Annotated[float, Range(0.5, 2.0)] = 1.0


class Duck(_Model):
    """Sidechain compression of a music layer under the speech layers."""

    threshold_db: Annotated[float, Range(-60, 0, "dB")] = -35.0
    ratio: Annotated[float, Range(1, 20)] = 8.0
    attack_ms: Annotated[float, Range(1, 2000, "ms")] = 20.0
    release_ms: Annotated[float, Range(10, 9000, "ms")] = 400.0


class GeneratedMusic(_Model):
    provider: Annotated[Token, _provider_of("music")] | None = None
    prompt: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    seconds: Annotated[float, Range(1, 600, "s")] = 30.0
    seed: Annotated[int, Field(strict=True, ge=0, le=2**32 - 1)] | None = None
    mode: Token | None = None


class MusicLayer(LayerBase):
    """A music bed from storage, a URL, or a generator; looped to fill its span."""

    type: Literal["music"]
    needs_input: ClassVar[bool] = True
    object: ObjectPath | None = None
    url: HttpUrl | None = None
    generate: GeneratedMusic | None = None
    loop: bool = True
    loop_crossfade_s: Annotated[float, Range(0, 10, "s")] = 0.1
    """Equal-power crossfade at each loop seam (0: butt-joined); a seamless input is looped as is."""
    duck: Duck | None = None

    @field_validator("duck", mode="before")
    @classmethod
    def _duck_shorthand(cls, v: Any) -> Any:
        if v is True:
            return {}
        if v is False:
            return None
        return v

    @model_validator(mode="after")
    def _one_source(self) -> MusicLayer:
        n = sum(x is not None for x in (self.object, self.url, self.generate))
        if n != 1:
            raise ValueError("source: give exactly one of object, url, generate")
        if self.url is not None and self.url.scheme not in ("http", "https"):
            raise ValueError("url: must be http or https")
        return self


Carrier = Annotated[float, Range(20, 20000, "Hz")]
Beat = Annotated[float, Range(0.5, 40, "Hz")]


class RampPoint(_Model):
    t_s: Seconds
    beat_hz: Beat


class BinauralLayer(LayerBase):
    """Left ear at ``carrier_hz``, right at carrier + beat; the beat fixed or ramped linearly
    between schedule points (held before the first and after the last), phase-continuous."""

    type: Literal["binaural"]
    carrier_hz: Carrier
    beat_hz: Beat | None = None
    schedule: Annotated[list[RampPoint], Field(min_length=1, max_length=64)] | None = None

    @model_validator(mode="after")
    def _beat_or_schedule(self) -> BinauralLayer:
        if (self.beat_hz is None) == (self.schedule is None):
            raise ValueError("beat_hz: give exactly one of beat_hz or schedule")
        if self.schedule:
            times = [p.t_s for p in self.schedule]
            if any(b <= a for a, b in zip(times, times[1:])):
                raise ValueError("schedule: times must be strictly increasing")
            top = max(p.beat_hz for p in self.schedule)
        else:
            top = self.beat_hz or 0.0
        if self.carrier_hz + top > 20000:
            raise ValueError("carrier_hz: carrier + beat must stay at or below 20000 Hz")
        return self

    def beat_at(self, t: float) -> float:
        """Beat frequency (Hz) at ``t`` seconds into the layer."""
        if self.schedule is None:
            return float(self.beat_hz or 0.0)
        pts = self.schedule
        if t <= pts[0].t_s:
            return pts[0].beat_hz
        for a, b in zip(pts, pts[1:]):
            if t <= b.t_s:
                return a.beat_hz + (b.beat_hz - a.beat_hz) * (t - a.t_s) / (b.t_s - a.t_s)
        return pts[-1].beat_hz


class IsochronicLayer(LayerBase):
    """A tone switched on and off ``rate_hz`` times a second (smooth pulses; no headphones needed)."""

    type: Literal["isochronic"]
    tone_hz: Carrier
    rate_hz: Beat


class SolfeggioLayer(LayerBase):
    """A pure tone: one of the Solfeggio frequencies (174 ... 963 Hz) or any audible value."""

    type: Literal["solfeggio"]
    frequency_hz: Carrier = 528.0


class NoiseLayer(LayerBase):
    """A stereo (decorrelated) noise bed."""

    type: Literal["noise"]
    color: NoiseColor = "pink"
    seed: Annotated[int, Field(strict=True, ge=0, le=2**32 - 2)] | None = None


# ---------------------------------------------------------------- the layer registry

L = TypeVar("L", bound=LayerBase)


@dataclass(frozen=True)
class LayerType(Generic[L]):
    """One layer type: its model, the builder of its sound, and a generator of random valid layers
    (plain JSON, for the random-spec tests). Declared once in :data:`LAYER_REGISTRY`; the spec's
    union, the error paths, the graph dispatch and the fuzz coverage all derive from it."""

    model: type[L]
    source: Callable[[L, SourceContext], Stream]
    example: Callable[[random.Random, float], dict[str, Any]]
    """A random valid layer (as JSON) for a track of the given seconds; renders without a paid provider."""

    @property
    def name(self) -> str:
        return str(get_args(self.model.model_fields["type"].annotation)[0])


def _r(rnd: random.Random, lo: float, hi: float) -> float:
    return round(rnd.uniform(lo, hi), 3)


def _common_example(rnd: random.Random, duration: float) -> dict[str, Any]:
    """Random values of the fields every layer has (``duration`` is the track length)."""
    out: dict[str, Any] = {}
    if rnd.random() < 0.5:
        out["gain_db"] = rnd.choice([_r(rnd, -30, 0), -60, 20, 0])
    if rnd.random() < 0.5:
        out["start_s"] = _r(rnd, 0, min(0.5, duration - 0.1))
    if rnd.random() < 0.5:
        out["duration_s"] = _r(rnd, 0.2, 1.0)
    for fade in ("fade_in_s", "fade_out_s"):
        if rnd.random() < 0.5:
            out[fade] = _r(rnd, 0, 0.3)
    return out


def _speech_example(rnd: random.Random, duration: float) -> dict[str, Any]:
    texts = ["Breathe in.", "Rest; [a] here: 'now'.", "Calm, calm = calm.", "Slowly \\ softly | gently."]
    out: dict[str, Any] = {"type": "speech", "text": rnd.choice(texts), "provider": "espeak"}
    out["start_s"] = _r(rnd, 0, min(0.3, duration - 0.1))
    if rnd.random() < 0.5:
        out["speed"] = _r(rnd, 0.5, 2.0)
    if rnd.random() < 0.5:
        out["gain_db"] = _r(rnd, -12, 0)
    return out


def _music_example(rnd: random.Random, duration: float) -> dict[str, Any]:
    generate = {"provider": "local", "prompt": "soft rain", "seconds": _r(rnd, 1, 3)}
    out: dict[str, Any] = {"type": "music", **_common_example(rnd, duration), "generate": generate}
    out["loop"] = rnd.random() < 0.7
    if rnd.random() < 0.3:
        out["duck"] = True
    return out


def _binaural_example(rnd: random.Random, duration: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "binaural",
        **_common_example(rnd, duration),
        "carrier_hz": _r(rnd, 60, 1200),
    }
    if rnd.random() < 0.5:
        out["beat_hz"] = _r(rnd, 0.5, 40)
    else:
        times = sorted({_r(rnd, 0, 2) for _ in range(rnd.randint(1, 4))})
        out["schedule"] = [{"t_s": t, "beat_hz": _r(rnd, 0.5, 40)} for t in times]
    return out


def _isochronic_example(rnd: random.Random, duration: float) -> dict[str, Any]:
    common = _common_example(rnd, duration)
    return {"type": "isochronic", **common, "tone_hz": _r(rnd, 60, 4000), "rate_hz": _r(rnd, 0.5, 40)}


def _solfeggio_example(rnd: random.Random, duration: float) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "solfeggio", **_common_example(rnd, duration)}
    if rnd.random() < 0.5:
        out["frequency_hz"] = rnd.choice(SOLFEGGIO_HZ) if rnd.random() < 0.5 else _r(rnd, 20, 20000)
    return out


def _noise_example(rnd: random.Random, duration: float) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "noise", **_common_example(rnd, duration)}
    if rnd.random() < 0.5:
        out["color"] = rnd.choice(NOISE_COLORS)
    if rnd.random() < 0.5:
        out["seed"] = rnd.randint(0, 2**32 - 2)
    return out


LAYER_REGISTRY: dict[str, LayerType[Any]] = {
    t.name: t
    for t in (
        LayerType(SpeechLayer, sources.speech, _speech_example),
        LayerType(MusicLayer, sources.music, _music_example),
        LayerType(BinauralLayer, sources.binaural, _binaural_example),
        LayerType(IsochronicLayer, sources.isochronic, _isochronic_example),
        LayerType(SolfeggioLayer, sources.solfeggio, _solfeggio_example),
        LayerType(NoiseLayer, sources.noise, _noise_example),
    )
}
LAYER_TYPES: tuple[str, ...] = tuple(LAYER_REGISTRY)
"""The layer type names, in registry order (derived: edit :data:`LAYER_REGISTRY`)."""

if TYPE_CHECKING:
    Layer = LayerBase
else:
    Layer = Annotated[Union[tuple(t.model for t in LAYER_REGISTRY.values())], Field(discriminator="type")]  # noqa: UP007
InputLayer = SpeechLayer | MusicLayer


def layer_type(layer: LayerBase) -> LayerType[Any]:
    """The registry entry of a parsed layer."""
    return LAYER_REGISTRY[layer.type]


@dataclass(frozen=True)
class LoudnessPreset:
    target_lufs: float
    true_peak_dbtp: float
    why: str


LOUDNESS_PRESETS: dict[str, LoudnessPreset] = {
    "apple-podcasts": LoudnessPreset(-16.0, -1.0, "Apple Podcasts' recommended loudness"),
    "spotify": LoudnessPreset(-14.0, -1.0, "Spotify's playback normalisation level"),
    "youtube": LoudnessPreset(-14.0, -1.0, "YouTube's playback normalisation level"),
    "ebu-r128": LoudnessPreset(-23.0, -1.0, "EBU R128 broadcast loudness"),
    "sleep": LoudnessPreset(
        -24.0,
        -3.0,
        "played at bedtime, at low volume in a quiet room, often right after louder apps: a quiet"
        " master needs no reach for the volume, never startles, and keeps soft peaks far from the limiter",
    ),
}
"""Loudness presets by name: ``loudness.preset`` fills the target and ceiling it does not set."""

LOUDNESS_ANCHORS = ("mix", "speech")


class Loudness(_Model):
    """Loudness normalisation. ``anchor``: what is brought to ``target_lufs``: the whole ``mix``
    (EBU R128 programme loudness), or the ``speech`` (dialogue-anchored, the idea of ATSC A/85:
    the voice at the target, the beds under it by their own gains, so the limiter has almost
    nothing to do); default: speech when the spec has speech layers, else the mix."""

    preset: str | None = None
    target_lufs: Annotated[float, Range(-36, -6, "LUFS")] = -16.0
    true_peak_dbtp: Annotated[float, Range(-9, 0, "dBTP")] = -1.5
    anchor: Literal["mix", "speech"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("preset") is None:
            return data
        name = data["preset"]
        if not isinstance(name, str) or name not in LOUDNESS_PRESETS:
            raise ValueError(f"preset: must be one of {', '.join(LOUDNESS_PRESETS)}")
        p = LOUDNESS_PRESETS[name]
        return {"target_lufs": p.target_lufs, "true_peak_dbtp": p.true_peak_dbtp, **data}


class MasterOutput(_Model):
    format: Literal["wav", "flac"] = "wav"
    bit_depth: Literal[16, 24] = 24


Mp3Bitrate = Literal[32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320]


class PreviewOutput(_Model):
    """MP3 preview: CBR ``bitrate_kbps`` (default 192) or VBR ``vbr_quality`` (0 best .. 9)."""

    bitrate_kbps: Mp3Bitrate | None = None
    vbr_quality: Annotated[int, Field(strict=True, ge=0, le=9)] | None = None
    seconds: Annotated[float, Range(1, 86400, "s")] | None = None
    """Only the first N seconds (with a short fade-out); default: the whole track."""

    @model_validator(mode="after")
    def _one_mode(self) -> PreviewOutput:
        if self.bitrate_kbps is not None and self.vbr_quality is not None:
            raise ValueError("vbr_quality: give bitrate_kbps or vbr_quality, not both")
        return self


class FullOutput(_Model):
    """The full-length tagged MP3 with chapters (``output.full``; off unless asked: the preview is
    already the whole track unless ``preview.seconds`` shortens it)."""

    format: Literal["mp3"] = "mp3"
    bitrate_kbps: Mp3Bitrate | None = None
    """CBR bitrate (default 192), or ``vbr_quality`` (0 best .. 9)."""
    vbr_quality: Annotated[int, Field(strict=True, ge=0, le=9)] | None = None

    @model_validator(mode="after")
    def _one_mode(self) -> FullOutput:
        if self.bitrate_kbps is not None and self.vbr_quality is not None:
            raise ValueError("vbr_quality: give bitrate_kbps or vbr_quality, not both")
        return self


class PeaksOutput(_Model):
    """Waveform peaks for players (BBC audiowaveform JSON, version 2; ``output.peaks``). Off unless
    asked: a job's objects stay master + preview, and a bucket that only allows audio MIME types
    would refuse the JSON."""

    samples_per_pixel: Annotated[int, Field(strict=True, ge=32, le=1_048_576)] | None = None
    """Default: a tenth of the sample rate (10 pixels a second: ~150 KB of JSON for 30 minutes)."""
    bits: Literal[8, 16] = 8


def _on_off(v: Any) -> Any:
    """``true`` = the defaults, ``false`` = none."""
    return {} if v is True else None if v is False else v


class Outputs(_Model):
    master: MasterOutput = MasterOutput()
    preview: PreviewOutput = PreviewOutput()
    full: FullOutput | None = None
    peaks: PeaksOutput | None = None

    _shorthand = field_validator("full", "peaks", mode="before")(_on_off)


TagText = Annotated[str, StringConstraints(min_length=1, max_length=500)]


class Tags(_Model):
    """Metadata written into every deliverable: ID3v2.4 (MP3s, WAV master), Vorbis comments (FLAC)."""

    title: TagText | None = None
    artist: TagText | None = None
    album: TagText | None = None
    comment: Annotated[str, StringConstraints(min_length=1, max_length=2000)] | None = None
    genre: TagText | None = None
    year: Annotated[int, Field(strict=True, ge=1000, le=9999)] | None = None
    cover: ObjectPath | None = None
    """A JPEG or PNG in storage (``bucket/key`` or a key in the master bucket), at most 10 MiB."""


class Chapter(_Model):
    start_s: Seconds
    title: TagText


Chapters = Annotated[list[Chapter], Field(min_length=1, max_length=256)] | Literal["speech"]
"""``"speech"``: a chapter at the start of each speech layer, titled by its first words; or
explicit marks ``[{start_s, title}]`` in increasing time. A chapter lasts until the next one."""


class RenderSpec(_Model):
    """A validated render job. Build it with :func:`worker.render.parse_spec`."""

    spec_version: Literal[1]
    duration_s: Annotated[float, Range(1, 10_000_000, "s")] | Literal["fit"]
    """Track length, or ``"fit"``: the end of the last speech layer plus ``tail_s``."""
    tail_s: Annotated[float, Range(0, 600, "s")] = 10.0
    sample_rate: Literal[44100, 48000] = 44100
    fade_in_s: FadeSeconds = 0.0
    fade_out_s: FadeSeconds = 0.0
    loudness: Loudness = Loudness()
    layers: Annotated[list[Layer], Field(min_length=1)]
    output: Outputs = Outputs()
    tags: Tags | None = None
    chapters: Chapters | None = None

    @field_validator("chapters", mode="before")
    @classmethod
    def _chapters_shape(cls, v: Any) -> Any:
        if isinstance(v, str) and v != "speech":
            raise ValueError('must be "speech" or a list of {start_s, title}')
        return v

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> RenderSpec:
        ctx = info.context or {}
        max_d = float(ctx.get("max_duration_s", 3600.0))
        max_layers = int(ctx.get("max_layers", 16))
        if len(self.layers) > max_layers:
            raise ValueError(f"layers: at most {max_layers} layers")
        if self.duration_s == "fit":
            if not any(isinstance(x, SpeechLayer) for x in self.layers):
                raise ValueError('duration_s: "fit" needs at least one speech layer')
        else:
            d = float(self.duration_s)
            if d > max_d:
                raise ValueError(f"duration_s: must be at most {_fmt(max_d)} s")
            if self.fade_in_s + self.fade_out_s > d:
                raise ValueError("fade_out_s: fade_in_s + fade_out_s must not exceed duration_s")
            for i, layer in enumerate(self.layers):
                if layer.start_s >= d:
                    raise ValueError(
                        f"layers[{i}].start_s: must be before the end of the track ({_fmt(d)} s)"
                    )
        if isinstance(self.chapters, list):
            starts = [c.start_s for c in self.chapters]
            if any(b <= a for a, b in itertools.pairwise(starts)):
                raise ValueError("chapters: start_s must be strictly increasing")
            if self.duration_s != "fit" and starts[-1] >= float(self.duration_s):
                raise ValueError("chapters: every start_s must be before the end of the track")
        elif self.chapters == "speech" and not any(isinstance(x, SpeechLayer) for x in self.layers):
            raise ValueError('chapters: "speech" needs at least one speech layer')
        if self.loudness.anchor == "speech" and not any(isinstance(x, SpeechLayer) for x in self.layers):
            raise ValueError('loudness.anchor: "speech" needs at least one speech layer')
        for i, layer in enumerate(self.layers):
            layer._key = f"layers[{i}]"
        return self

    def input_layers(self) -> list[InputLayer]:
        """The layers that need an external audio file (speech, music), in spec order."""
        return [x for x in self.layers if x.needs_input]  # type: ignore[misc]

    @property
    def loudness_anchor(self) -> Literal["mix", "speech"]:
        """What the normaliser brings to the target (see :class:`Loudness`)."""
        if self.loudness.anchor is not None:
            return self.loudness.anchor
        return "speech" if self.speech_layers() else "mix"

    def speech_layers(self) -> list[SpeechLayer]:
        return [x for x in self.layers if isinstance(x, SpeechLayer)]


class LegacyJob(_Model):
    """The old music app's job: one generated-music clip."""

    prompt: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    duration: Annotated[float, Range(1, 60, "s")]
    quality: Literal["low", "medium", "high"] = "medium"
    mode: Token | None = None


_LEGACY_QUALITY: dict[str, dict[str, Any]] = {
    "low": {"master": {"format": "wav", "bit_depth": 16}, "preview": {"bitrate_kbps": 128}},
    "medium": {"master": {"format": "wav", "bit_depth": 16}, "preview": {"bitrate_kbps": 192}},
    "high": {"master": {"format": "wav", "bit_depth": 24}, "preview": {"bitrate_kbps": 320}},
}


def legacy_to_spec(job: LegacyJob) -> dict[str, Any]:
    """Map a legacy job to a spec_version 1 payload (one generated-music layer, no loop)."""
    generate: dict[str, Any] = {"prompt": job.prompt, "seconds": job.duration}
    if job.mode is not None:
        generate["mode"] = job.mode
    return {
        "spec_version": SPEC_VERSION,
        "duration_s": job.duration,
        "layers": [{"type": "music", "generate": generate, "loop": False}],
        "output": _LEGACY_QUALITY[job.quality],
    }
