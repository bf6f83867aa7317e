"""Split long text into parts under a provider's character limit, at sentence boundaries.

Sentences are packed greedily; a sentence longer than the limit is cut at clause punctuation,
then at whitespace, and only as a last resort inside a word. Joining the parts with single spaces
gives back the text with its whitespace normalised.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.!?\u2026\u3002\uff01\uff1f;])[\"'\u201d\u2019)\]]*\s+|\n\s*\n")
_CLAUSE_END = re.compile(r"(?<=[,;:\u2013\u2014\u3001])\s+")


def _pieces(text: str, pattern: re.Pattern[str]) -> list[str]:
    out, start = [], 0
    for m in pattern.finditer(text):
        # keep closing quotes/brackets with the sentence they end
        end = m.start() + len(m.group(0).rstrip())
        out.append(text[start:end].strip())
        start = m.end()
    out.append(text[start:].strip())
    return [p for p in out if p]


def _cut(piece: str, limit: int) -> list[str]:
    """Cut one over-long piece at clause punctuation, then whitespace, then hard."""
    if len(piece) <= limit:
        return [piece]
    clauses = _pieces(piece, _CLAUSE_END)
    if len(clauses) > 1:
        return _pack(clauses, limit, _cut_words)
    return _cut_words(piece, limit)


def _cut_words(piece: str, limit: int) -> list[str]:
    if len(piece) <= limit:
        return [piece]
    words = piece.split()
    if len(words) > 1:
        return _pack(words, limit, lambda w, n: [w[i : i + n] for i in range(0, len(w), n)])
    return [piece[i : i + limit] for i in range(0, len(piece), limit)]


def _pack(pieces: list[str], limit: int, cut) -> list[str]:  # type: ignore[no-untyped-def]
    parts: list[str] = []
    current = ""
    for piece in pieces:
        for sub in cut(piece, limit) if len(piece) > limit else [piece]:
            if current and len(current) + 1 + len(sub) <= limit:
                current += " " + sub
            else:
                if current:
                    parts.append(current)
                current = sub
    if current:
        parts.append(current)
    return parts


def split_text(text: str, limit: int) -> list[str]:
    """Split ``text`` into non-empty parts of at most ``limit`` characters, at sentence boundaries."""
    if limit < 1:
        raise ValueError("limit must be >= 1")
    text = text.strip()
    if not text:
        return []
    if len(text) <= limit:
        return [text]
    sentences = [" ".join(s.split()) for s in _pieces(text, _SENTENCE_END)]
    return _pack(sentences, limit, _cut)
