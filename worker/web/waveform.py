"""The job page's waveform, for every completed job with a preview.

Where it comes from, first that works: peaks the result carries inline (a custom handler's
numbers); the job's peaks file (``result.peaks``, audiowaveform JSON, there when the spec asked for
``output.peaks``), read from storage; the preview MP3 itself, read from storage and measured with
the pipeline's own ffmpeg peaks pass (:mod:`worker.render.peaks`). The audio never enters Python.

What was drawn is kept in a small in-process cache keyed by object (keys are never reused: each
holds its job's id and a timestamp), so the next view of the page does not redo it; a failure
(storage down, object gone, not audio) is remembered for a short while, and the page shows a note
instead of a waveform, never an error. A page waits a few seconds at most: a long preview keeps
being measured in the background and appears on a later view.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from loguru import logger

from worker.errors import JobError
from worker.queue.retry import first_line
from worker.render.peaks import compute_peaks
from worker.render.probe import probe_audio
from worker.storage.client import Storage
from worker.storage.quirks import ObjectNotFound
from worker.web.charts import WAVEFORM_BARS, bars_of_minmax, bars_of_peaks_file, peaks_of, waveform_path

CACHE_SIZE = 128  # waveforms kept (about 20 KB each)
FAILURE_TTL_S = 30.0  # a failed waveform is not tried again for this long: pages stay fast in an outage
WAIT_S = 8.0  # longest a page waits for its waveform
MAX_RUNNING = 8  # waveforms being made at once (two measured at a time); more: "busy, reload"
MAX_PEAKS_FILE_BYTES = 16 * 1024 * 1024
MAX_PREVIEW_BYTES = 256 * 1024 * 1024

NOTE_WAITING = "The waveform is still being measured: reload the page in a moment."
NOTE_BUSY = "No waveform yet: the dashboard is measuring other previews; reload the page in a moment."
NOTE_STORAGE = "No waveform: storage could not be read; reload the page in a minute."
NOTE_NO_STORAGE = "No waveform: storage is not configured for the dashboard."

Key = tuple[str, str]
_SUFFIX = re.compile(r"\.[a-z0-9]{1,5}")


@dataclass(frozen=True)
class Waveform:
    """What the job page draws: an SVG path, or a short note saying why there is none (both None:
    the job has nothing to draw, e.g. it did not complete)."""

    path: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class Source:
    kind: Literal["peaks", "preview"]
    bucket: str
    key: str
    size: int | None


class Unavailable(Exception):
    """This source cannot be drawn; ``note`` says why, for the page."""

    def __init__(self, note: str) -> None:
        super().__init__(note)
        self.note = note


def sources_of(result: dict[str, Any] | None) -> list[Source]:
    """The stored objects a waveform can come from, best first: the peaks file, the preview."""
    out = []
    kinds: tuple[Literal["peaks", "preview"], ...] = ("peaks", "preview")
    for kind in kinds:
        ref = result.get(kind) if isinstance(result, dict) else None
        if not isinstance(ref, dict):
            continue
        bucket, key, size = ref.get("bucket"), ref.get("key"), ref.get("size")
        if isinstance(bucket, str) and bucket and isinstance(key, str) and key:
            out.append(Source(kind, bucket, key, size if isinstance(size, int) and size > 0 else None))
    return out


class Waveforms:
    """Waveforms of job results, read or measured once and cached (see the module's doc)."""

    def __init__(
        self,
        storage: Storage | None,
        *,
        ffmpeg: str = "ffmpeg",
        ffprobe: str = "ffprobe",
        wait_s: float = WAIT_S,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self.storage = storage
        self.ffmpeg, self.ffprobe = ffmpeg, ffprobe
        self.wait_s = wait_s
        self.cache_size = cache_size
        self._drawn: OrderedDict[Key, str] = OrderedDict()
        self._failed: OrderedDict[Key, tuple[float, str]] = OrderedDict()
        self._running: dict[Key, asyncio.Task[str]] = {}
        self._slots = asyncio.Semaphore(2)

    async def of(self, result: dict[str, Any] | None) -> Waveform:
        """The waveform of a job's result; never raises."""
        try:
            return await self._of(result)
        except Exception as exc:  # a picture never breaks the page
            logger.warning("dashboard: waveform failed: {}", first_line(exc))
            return Waveform(note="No waveform: it could not be drawn.")

    async def _of(self, result: dict[str, Any] | None) -> Waveform:
        inline = peaks_of(result)
        if inline:
            return Waveform(path=waveform_path(inline))
        sources = sources_of(result)
        if not sources:
            return Waveform()
        if self.storage is None:
            return Waveform(note=NOTE_NO_STORAGE)
        key = (sources[0].bucket, sources[0].key)
        if (path := self._drawn.get(key)) is not None:
            self._drawn.move_to_end(key)
            return Waveform(path=path)
        failed = self._failed.get(key)
        if failed is not None and time.monotonic() - failed[0] < FAILURE_TTL_S:
            return Waveform(note=failed[1])
        task = self._running.get(key)
        if task is None:
            if len(self._running) >= MAX_RUNNING:
                return Waveform(note=NOTE_BUSY)
            task = asyncio.ensure_future(self._draw(key, sources, self.storage))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved: no warning
            self._running[key] = task
        try:
            # Shielded: a page that stops waiting (or a client that leaves) does not stop the work.
            return Waveform(path=await asyncio.wait_for(asyncio.shield(task), self.wait_s))
        except TimeoutError:
            return Waveform(note=NOTE_WAITING)
        except Unavailable as exc:
            return Waveform(note=exc.note)

    async def _draw(self, key: Key, sources: list[Source], storage: Storage) -> str:
        """The first source that can be drawn; its result (or the last note) is remembered."""
        try:
            note = NOTE_STORAGE
            for source in sources:
                try:
                    async with self._slots:
                        heights = await self._heights(source, storage)
                except Unavailable as exc:
                    note = exc.note
                    continue
                if not heights:
                    note = f"No waveform: the {source.kind} file holds no audio."
                    continue
                path = waveform_path(heights)
                self._remember(self._drawn, key, path)
                return path
            self._remember(self._failed, key, (time.monotonic(), note))
            raise Unavailable(note)
        finally:
            self._running.pop(key, None)

    def _remember(self, cache: OrderedDict[Key, Any], key: Key, value: Any) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > self.cache_size:
            cache.popitem(last=False)

    async def _heights(self, source: Source, storage: Storage) -> list[float]:
        what = "peaks file" if source.kind == "peaks" else "preview"
        limit = MAX_PEAKS_FILE_BYTES if source.kind == "peaks" else MAX_PREVIEW_BYTES
        if source.size is not None and source.size > limit:
            raise Unavailable(
                f"No waveform: the {what} ({source.size / 1e6:.0f} MB) is too large to draw here."
            )
        with tempfile.TemporaryDirectory(prefix="audio-dashboard-") as tmp:
            suffix = Path(source.key).suffix.lower()
            path = Path(tmp) / (source.kind + (suffix if _SUFFIX.fullmatch(suffix) else ""))
            try:
                await asyncio.to_thread(storage.download_file, source.bucket, source.key, path)
            except ObjectNotFound:
                raise Unavailable(f"No waveform: the {what} is no longer in storage.") from None
            except Exception as exc:
                logger.warning(
                    "dashboard: could not read {}/{} for a waveform: {}",
                    source.bucket,
                    source.key,
                    first_line(exc),
                )
                raise Unavailable(NOTE_STORAGE) from None
            if source.kind == "peaks":
                return await asyncio.to_thread(_read_peaks_file, path)
            return await self._measure(path)

    async def _measure(self, path: Path) -> list[float]:
        """The preview's peaks by the pipeline's ffmpeg pass, at one pixel per bar."""
        try:
            info = await probe_audio(path, "preview", self.ffprobe)
            spp = max(32, math.ceil(info.duration_s * info.sample_rate / WAVEFORM_BARS))
            data = await compute_peaks(path, samples_per_pixel=spp, bits=16, ffmpeg=self.ffmpeg)
        except JobError as exc:
            logger.warning("dashboard: could not measure the preview {}: {}", path.name, first_line(exc))
            raise Unavailable("No waveform: the preview could not be decoded.") from None
        return bars_of_minmax(data)


def _read_peaks_file(path: Path) -> list[float]:
    if path.stat().st_size > MAX_PEAKS_FILE_BYTES:
        raise Unavailable("No waveform: the peaks file is too large to draw here.")
    try:
        return bars_of_peaks_file(json.loads(path.read_bytes()))
    except ValueError:  # JSONDecodeError and UnicodeDecodeError included
        raise Unavailable("No waveform: the peaks file is not audiowaveform JSON.") from None
