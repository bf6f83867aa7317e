"""Tags and chapters in the rendered files, written with mutagen after the render.

- MP3 (preview, full-length) and WAV (an ``id3 `` chunk): ID3v2.4 -- TIT2 title, TPE1 artist,
  TALB album, COMM comment, TCON genre, TDRC year, APIC front cover, and one CHAP frame per chapter
  listed in order by a top-level CTOC (ID3v2 Chapter Frame Addendum), each titled by a TIT2.
- FLAC: Vorbis comments (TITLE, ARTIST, ALBUM, COMMENT, GENRE, DATE), the cover as a PICTURE block,
  chapters as ``CHAPTER001=HH:MM:SS.mmm`` / ``CHAPTER001NAME=...`` (the convention ffmpeg and
  most players read).

Chapters come from the spec (``chapters``): explicit marks, or ``"speech"``: one at the start of each
speech layer, titled by its first words.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mutagen.flac import FLAC, Picture
from mutagen.id3 import APIC, CHAP, COMM, CTOC, ID3, TALB, TCON, TDRC, TIT2, TPE1, CTOCFlags, Frame
from mutagen.mp3 import MP3
from mutagen.wave import WAVE

from worker.errors import PayloadError
from worker.providers.pauses import split_pauses
from worker.render.spec import RenderSpec, Tags

COVER_MAX_BYTES = 10 * 1024 * 1024
TITLE_WORDS, TITLE_CHARS = 8, 60
_NO_OFFSET = 0xFFFFFFFF  # CHAP: byte offsets unknown, use the times


@dataclass(frozen=True)
class ChapterMark:
    title: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Cover:
    data: bytes
    mime: str


def chapter_marks(spec: RenderSpec, duration_s: float) -> list[ChapterMark]:
    """The spec's chapters within a track of ``duration_s``; each lasts until the next one."""
    if spec.chapters is None:
        return []
    if spec.chapters == "speech":
        starts: dict[float, str] = {}
        for layer in sorted(spec.speech_layers(), key=lambda x: x.start_s):
            starts.setdefault(layer.start_s, _first_words(layer.text))
        marks = sorted(starts.items())
    else:
        marks = [(c.start_s, c.title) for c in spec.chapters]
    marks = [(t, title) for t, title in marks if t < duration_s]
    ends = [t for t, _ in marks[1:]] + [duration_s]
    return [ChapterMark(title, t, end) for (t, title), end in zip(marks, ends)]


def _first_words(text: str) -> str:
    words = " ".join(p for p in split_pauses(text) if isinstance(p, str)).split()
    title = " ".join(words[:TITLE_WORDS])
    if len(words) > TITLE_WORDS or len(title) > TITLE_CHARS:
        title = title[: TITLE_CHARS - 1].rstrip() + "\u2026"
    return title


def read_cover(path: Path) -> Cover:
    """The cover image at ``path``: JPEG or PNG, at most 10 MiB (PayloadError on ``tags.cover``)."""
    if path.stat().st_size > COVER_MAX_BYTES:
        raise PayloadError("tags.cover", f"must be at most {COVER_MAX_BYTES // (1024 * 1024)} MiB")
    data = path.read_bytes()
    if data.startswith(b"\xff\xd8\xff"):
        return Cover(data, "image/jpeg")
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return Cover(data, "image/png")
    raise PayloadError("tags.cover", "must be a JPEG or PNG image")


def write_tags(path: Path, tags: Tags | None, chapters: list[ChapterMark], cover: Cover | None) -> None:
    """Write ``tags``, ``chapters`` and ``cover`` into ``path`` (.mp3, .wav or .flac), in place."""
    ext = path.suffix.lower()
    if ext == ".flac":
        _write_flac(path, tags, chapters, cover)
        return
    audio = MP3(path) if ext == ".mp3" else WAVE(path)
    if audio.tags is None:
        audio.add_tags()
    assert isinstance(audio.tags, ID3)
    for frame in _id3_frames(tags, chapters, cover):
        audio.tags.add(frame)
    audio.save(v2_version=4)


def _id3_frames(tags: Tags | None, chapters: list[ChapterMark], cover: Cover | None) -> list[Frame]:
    frames: list[Frame] = []
    if tags is not None:
        text = {TIT2: tags.title, TPE1: tags.artist, TALB: tags.album, TCON: tags.genre}
        frames += [cls(encoding=3, text=[v]) for cls, v in text.items() if v]
        if tags.year is not None:
            frames.append(TDRC(encoding=3, text=[str(tags.year)]))
        if tags.comment:
            frames.append(COMM(encoding=3, lang="eng", desc="", text=[tags.comment]))
    if cover is not None:
        frames.append(APIC(encoding=3, mime=cover.mime, type=3, desc="Cover", data=cover.data))
    # mutagen writes frames of one kind shortest first (then by element id), and ffmpeg lists
    # chapters in file order: pad the ids so every CHAP has the same size and they stay in time order.
    sizes = [len(ch.title.encode()) for ch in chapters]
    ids = [f"ch{i:03d}" + "-" * (max(sizes) - n) for i, n in enumerate(sizes)]
    for cid, ch in zip(ids, chapters):
        frames.append(
            CHAP(
                element_id=cid,
                start_time=round(ch.start_s * 1000),
                end_time=round(ch.end_s * 1000),
                start_offset=_NO_OFFSET,
                end_offset=_NO_OFFSET,
                sub_frames=[TIT2(encoding=3, text=[ch.title])],
            )
        )
    if chapters:
        frames.append(
            CTOC(
                element_id="toc",
                flags=CTOCFlags.TOP_LEVEL | CTOCFlags.ORDERED,
                child_element_ids=ids,
                sub_frames=[TIT2(encoding=3, text=["Chapters"])],
            )
        )
    return frames


def _write_flac(path: Path, tags: Tags | None, chapters: list[ChapterMark], cover: Cover | None) -> None:
    audio = FLAC(path)
    if tags is not None:
        fields = {
            "TITLE": tags.title,
            "ARTIST": tags.artist,
            "ALBUM": tags.album,
            "COMMENT": tags.comment,
            "GENRE": tags.genre,
            "DATE": str(tags.year) if tags.year is not None else None,
        }
        for key, value in fields.items():
            if value:
                audio[key] = value
    for n, ch in enumerate(chapters, start=1):
        audio[f"CHAPTER{n:03d}"] = _clock(ch.start_s)
        audio[f"CHAPTER{n:03d}NAME"] = ch.title
    if cover is not None:
        pic = Picture()
        pic.type, pic.mime, pic.desc, pic.data = 3, cover.mime, "Cover", cover.data
        audio.add_picture(pic)
    audio.save()


def _clock(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"
