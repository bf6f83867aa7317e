"""ffmpeg/ffprobe helpers run as async subprocesses: probe a file, prove it is audio."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

from worker.errors import check_exit


class InvalidAudio(Exception):
    """The bytes a provider returned are not decodable audio."""


@dataclass(frozen=True)
class AudioInfo:
    duration: float
    sample_rate: int
    channels: int
    codec: str


async def run(*cmd: str, timeout: float = 600.0, cwd: Path | None = None) -> tuple[int, bytes, bytes]:
    """Run a command, return (returncode, stdout, stderr); kill it on timeout or cancellation.
    Raises :class:`ChildKilled` when a signal ended it (not the command's own failure)."""
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    check_exit(Path(cmd[0]).name, proc.returncode)
    return proc.returncode or 0, out, err


async def probe(path: Path) -> AudioInfo:
    """Describe the first audio stream of ``path``; raise InvalidAudio when there is none."""
    rc, out, err = await run(
        "ffprobe",
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_streams",
        "-show_format",
        str(path),
        timeout=60,
    )
    if rc != 0:
        raise InvalidAudio(f"ffprobe cannot read it: {err.decode(errors='replace').strip()[:200]}")
    data = json.loads(out or b"{}")
    streams = [s for s in data.get("streams", []) if s.get("codec_type") == "audio"]
    if not streams:
        raise InvalidAudio("no audio stream in it")
    s = streams[0]
    duration = float(s.get("duration") or data.get("format", {}).get("duration") or 0.0)
    if duration <= 0:
        raise InvalidAudio("its audio is empty")
    return AudioInfo(
        duration, int(s.get("sample_rate") or 0), int(s.get("channels") or 0), s.get("codec_name", "")
    )


async def validate_audio(path: Path) -> AudioInfo:
    """Prove ``path`` is complete, decodable audio: probe it, then decode it all, failing on any error."""
    info = await probe(path)
    rc, _, err = await run("ffmpeg", "-nostdin", "-v", "error", "-xerror", "-i", str(path), "-f", "null", "-")
    if rc != 0:
        raise InvalidAudio(f"it does not decode: {err.decode(errors='replace').strip()[:200]}")
    return info
