"""The render spec (``spec_version: 1``): what a job asks the engine to render.

Every number is range-checked and finite; every string that could name something is a short
identifier. Nothing in a spec is ever copied into the filtergraph as text: the graph builder
formats the validated numbers itself.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    PrivateAttr,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

SPEC_VERSION = 1
SOLFEGGIO_HZ = (174, 285, 396, 417, 528, 639, 741, 852, 963)
NOISE_COLORS = ("white", "pink", "brown", "blue", "violet", "velvet")
LAYER_TYPES = ("speech", "music", "binaural", "isochronic", "solfeggio", "noise")


def _fmt(x: float) -> str:
    return f"{x:g}"


def rng(lo: float, hi: float, unit: str = "") -> Any:
    """A finite float in [lo, hi] whose error message states the rule."""
    suffix = f" {unit}" if unit else ""

    def check(v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be a finite number")
        if not lo <= v <= hi:
            raise ValueError(f"must be between {_fmt(lo)} and {_fmt(hi)}{suffix}")
        return v

    return Annotated[float, Field(strict=True, allow_inf_nan=True), AfterValidator(check)]


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

Seconds = rng(0, 86400, "s")
FadeSeconds = rng(0, 600, "s")
GainDb = rng(-60, 20, "dB")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _LayerBase(_Model):
    gain_db: GainDb = 0.0
    start_s: Seconds = 0.0
    duration_s: rng(0.1, 86400, "s") | None = None
    """Length of the layer from ``start_s``; default: to the end of the track (speech: its own length)."""
    fade_in_s: FadeSeconds = 0.0
    fade_out_s: FadeSeconds = 0.0
    _key: str = PrivateAttr(default="")

    @property
    def key(self) -> str:
        """Stable name of the layer in its spec, ``layers[<index>]``."""
        return self._key

    @property
    def needs_input(self) -> bool:
        """Whether the layer is rendered from an external audio file (speech, music)."""
        return False


class SpeechLayer(_LayerBase):
    """Text spoken by a provider's voice; the pipeline supplies the audio file."""

    type: Literal["speech"]
    text: Annotated[str, StringConstraints(min_length=1, max_length=20000)]
    provider: Token | None = None
    voice: Token | None = None
    model: Token | None = None
    speed: rng(0.5, 2.0) = 1.0

    @property
    def needs_input(self) -> bool:
        return True


class Duck(_Model):
    """Sidechain compression of a music layer under the speech layers."""

    threshold_db: rng(-60, 0, "dB") = -35.0
    ratio: rng(1, 20) = 8.0
    attack_ms: rng(1, 2000, "ms") = 20.0
    release_ms: rng(10, 9000, "ms") = 400.0


class GeneratedMusic(_Model):
    provider: Token | None = None
    prompt: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    seconds: rng(1, 600, "s") = 30.0
    seed: Annotated[int, Field(strict=True, ge=0, le=2**32 - 1)] | None = None
    mode: Token | None = None


class MusicLayer(_LayerBase):
    """A music bed from storage, a URL, or a generator; looped to fill its span."""

    type: Literal["music"]
    object: ObjectPath | None = None
    url: HttpUrl | None = None
    generate: GeneratedMusic | None = None
    loop: bool = True
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

    @property
    def needs_input(self) -> bool:
        return True


Carrier = rng(20, 20000, "Hz")
Beat = rng(0.5, 40, "Hz")


class RampPoint(_Model):
    t_s: Seconds
    beat_hz: Beat


class BinauralLayer(_LayerBase):
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


class IsochronicLayer(_LayerBase):
    """A tone switched on and off ``rate_hz`` times a second (smooth pulses; no headphones needed)."""

    type: Literal["isochronic"]
    tone_hz: Carrier
    rate_hz: Beat


class SolfeggioLayer(_LayerBase):
    """A pure tone: one of the Solfeggio frequencies (174 ... 963 Hz) or any audible value."""

    type: Literal["solfeggio"]
    frequency_hz: Carrier = 528.0


class NoiseLayer(_LayerBase):
    """A stereo (decorrelated) noise bed."""

    type: Literal["noise"]
    color: Literal["white", "pink", "brown", "blue", "violet", "velvet"] = "pink"
    seed: Annotated[int, Field(strict=True, ge=0, le=2**32 - 2)] | None = None


Layer = Annotated[
    SpeechLayer | MusicLayer | BinauralLayer | IsochronicLayer | SolfeggioLayer | NoiseLayer,
    Field(discriminator="type"),
]
InputLayer = SpeechLayer | MusicLayer


class Loudness(_Model):
    target_lufs: rng(-36, -6, "LUFS") = -16.0
    true_peak_dbtp: rng(-9, 0, "dBTP") = -1.5


class MasterOutput(_Model):
    format: Literal["wav", "flac"] = "wav"
    bit_depth: Literal[16, 24] = 24


class PreviewOutput(_Model):
    """MP3 preview: CBR ``bitrate_kbps`` (default 192) or VBR ``vbr_quality`` (0 best .. 9)."""

    bitrate_kbps: Literal[32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320] | None = None
    vbr_quality: Annotated[int, Field(strict=True, ge=0, le=9)] | None = None
    seconds: rng(1, 86400, "s") | None = None
    """Only the first N seconds (with a short fade-out); default: the whole track."""

    @model_validator(mode="after")
    def _one_mode(self) -> PreviewOutput:
        if self.bitrate_kbps is not None and self.vbr_quality is not None:
            raise ValueError("vbr_quality: give bitrate_kbps or vbr_quality, not both")
        return self


class Outputs(_Model):
    master: MasterOutput = MasterOutput()
    preview: PreviewOutput = PreviewOutput()


class RenderSpec(_Model):
    """A validated render job. Build it with :func:`worker.render.parse_spec`."""

    spec_version: Literal[1]
    duration_s: rng(1, 10_000_000, "s") | Literal["fit"]
    """Track length, or ``"fit"``: the end of the last speech layer plus ``tail_s``."""
    tail_s: rng(0, 600, "s") = 10.0
    sample_rate: Literal[44100, 48000] = 44100
    fade_in_s: FadeSeconds = 0.0
    fade_out_s: FadeSeconds = 0.0
    loudness: Loudness = Loudness()
    layers: Annotated[list[Layer], Field(min_length=1)]
    output: Outputs = Outputs()

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
        for i, layer in enumerate(self.layers):
            layer._key = f"layers[{i}]"
        return self

    def input_layers(self) -> list[InputLayer]:
        """The layers that need an external audio file (speech, music), in spec order."""
        return [x for x in self.layers if x.needs_input]  # type: ignore[misc]

    def speech_layers(self) -> list[SpeechLayer]:
        return [x for x in self.layers if isinstance(x, SpeechLayer)]

    def layer(self, key: str) -> _LayerBase:
        """The layer named ``layers[i]``."""
        for x in self.layers:
            if x.key == key:
                return x
        raise KeyError(key)


class LegacyJob(_Model):
    """The old music app's job: one generated-music clip."""

    prompt: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    duration: rng(1, 60, "s")
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
