"""Content-addressed cache of paid provider output.

Key: sha256 of a canonical JSON of everything that shapes the audio (provider, model, voice,
settings, text) -- never the API key. Files live at ``<dir>/<k[:2]>/<k>.<ext>``; writes go to a
temp file in the same directory and are renamed into place, so a concurrent reader sees a whole
file or none. A per-key ``flock`` lets concurrent workers wait for one another instead of paying
twice for the same audio. Hits are touched, and the oldest files are evicted above the size cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from loguru import logger


def cache_key(**parts: Any) -> str:
    """sha256 hex of the canonical JSON of ``parts`` (sorted keys, no whitespace)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def copy_atomic(src: Path, dest: Path) -> Path:
    """Copy ``src`` to ``dest`` through a temp file and a rename."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


class AudioCache:
    """A directory of audio files named by content key. ``max_bytes`` 0 means no cap."""

    def __init__(self, root: Path, max_bytes: int = 0, enabled: bool = True) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.enabled = enabled

    def path(self, key: str, ext: str) -> Path:
        return self.root / key[:2] / f"{key}.{ext}"

    def get(self, key: str, ext: str) -> Path | None:
        """The cached file for ``key``, or None."""
        if not self.enabled:
            return None
        path = self.path(key, ext)
        try:
            os.utime(path)  # LRU: a hit is a use
        except OSError:  # missing, or an unusable cache directory
            return None
        return path

    def put(self, key: str, ext: str, src: Path) -> Path:
        """Store a copy of ``src`` under ``key`` atomically; return the cached path."""
        if not self.enabled:
            return src
        dest = self.path(key, ext)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            copy_atomic(src, dest)
            self.evict()
        except OSError as exc:  # a full or read-only cache must not fail the job
            logger.warning("provider cache: cannot store {}: {}", key[:12], exc)
            return src
        return dest

    @contextlib.asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        """Hold an exclusive per-key lock (across processes) while the audio is fetched."""
        if not self.enabled:
            yield
            return
        lock_path = self.root / key[:2] / f"{key}.lock"
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        except OSError as exc:
            logger.warning("provider cache: cannot lock {}: {}", key[:12], exc)
            yield
            return
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(0.05)
            yield
        finally:
            os.close(fd)  # releases the lock

    def evict(self) -> None:
        """Delete least recently used audio files until the cache is under ``max_bytes``."""
        if self.max_bytes <= 0:
            return
        files: list[tuple[float, int, Path]] = []
        total = 0
        for path in self.root.glob("??/*"):
            if path.suffix in (".lock", ".tmp") or path.name.startswith("."):
                continue
            with contextlib.suppress(FileNotFoundError):
                st = path.stat()
                files.append((st.st_mtime, st.st_size, path))
                total += st.st_size
        if total <= self.max_bytes:
            return
        files.sort()
        for _, size, path in files:
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
            logger.debug("provider cache: evicted {}", path.name)
