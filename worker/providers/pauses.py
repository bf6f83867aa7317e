"""Pause markers in speech text: ``[pause 10s]``, ``[pause 1.5s]``, ``[pause 500ms]`` and SSML's
``<break time="10s"/>`` / ``<break time="500ms"/>``.

No speech API pauses for long (ElevenLabs' break tag stops at 3 s, OpenAI has none), so the worker
does it itself: the text is cut at each marker, every piece is spoken (and cached) on its own by
whichever provider, and exact digital silence is put between the pieces
(``worker.providers.join.join_with_pauses``). Pure text handling, no I/O: the spec validator uses
it too, so a bad marker fails the job before anything is paid for.
"""

from __future__ import annotations

import re

PAUSE_MIN_S = 0.1
PAUSE_MAX_S = 300.0
"""One marker asks for at most 5 minutes of silence (adjacent markers add up)."""

_CANDIDATE = re.compile(r"\[\s*pause\b[^\]]*\]?|<\s*break\b[^>]*>?", re.IGNORECASE)
_PAUSE = re.compile(r"\[\s*pause\s+(\d+(?:\.\d+)?)\s*(ms|s)\s*\]", re.IGNORECASE)
_BREAK = re.compile(r"""<\s*break\s+time\s*=\s*(["'])(\d+(?:\.\d+)?)\s*(ms|s)\1\s*/?\s*>""", re.IGNORECASE)
_FORMS = '[pause 10s], [pause 1.5s], [pause 500ms] or <break time="10s"/>'

Segment = str | float
"""A piece of text to speak, or a pause in seconds."""


class PauseMarkerError(ValueError):
    """A pause marker that is malformed or out of range (the message states the rule)."""


def _seconds(marker: str) -> float:
    m = _PAUSE.fullmatch(marker)
    value, unit = (m.group(1), m.group(2)) if m else (None, None)
    if m is None and (b := _BREAK.fullmatch(marker)) is not None:
        value, unit = b.group(2), b.group(3)
    if value is None or unit is None:
        raise PauseMarkerError(f"has a malformed pause marker {marker[:40]!r}: write {_FORMS}")
    seconds = float(value) / (1000.0 if unit.lower() == "ms" else 1.0)
    if not PAUSE_MIN_S <= seconds <= PAUSE_MAX_S:
        raise PauseMarkerError(
            f"has a pause marker {marker[:40]!r} out of range: pauses are {PAUSE_MIN_S:g} to {PAUSE_MAX_S:g} s"
        )
    return seconds


def split_pauses(text: str) -> list[Segment]:
    """``text`` as alternating spoken pieces (stripped, non-empty) and pauses (seconds; adjacent
    markers merged). Raises :class:`PauseMarkerError` for a bad marker or a text with no words."""
    out: list[Segment] = []
    pos = 0
    for m in _CANDIDATE.finditer(text):
        _add(out, text[pos : m.start()])
        seconds = _seconds(m.group(0))
        if out and isinstance(out[-1], float):
            out[-1] += seconds
        else:
            out.append(seconds)
        pos = m.end()
    _add(out, text[pos:])
    if not any(isinstance(s, str) for s in out):
        raise PauseMarkerError("must contain words to speak, not only pauses")
    return out


def _add(out: list[Segment], piece: str) -> None:
    piece = piece.strip()
    if piece:
        out.append(piece)


def has_pauses(text: str) -> bool:
    """Whether ``text`` holds anything that looks like a pause marker."""
    return _CANDIDATE.search(text) is not None
