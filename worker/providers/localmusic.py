"""Offline placeholder music: a deterministic ambient pad rendered by ffmpeg.

NOT generative AI. The prompt's sha256 and the seed pick a root note, a chord and slow
modulation rates; the same (prompt, seed, seconds) always gives the same audio. It exists so music
jobs run end to end without a Stability key (development, CI, demos).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from worker.errors import PayloadError, PermanentError
from worker.providers.audio import run
from worker.providers.provider import Call, Fields, MusicProvider

if TYPE_CHECKING:
    from worker.providers.settings import ProviderSettings

NAME = "local"
MAX_SECONDS = 3600.0
_ROOTS = [110.0, 116.54, 123.47, 130.81, 138.59, 146.83, 155.56, 164.81, 174.61, 185.0, 196.0, 207.65]
_CHORDS = [
    (1, 1.25, 1.5),
    (1, 1.2, 1.5),
    (1, 1.5, 2.0),
    (1, 1.125, 1.5),
    (1, 1.3333, 1.6667),
    (1, 1.25, 1.875),
]


def pad_expression(prompt: str, seed: int | None) -> tuple[str, str]:
    """The (left, right) ``aevalsrc`` expressions for ``prompt`` and ``seed``."""
    digest = hashlib.sha256(f"{prompt}\x00{seed or 0}".encode()).digest()
    root = _ROOTS[digest[0] % len(_ROOTS)]
    chord = _CHORDS[digest[1] % len(_CHORDS)]
    channels = []
    for detune in (1.0, 1.0 + (digest[2] % 5 + 1) / 1000):  # left, right (slightly detuned)
        terms = []
        for i, ratio in enumerate(chord):
            f = root * ratio * detune
            lfo = 0.03 + (digest[3 + i] % 20) / 200  # 0.03-0.13 Hz swell
            phase = (digest[6 + i] % 628) / 100
            terms.append(f"0.12*sin(2*PI*{f:.3f}*t)*(0.6+0.4*sin(2*PI*{lfo:.3f}*t+{phase:.2f}))")
        terms.append(f"0.05*sin(2*PI*{root / 2:.3f}*t)")  # sub-octave drone
        channels.append("+".join(terms))
    return channels[0], channels[1]


def request_fields(settings: ProviderSettings, *, prompt: str, seconds: float, seed: int | None) -> Fields:
    if not prompt.strip():
        raise PayloadError("prompt", "must not be empty")
    if not 0 < seconds <= MAX_SECONDS:
        raise PayloadError("seconds", f"must be > 0 and <= {MAX_SECONDS:g}")
    return {"prompt": prompt, "seconds": seconds, "seed": seed}


def extension(fields: Fields) -> str:
    return "flac"


async def generate(call: Call) -> None:
    """Render the pad of ``call.fields`` (local: no client, no retries) to ``call.dest``."""
    await render_pad(call.fields["prompt"], call.fields["seconds"], call.fields["seed"], call.dest)


async def render_pad(prompt: str, seconds: float, seed: int | None, dest: Path) -> None:
    """Render ``seconds`` of pad for ``prompt``/``seed`` to ``dest`` (FLAC, 44.1 kHz stereo)."""
    left, right = pad_expression(prompt, seed)
    fade = min(3.0, seconds / 4)
    graph = (
        f"aevalsrc=exprs='{left}|{right}':s=44100:d={seconds:.3f}:c=stereo,"
        f"lowpass=f=2500,afade=t=in:d={fade:.3f},afade=t=out:st={seconds - fade:.3f}:d={fade:.3f}"
    )
    rc, _, err = await run(
        "ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", graph, "-c:a", "flac", str(dest)
    )
    if rc != 0:
        raise PermanentError(f"local music: ffmpeg failed: {err.decode(errors='replace')[:300]}")


PROVIDER = MusicProvider(
    name=NAME,
    docs="a deterministic ffmpeg ambient pad: **a placeholder, not generative AI**",
    default_rank=90,  # no key needed: the last resort
    cached=False,
    request_fields=request_fields,
    extension=extension,
    generate=generate,
)
