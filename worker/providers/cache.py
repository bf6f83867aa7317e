"""Content-addressed cache of paid provider output, in two levels.

Key: sha256 of a canonical JSON of everything that shapes the audio (provider, model, voice,
settings, text) -- never the API key.

Level 1, this dyno's disk (``AudioCache``): files at ``<dir>/<k[:2]>/<k>.<ext>``; writes go to a
temp file in the same directory and are renamed into place, so a concurrent reader sees a whole
file or none. A per-key ``flock`` lets concurrent workers wait for one another instead of paying
twice for the same audio. Hits are touched, and the oldest files are evicted above the size cap.

Level 2, Storage (``SharedCache``), because Heroku wipes a dyno's disk at every restart: objects at
``<bucket>/<prefix>/<k[:2]>/<k>.<ext>``, read before a provider call, written after a successful
one, shared by every dyno. Identical requests on different dynos pay once: the one that pays holds
a PostgreSQL advisory lock for the request (in an open transaction, so it ends with that
transaction or its connection -- a killed worker holds nothing) while the others poll Storage and
the lock, then read its object. ``fill`` is the one entry point: level 1, then level 2, then the
provider. The pipeline installs level 2 (``install_shared``) when storage is configured.

A level-2 write is no job's object, so the job's ``pending_objects`` sweep never sees it: a worker
killed while sending a large file (multipart, above STORAGE_MULTIPART_THRESHOLD_MB) leaves an
incomplete upload holding its parts' bytes, which Storage bills and no listing of objects shows.
``SharedCache.abort_abandoned_uploads`` aborts those begun more than ABANDONED_UPLOAD_AGE_S ago;
the fleet's rescue leader runs it (the pipeline's ``sweep_abandoned`` hook).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from loguru import logger

from worker.errors import JobError
from worker.queue.db.queries import q

if TYPE_CHECKING:
    from worker.storage import Storage

Produce = Callable[[Path], Awaitable[None]]

# An incomplete level-2 upload begun longer ago than this was left by a dead process (a killed
# worker's upload id died with it) and is aborted. Why a day is longer than any upload lasts: a
# level-2 object is one provider answer (speech, a music bed: megabytes, tens at most), sent by a
# live process in seconds; each S3 call gives up after STORAGE_UPLOAD_ATTEMPTS tries, each bounded by
# STORAGE_CONNECT_TIMEOUT_S + STORAGE_READ_TIMEOUT_S (defaults: about 5 minutes for a stalled part),
# so even a crawling upload of many parts ends within the hour; only the settings' extremes (10
# attempts of 300 + 3600 s) reach ~11 h, and for a single call. Erring is cheap on this side: an
# upload aborted while still alive fails its next part or Complete, ``put`` logs "could not share"
# and the job goes on (the audio is still on the dyno's disk; only the next dyno pays again). Erring
# the other way costs forever: nothing on the storage side aborts them (Supabase Storage has no
# AbortIncompleteMultipartUpload lifecycle rule; on S3 that rule is counted in whole days too).
ABANDONED_UPLOAD_AGE_S = 24 * 3600.0


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


class FleetLock:
    """One provider request at a time across the fleet: ``pg_try_advisory_xact_lock`` on a
    connection of its own (queries.sql ``provider_call_lock``). Taken, it lasts until ``release``
    or until the connection ends, so a worker that dies mid-call frees it at once; works through a
    transaction pooler too (the open transaction keeps its server connection)."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[psycopg.AsyncConnection[Any] | None]:
        """A connection for ``try_lock``; None (no lock: the caller pays) when the database is
        unreachable. Closing it releases whatever it holds."""
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._url,
                autocommit=False,
                prepare_threshold=None,
                connect_timeout=5,
                application_name="audio-worker provider-cache",
            )
        except psycopg.Error as exc:
            logger.warning("provider cache: no fleet lock, database unreachable: {}", type(exc).__name__)
            yield None
            return
        try:
            yield conn
        finally:
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    @staticmethod
    async def try_lock(conn: psycopg.AsyncConnection[Any], key: str) -> bool:
        """True: this connection's open transaction holds ``key``'s lock (``release`` ends it)."""
        row = await (await conn.execute(q("provider_call_lock"), {"key": key})).fetchone()
        if row and row[0]:
            return True
        await conn.rollback()
        return False

    @staticmethod
    async def release(conn: psycopg.AsyncConnection[Any]) -> None:
        with contextlib.suppress(psycopg.Error):
            await conn.rollback()


_OBJECT_NAME = re.compile(r"(?P<dir>[0-9a-f]{2})/(?P<key>[0-9a-f]{64})\.[A-Za-z0-9]+")  # after the prefix


