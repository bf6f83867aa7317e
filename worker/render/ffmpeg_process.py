"""Run one ffmpeg process: progress parsed from ``-progress``, stderr kept as a bounded tail,
killed (with its process group) on stall, timeout or cancellation.

A failure's message names its cause, not the last lines ffmpeg printed: a full disk or memory
exhaustion is retryable and says so (ffmpeg prints its loudness summary after the cause), and a
signal (the OOM killer's SIGKILL, or Heroku's SIGTERM to every process of the dyno, which ffmpeg
answers with exit 255) is :class:`ChildKilled`, which the claim loop releases during shutdown.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path

from loguru import logger

from worker.errors import ChildKilled, PermanentError, RetryableError

STDERR_TAIL_LINES = 200
MAX_LINE_CHARS = 400
_NOISE = re.compile(
    r"^(size=|video:|\s*$|Press \[q\]|\[Parsed_ebur128_\d+ @ [^\]]+\] (t:|Summary:)|Stream mapping|  Stream #|Input #|Output #|  Duration:|  Metadata:|    [a-z_]+\s*:)"
)
# ebur128's summary, printed at exit whatever happened (its figures are read by worker.render.loudness).
_EBUR128_SUMMARY = re.compile(
    r"^\s*(Integrated loudness|Loudness range|True peak|Sample peak|I|LRA|LRA low|LRA high|Threshold|Peak)\s*:"
)
_ADDR = re.compile(r" @ 0x[0-9a-f]+")
# Generic trailers ffmpeg prints after the real cause.
_TRAILER = re.compile(
    r"^(Conversion failed!|Error reinitializing filters!|Failed to inject frame into filter network|"
    r"Error while (processing|filtering|decoding)|Error initializing complex filters|Exiting normally|"
    r"Error opening output files|Error while opening encoder)"
)
# Causes retrying can cure, with the words the job's message leads with.
_RESOURCES = {
    "No space left on device": "disk full",
    "Disk quota exceeded": "disk full",
    "Cannot allocate memory": "out of memory",
    "Resource temporarily unavailable": "out of resources",
}
_RECEIVED_SIGNAL = re.compile(r"received signal (\d+)")
FFMPEG_SIGNAL_EXIT = 255  # ffmpeg's exit code after it caught SIGTERM/SIGINT/SIGHUP itself


class FfmpegRun:
    """Outcome of a finished ffmpeg run: the stderr tail (oldest first)."""

    def __init__(self, stderr_tail: list[str]) -> None:
        self.stderr_tail = stderr_tail


def summarize_stderr(lines: Iterable[str], redact: Iterable[str] = (), n: int = 3) -> str:
    """The last ``n`` meaningful stderr lines, addresses and ``redact`` strings removed."""
    keep = [_ADDR.sub("", x).strip() for x in lines if not _NOISE.match(x) and not _EBUR128_SUMMARY.match(x)]
    causes = [x for x in keep if not _TRAILER.match(x)]
    text = " | ".join((causes or keep)[-n:]) or "no error output"
    for r in redact:
        if r:
            text = text.replace(r, "<tmp>")
    return text[:500]


def failure(label: str, returncode: int, tail: list[str], redact: Iterable[str] = ()) -> Exception:
    """The error for an ffmpeg run that exited with ``returncode`` (asyncio's: negative = signal)."""
    if returncode < 0:
        return ChildKilled(f"ffmpeg ({label})", -returncode)
    received = [int(m.group(1)) for x in tail if (m := _RECEIVED_SIGNAL.search(x))]
    if returncode == FFMPEG_SIGNAL_EXIT and received:
        return ChildKilled(f"ffmpeg ({label})", received[-1])
    for line in tail:
        cause = next((words for s, words in _RESOURCES.items() if s in line), None)
        if cause is not None:
            detail = summarize_stderr([line], redact, n=1)
            return RetryableError(f"{cause} while rendering (ffmpeg {label}, exit {returncode}): {detail}")
    summary = summarize_stderr(tail, redact)
    return PermanentError(f"ffmpeg failed ({label}, exit {returncode}): {summary}")


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            proc.kill()
        except ProcessLookupError:
            pass


async def _lines(stream: asyncio.StreamReader, sink: Callable[[str], None]) -> None:
    """Feed ``sink`` each line (``\\n`` or ``\\r`` ended) of ``stream`` without unbounded buffering."""
    buf = b""
    while chunk := await stream.read(65536):
        buf += chunk.replace(b"\r", b"\n")
        *lines, buf = buf.split(b"\n")
        buf = buf[-MAX_LINE_CHARS:]
        for line in lines:
            sink(line[:MAX_LINE_CHARS].decode("utf-8", "replace"))
    if buf:
        sink(buf.decode("utf-8", "replace"))


async def run_ffmpeg(
    cmd: list[str],
    *,
    duration_s: float,
    on_progress: Callable[[float], None] | None = None,
    stall_timeout_s: float = 60.0,
    label: str = "render",
    redact: Iterable[str] = (),
    cwd: Path | None = None,
) -> FfmpegRun:
    """Run ``cmd`` (a full ffmpeg command line; ``-progress pipe:1 -nostats`` are inserted after
    the executable). ``on_progress`` gets 0..100 from ``out_time_us`` / ``duration_s``.

    Raises :class:`RetryableError` on stall or resource exhaustion, :class:`ChildKilled` when a
    signal ended it, :class:`PermanentError` on any other failure (see :func:`failure`).
    """
    full = [cmd[0], "-nostdin", "-hide_banner", "-nostats", "-progress", "pipe:1", *cmd[1:]]
    tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    last_us = -1
    last_advance = time.monotonic()
    warned = False

    def on_stdout(line: str) -> None:
        nonlocal last_us, last_advance, warned
        if not line.startswith("out_time_us="):
            return
        try:
            us = int(line.split("=", 1)[1])
        except ValueError:
            return
        if us > last_us:
            last_us, last_advance = us, time.monotonic()
            if on_progress is not None:
                try:
                    on_progress(max(0.0, min(100.0, us / 1e6 / duration_s * 100.0)))
                except Exception as exc:  # a failing reporter must not break the render
                    if not warned:
                        logger.warning("progress callback failed: {}", exc)
                        warned = True

    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *full,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        cwd=cwd,
    )
    stalled = False

    async def watchdog() -> None:
        nonlocal stalled
        while True:
            await asyncio.sleep(min(1.0, stall_timeout_s / 4))
            if time.monotonic() - last_advance > stall_timeout_s:
                stalled = True
                _kill_group(proc)
                return

    assert proc.stdout is not None and proc.stderr is not None
    dog = asyncio.create_task(watchdog())
    try:
        await asyncio.gather(_lines(proc.stdout, on_stdout), _lines(proc.stderr, tail.append))
        rc = await proc.wait()
    except BaseException:
        _kill_group(proc)
        await asyncio.shield(proc.wait())
        raise
    finally:
        dog.cancel()
    logger.debug("ffmpeg {} pass: exit {} after {:.2f} s", label, rc, time.monotonic() - t0)
    if stalled:
        summary = summarize_stderr(tail, redact)
        raise RetryableError(f"ffmpeg stalled ({label}): no progress for {stall_timeout_s:g} s; {summary}")
    if rc != 0:
        raise failure(label, rc, list(tail), redact)
    return FfmpegRun(list(tail))
