"""This process's scratch directory, and the removal of those dead processes left behind.

A render writes hundreds of MB of temporary files (303 MB for a 15-minute mix). A process killed
with SIGKILL never removes them, and on a machine that outlives the process (not a Heroku dyno,
whose disk is wiped at restart) they accumulate until the disk is full.

Each worker process keeps its jobs' files in ``<parent>/audio-worker-<pid>-<random>/`` and holds an
exclusive ``flock`` on ``<that>.lock`` for its whole life. The kernel drops the lock when the
process dies, however it dies, so at start a worker removes exactly the directories whose lock it
can take: their owners are provably dead. A lock that is held is a live worker's; its files are
never touched. ``<parent>`` is RENDER_TMP_DIR, or the system's temp directory.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from loguru import logger

PREFIX = "audio-worker-"
_owned: dict[Path, tuple[Path, int]] = {}  # parent -> (this process's dir, its lock's fd)


def _parent(parent: Path | None) -> Path:
    return (parent or Path(tempfile.gettempdir())).resolve()


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on ``path`` (created if missing), or None if held elsewhere."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def process_dir(parent: Path | None = None) -> Path:
    """This process's scratch directory under ``parent``: created and locked on first use."""
    root = _parent(parent)
    owned = _owned.get(root)
    if owned is not None and owned[0].is_dir():
        return owned[0]
    root.mkdir(parents=True, exist_ok=True)
    while True:
        path = root / f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        lock = path.with_suffix(".lock")
        fd = _try_lock(lock)
        # A cleaner may take and unlink a brand-new lock before our flock: then it is not ours.
        if fd is not None and lock.exists() and os.stat(lock).st_ino == os.fstat(fd).st_ino:
            break
        if fd is not None:
            os.close(fd)
    path.mkdir()
    _owned[root] = (path, fd)
    return path


def clean_dead(parent: Path | None = None) -> list[Path]:
    """Remove the scratch directories of dead worker processes under ``parent``; returns them."""
    root = _parent(parent)
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    mine = _owned.get(root, (None, -1))[0]
    for lock in sorted(root.glob(f"{PREFIX}*.lock")):
        path = lock.with_suffix("")
        if path == mine:
            continue
        try:
            fd = _try_lock(lock)
        except OSError:
            continue
        if fd is None:
            continue  # a live worker holds it
        try:
            if path.exists():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
            lock.unlink(missing_ok=True)  # last: a cleaner that dies mid-way leaves the lock to retry
        finally:
            os.close(fd)
    if removed:
        logger.info("removed the temp files of {} dead worker process(es): {}", len(removed), removed)
    return removed
