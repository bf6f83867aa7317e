"""ffprobe an input file before rendering: it must be decodable audio with a duration."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

from worker.errors import PayloadError, RetryableError

PROBE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class AudioInfo:
    duration_s: float
    sample_rate: int
    channels: int
    codec: str


async def probe_audio(path: Path, key: str, ffprobe: str = "ffprobe") -> AudioInfo:
    """Describe the first audio stream of ``path``; :class:`PayloadError` naming ``key`` if the
    file is missing, not audio, or empty."""
    if not path.is_file():
        raise PayloadError(key, "input audio file is missing")
    proc = await asyncio.create_subprocess_exec(
        ffprobe, "-v", "error", "-select_streams", "a:0",
        "-show_entries", "stream=codec_name,sample_rate,channels,duration:format=duration",
        "-of", "json", "--", str(path),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), PROBE_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RetryableError(f"ffprobe timed out on {key}") from None
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    try:
        data = json.loads(out or b"{}")
        stream = data["streams"][0]
        duration = float(stream.get("duration") or data.get("format", {}).get("duration") or 0.0)
        info = AudioInfo(duration, int(stream.get("sample_rate") or 0), int(stream.get("channels") or 0),
                         str(stream.get("codec_name") or ""))  # fmt: skip
    except (ValueError, KeyError, IndexError, TypeError):
        raise PayloadError(key, "input file is not decodable audio") from None
    if proc.returncode != 0 or info.sample_rate <= 0 or info.channels <= 0:
        raise PayloadError(key, "input file is not decodable audio")
    if not duration > 0.01:
        raise PayloadError(key, "input audio is empty")
    return info
