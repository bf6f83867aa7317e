"""Local speech with espeak-ng: no key, no network, robotic but real speech.

Text goes through a temp file (``-f``) so nothing in it is ever parsed as an option. ``speed``
scales espeak's default 175 words per minute (clamped to espeak's 80-450 range).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from worker.errors import PayloadError, PermanentError
from worker.providers.audio import run
from worker.providers.provider import Fields, SpeechCall, SpeechProvider

if TYPE_CHECKING:
    from worker.providers.settings import ProviderSettings

NAME = "espeak"
MAX_CHARS = 20_000  # espeak has no limit; smaller parts keep each subprocess short
BASE_WPM = 175
_VOICE = re.compile(r"^[A-Za-z0-9_+\-/]{1,64}$")


_known_voices: dict[str, frozenset[str]] = {}


async def known_voices(binary: str = "espeak-ng") -> frozenset[str]:
    """Lower-cased language codes, voice names and file names espeak-ng lists (cached per binary)."""
    if binary not in _known_voices:
        try:
            rc, out, err = await run(binary, "--voices", timeout=30)
        except FileNotFoundError:
            raise PermanentError(f"espeak: {binary} is not installed") from None
        if rc != 0:
            raise PermanentError(f"espeak: {binary} --voices failed: {err.decode(errors='replace')[:200]}")
        names: set[str] = set()
        for line in out.decode(errors="replace").splitlines()[1:]:
            cols = line.split()
            if len(cols) >= 5:
                names.update(
                    {cols[1].lower(), cols[3].lower(), cols[4].lower(), cols[4].rsplit("/", 1)[-1].lower()}
                )
        _known_voices[binary] = frozenset(names)
    return _known_voices[binary]


def words_per_minute(speed: float) -> int:
    if not 0.25 <= speed <= 4.0:
        raise PayloadError("speed", "must be between 0.25 and 4.0")
    return max(80, min(450, round(BASE_WPM * speed)))


def request_fields(
    settings: ProviderSettings, *, voice: str | None, model: str | None, speed: float
) -> Fields:
    """espeak-ng has voices but no models; ``model`` is ignored."""
    words_per_minute(speed)
    return {"voice": voice or settings.espeak_voice, "speed": speed}


def max_chars(fields: Fields) -> int:
    return MAX_CHARS


def extension(fields: Fields) -> str:
    return "wav"


async def synthesize(call: SpeechCall) -> None:
    """Write a WAV of ``call.text`` spoken by espeak-ng (local: no client, no retries)."""
    voice, speed = call.fields["voice"], call.fields["speed"]
    await speak(call.text, voice=voice, speed=speed, dest=call.dest, binary=call.settings.espeak_binary)


async def speak(text: str, *, voice: str, speed: float, dest: Path, binary: str = "espeak-ng") -> None:
    """Write a WAV of ``text`` spoken by espeak-ng ``voice`` to ``dest``."""
    if not _VOICE.match(voice):
        raise PayloadError("voice", "espeak voice names are letters, digits, '-', '_', '/' or '+'")
    wpm = words_per_minute(speed)
    if voice.split("+", 1)[0].lower() not in await known_voices(binary):
        raise PayloadError("voice", f"espeak-ng has no voice {voice!r} (see espeak-ng --voices)")
    text_file = dest.with_suffix(".txt")
    text_file.write_text(text, encoding="utf-8")
    try:
        # Relative names in the file's directory: espeak-ng cuts file names at 200 characters.
        rc, _, err = await run(
            binary, "-v", voice, "-s", str(wpm), "-w", dest.name, "-f", text_file.name, cwd=dest.parent
        )
    except FileNotFoundError:
        raise PermanentError(f"espeak: {binary} is not installed") from None
    finally:
        text_file.unlink(missing_ok=True)
    message = err.decode(errors="replace").strip()
    if rc != 0 or not dest.exists():
        if "voice does not exist" in message:
            raise PayloadError("voice", f"espeak-ng has no voice {voice!r}")
        raise PermanentError(f"espeak: espeak-ng failed (exit {rc}): {message[:300]}")


PROVIDER = SpeechProvider(
    name=NAME,
    docs="local espeak-ng, no network",
    default_rank=90,  # no key needed: the last resort
    cached=False,
    request_fields=request_fields,
    max_chars=max_chars,
    extension=extension,
    synthesize=synthesize,
)
