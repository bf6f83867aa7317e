"""Deliverables beside master and preview: waveform peaks checked against the master, tags and
chapters read back with mutagen and with ffprobe, a full-length MP3."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mutagen.flac import FLAC
from mutagen.id3 import ID3
from mutagen.mp3 import MP3
from mutagen.wave import WAVE

from tests.support.audio import decode, probe
from worker.errors import PayloadError
from worker.render import RenderSettings, parse_spec, render
from worker.render.deliverables import make_deliverables
from worker.render.peaks import write_peaks
from worker.render.tags import Cover, read_cover

pytestmark = pytest.mark.timeout(120)
TAGS = {"title": "Evening calm", "artist": "Quiet Studio", "album": "Sleep well", "comment": "Lie down.",
        "genre": "Meditation", "year": 2026}  # fmt: skip
MARKS = [
    {"start_s": 0, "title": "Arrive"},
    {"start_s": 2.5, "title": "Breathe, slowly"},
    {"start_s": 4, "title": "Rest"},
]


def run(spec: dict[str, Any], out: Path, inputs: dict[str, Path] | None = None, cover: Cover | None = None):
    parsed = parse_spec(spec)

    async def go():
        r = await render(parsed, inputs or {}, out, settings=RenderSettings(tmp_dir=out.parent / "work"))
        return await make_deliverables(parsed, r, cover=cover)

    return asyncio.run(asyncio.wait_for(go(), 90))


def ffprobe(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_chapters", "-show_entries", "format_tags:stream=codec_name,codec_type",
         "-of", "json", str(path)],
        check=True, capture_output=True, text=True, timeout=30,
    ).stdout  # fmt: skip
    data = json.loads(out)
    return {
        "tags": {k.lower(): v for k, v in data.get("format", {}).get("tags", {}).items()},
        "chapters": [
            (float(c["start_time"]), float(c["end_time"]), c["tags"]["title"]) for c in data["chapters"]
        ],
        "streams": [s["codec_name"] for s in data["streams"]],
    }


@pytest.fixture(scope="module")
def cover(tmp_path_factory: pytest.TempPathFactory) -> Cover:
    path = tmp_path_factory.mktemp("cover") / "cover.png"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=navy:s=32x32", "-frames:v", "1", str(path)],
                   check=True, timeout=30)  # fmt: skip
    return Cover(path.read_bytes(), "image/png")


def test_peaks_match_the_master_recomputed_with_numpy(tmp_path):
    spec = {
        "spec_version": 1, "duration_s": 3.3,
        "layers": [{"type": "isochronic", "tone_hz": 220, "rate_hz": 2}, {"type": "noise", "color": "brown", "gain_db": -12}],
        "output": {"master": {"format": "flac"}, "peaks": {"samples_per_pixel": 300, "bits": 16}},
    }  # fmt: skip
    result, extra = run(spec, tmp_path / "out")
    eight = asyncio.run(
        write_peaks(result.master, tmp_path / "8.json", sample_rate=44100, samples_per_pixel=300, bits=8)
    )
    x, sr = decode(result.master)
    mono = np.clip(np.round(x.astype(np.float64).mean(axis=1) * 32768), -32768, 32767).astype(np.int64)
    pixels = -(-len(mono) // 300)
    blocks = [mono[i * 300 : (i + 1) * 300] for i in range(pixels)]
    for bits, path in ((16, extra.peaks), (8, eight)):
        doc = json.loads(path.read_text())
        expected = np.array([[b.min(), b.max()] for b in blocks]) >> (16 - bits)
        assert {k: v for k, v in doc.items() if k != "data"} == {
            "version": 2, "channels": 1, "sample_rate": 44100, "samples_per_pixel": 300, "bits": bits, "length": pixels,
        }  # fmt: skip
        got = np.array(doc["data"]).reshape(-1, 2)
        assert np.abs(got - expected).max() <= (1 if bits == 8 else 2)  # float -> int16 rounding only
        assert got[:, 1].max() > 2 ** (bits - 3)  # the tone is there, not silence


def test_tags_and_chapters_in_the_flac_master_full_mp3_and_preview(tmp_path, cover):
    spec = {
        "spec_version": 1, "duration_s": 6,
        "layers": [{"type": "solfeggio", "frequency_hz": 432}],
        "output": {"master": {"format": "flac"}, "preview": {"seconds": 3}, "full": {"bitrate_kbps": 128}},
        "tags": {**TAGS, "cover": "covers/calm.png"}, "chapters": MARKS,
    }  # fmt: skip
    result, extra = run(spec, tmp_path / "out", cover=cover)
    assert extra.peaks is None and extra.full is not None
    full_marks = [(0.0, 2.5, "Arrive"), (2.5, 4.0, "Breathe, slowly"), (4.0, 6.0, "Rest")]

    flac = FLAC(result.master)
    assert (
        flac["TITLE"] == ["Evening calm"] and flac["ARTIST"] == ["Quiet Studio"] and flac["DATE"] == ["2026"]
    )
    assert flac["CHAPTER002"] == ["00:00:02.500"] and flac["CHAPTER002NAME"] == ["Breathe, slowly"]
    assert flac.pictures[0].data == cover.data and flac.pictures[0].mime == "image/png"
    seen = ffprobe(result.master)
    assert seen["chapters"] == full_marks and seen["tags"]["album"] == "Sleep well"

    full = MP3(extra.full)
    assert full.info.bitrate == pytest.approx(128_000, abs=10) and full.info.length == pytest.approx(
        6.0, abs=0.06
    )
    id3 = full.tags
    assert isinstance(id3, ID3) and id3.version[:2] == (2, 4)
    assert (
        str(id3["TIT2"]) == "Evening calm"
        and str(id3["TPE1"]) == "Quiet Studio"
        and str(id3["TALB"]) == "Sleep well"
    )
    assert (
        id3.getall("COMM")[0].text == ["Lie down."]
        and str(id3["TDRC"]) == "2026"
        and str(id3["TCON"]) == "Meditation"
    )
    assert id3.getall("APIC")[0].data == cover.data
    toc = id3.getall("CTOC")[0]
    chaps = {c.element_id: c for c in id3.getall("CHAP")}
    assert [(chaps[i].start_time, chaps[i].end_time, str(chaps[i].sub_frames["TIT2"])) for i in toc.child_element_ids] == [
        (0, 2500, "Arrive"), (2500, 4000, "Breathe, slowly"), (4000, 6000, "Rest")
    ]  # fmt: skip
    seen = ffprobe(extra.full)
    assert (
        seen["chapters"] == full_marks
        and seen["tags"]["title"] == "Evening calm"
        and "png" in seen["streams"]
    )

    # the 3 s preview: tagged, with the chapters that start within it
    assert ffprobe(result.preview)["chapters"] == [(0.0, 2.5, "Arrive"), (2.5, 3.0, "Breathe, slowly")]
    assert float(probe(result.preview)["format_duration"]) == pytest.approx(3.0, abs=0.06)


def test_speech_chapters_and_id3_in_a_wav_master(tmp_path, speech_wav):
    text = "Breathe in slowly. [pause 2s] Let your shoulders drop. You are calm."
    spec = {
        "spec_version": 1, "duration_s": 9,
        "layers": [{"type": "speech", "text": text, "start_s": 0.5},
                   {"type": "speech", "text": "Welcome back, gently open your eyes now and stretch a little.", "start_s": 5}],
        "tags": {"title": "Two voices"}, "chapters": "speech",
    }  # fmt: skip
    second = tmp_path / "second.wav"  # its own file: the same file twice is one ffmpeg input node
    second.write_bytes(speech_wav.read_bytes())
    result, extra = run(spec, tmp_path / "out", {"layers[0]": speech_wav, "layers[1]": second})
    assert [(c.start_s, c.end_s) for c in extra.chapters] == [(0.5, 5.0), (5.0, 9.0)]
    assert [c.title for c in extra.chapters] == ["Breathe in slowly. Let your shoulders drop. You\u2026",
                                                 "Welcome back, gently open your eyes now and\u2026"]  # fmt: skip
    wav = WAVE(result.master)
    assert str(wav.tags["TIT2"]) == "Two voices" and len(wav.tags.getall("CHAP")) == 2
    assert [c[:2] for c in ffprobe(result.master)["chapters"]] == [(0.5, 5.0), (5.0, 9.0)]
    x, sr = decode(result.master)
    assert x.shape == (9 * 44100, 2)  # the ID3 chunk is not audio


def test_a_cover_must_be_a_small_jpeg_or_png(tmp_path, cover):
    png, html, big = tmp_path / "a.png", tmp_path / "a.html", tmp_path / "big.jpg"
    png.write_bytes(cover.data)
    html.write_bytes(b"<html>not an image</html>")
    big.write_bytes(b"\xff\xd8\xff" + bytes(10 * 1024 * 1024))
    assert read_cover(png) == cover
    for path, rule in ((html, "must be a JPEG or PNG image"), (big, "must be at most 10 MiB")):
        with pytest.raises(PayloadError) as err:
            read_cover(path)
        assert (err.value.field, err.value.rule) == ("tags.cover", rule)