class SharedCache:
    """Level 2: provider audio in Storage, shared by every dyno (see the module docstring).

    Storage failures never fail a job: a read that fails is a miss, a write that fails is logged.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        bucket: str,
        prefix: str,
        lock: FleetLock | None = None,
        wait_s: float = 900.0,
        poll_s: float = 0.5,
    ) -> None:
        self.storage, self.bucket, self.prefix = storage, bucket, prefix.strip("/")
        self.lock, self.wait_s, self.poll_s = lock, wait_s, poll_s

    def object_key(self, key: str, ext: str) -> str:
        name = f"{key[:2]}/{key}.{ext}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def is_object_key(self, object_key: str) -> bool:
        """Whether ``object_key`` has the shape of this cache's keys (``object_key``'s)."""
        name = object_key.removeprefix(f"{self.prefix}/") if self.prefix else object_key
        found = _OBJECT_NAME.fullmatch(name)
        under_prefix = not self.prefix or name != object_key
        return under_prefix and found is not None and found["key"][:2] == found["dir"]

    async def abort_abandoned_uploads(self, older_than_s: float = ABANDONED_UPLOAD_AGE_S) -> int:
        """Abort this cache's incomplete multipart uploads begun more than ``older_than_s`` ago
        (see ABANDONED_UPLOAD_AGE_S); returns how many. Only keys of the cache's shape under its
        prefix are touched; an upload whose start the server does not tell is left alone. Raises a
        JobError when storage cannot be listed."""
        listed = await asyncio.to_thread(
            self.storage.incomplete_uploads, self.bucket, f"{self.prefix}/" if self.prefix else ""
        )
        before = datetime.now(UTC) - timedelta(seconds=older_than_s)
        abandoned = [
            u
            for u in listed
            if self.is_object_key(u.key) and u.initiated is not None and u.initiated < before
        ]
        for upload in abandoned:
            await asyncio.to_thread(self.storage.abort_upload, self.bucket, upload)
        if abandoned:
            logger.info(
                "provider cache: aborted {} upload(s) abandoned mid-way (begun over {:g} h ago, by a "
                "worker that died): {}",
                len(abandoned),
                older_than_s / 3600,
                ", ".join(f"{self.bucket}/{u.key}" for u in abandoned),
            )
        return len(abandoned)

    async def get(self, key: str, ext: str, dest: Path) -> bool:
        """Download ``key`` to ``dest``; False when it is not there (or storage failed)."""
        from worker.storage import ObjectNotFound

        try:
            await asyncio.to_thread(self.storage.download_file, self.bucket, self.object_key(key, ext), dest)
        except ObjectNotFound:
            return False
        except JobError as exc:
            logger.warning("provider cache: shared level unreadable, treated as a miss: {}", exc)
            return False
        logger.debug("provider cache hit {} (shared)", key[:12])
        return True

    async def put(self, key: str, ext: str, src: Path) -> None:
        try:
            await asyncio.to_thread(
                self.storage.upload_file, src, bucket=self.bucket, key=self.object_key(key, ext)
            )
        except JobError as exc:
            logger.warning("provider cache: could not share {}: {}", key[:12], exc)

    async def obtain(self, key: str, ext: str, dest: Path, produce: Produce) -> None:
        """Fill ``dest`` from Storage, or by ``produce`` once across the fleet, then share it."""
        if await self.get(key, ext, dest):
            return
        if self.lock is None or self.wait_s <= 0:
            await produce(dest)
            await self.put(key, ext, dest)
            return
        deadline = time.monotonic() + self.wait_s
        async with self.lock.session() as conn:
            while conn is not None:
                try:
                    locked = await FleetLock.try_lock(conn, key)
                except psycopg.Error as exc:
                    logger.warning("provider cache: fleet lock failed: {}", type(exc).__name__)
                    break
                if locked:
                    try:
                        if await self.get(key, ext, dest):  # paid for while we were waiting
                            return
                        await produce(dest)
                        await self.put(key, ext, dest)
                        return
                    finally:
                        await FleetLock.release(conn)
                if time.monotonic() >= deadline:
                    logger.warning(
                        "provider cache: waited {:.0f}s for another worker's identical request; paying",
                        self.wait_s,
                    )
                    break
                await asyncio.sleep(self.poll_s)
                if await self.get(key, ext, dest):
                    return
        await produce(dest)
        await self.put(key, ext, dest)


_shared: SharedCache | None = None


def install_shared(shared: SharedCache | None) -> None:
    """Use ``shared`` as level 2 in this process (None: level 1 only)."""
    global _shared
    _shared = shared


def shared_level() -> SharedCache | None:
    return _shared


async def fill(cache: AudioCache, key: str, ext: str, dest: Path, produce: Produce) -> Path:
    """Fill ``dest`` with the audio for ``key``: from level 1, else level 2, else ``produce`` (once
    across this dyno's workers, and across the fleet when level 2 has its lock); store it in both."""
    if (hit := cache.get(key, ext)) is not None:
        logger.debug("provider cache hit {}", key[:12])
        return copy_atomic(hit, dest)
    async with cache.lock(key):
        if (hit := cache.get(key, ext)) is not None:
            logger.debug("provider cache hit {} (after waiting)", key[:12])
            return copy_atomic(hit, dest)
        shared = _shared if cache.enabled else None
        if shared is None:
            await produce(dest)
        else:
            await shared.obtain(key, ext, dest, produce)
        cache.put(key, ext, dest)
    return dest
