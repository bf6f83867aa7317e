"""Is this ffmpeg able to run our renders? Checked once at start (``run``) and by ``check``.

The render engine (``worker/render/graph.py``) and the providers (join, local music, validation)
use the filters, encoders and muxers listed here; a build without one of them would fail every
job, so the worker refuses to start instead and names what is missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess

# Filters used by worker/render/{graph,peaks}.py and worker/providers/{join,localmusic}.py.
FILTERS = (
    "sine", "aevalsrc", "anoisesrc", "anullsrc", "amovie", "amerge", "amix", "asplit", "apad", "aformat",
    "afade", "atrim", "adelay", "volume", "tremolo", "sidechaincompress", "alimiter", "ebur128",
    "acrossfade", "aresample", "concat", "lowpass", "pan", "asetnsamples", "astats", "ametadata", "asetpts",
    "asettb", "biquad", "anull",
)  # fmt: skip
ENCODERS = ("pcm_s16le", "pcm_s24le", "pcm_f32le", "flac", "libmp3lame")
MUXERS = ("wav", "w64", "flac", "mp3", "null", "s16le")
TIMEOUT_S = 20.0

_NAME = re.compile(r"^\s*\S+\s+([A-Za-z0-9_,]+)\s", re.MULTILINE)


def _listing(binary: str, flag: str) -> tuple[set[str], str | None]:
    """Names in ``ffmpeg -hide_banner <flag>`` (second column), or an error message."""
    try:
        out = subprocess.run(
            [binary, "-hide_banner", flag],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return set(), f"{binary} {flag} failed: {type(exc).__name__}"
    if out.returncode != 0:
        return set(), f"{binary} {flag} exited with status {out.returncode}"
    names: set[str] = set()
    for m in _NAME.finditer(out.stdout):
        names.update(m.group(1).split(","))  # muxers list aliases as "matroska,webm"
    return names, None


def _runs(binary: str) -> str | None:
    """None when ``binary -version`` works, else why not."""
    if shutil.which(binary) is None:
        return "not found"
    try:
        out = subprocess.run(
            [binary, "-version"],
            capture_output=True,
            timeout=TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"does not run ({type(exc).__name__})"
    return None if out.returncode == 0 else f"-version exited with status {out.returncode}"


def check_tools(ffmpeg: str = "ffmpeg", ffprobe: str = "ffprobe") -> list[str]:
    """Problems with ffmpeg/ffprobe (missing, not runnable, lacking a filter/encoder/muxer); [] when fine.

    ``ffmpeg``/``ffprobe`` are FFMPEG_PATH/FFPROBE_PATH. The providers call ``ffmpeg`` and
    ``ffprobe`` from PATH, so those are checked too when the settings point elsewhere.
    """
    problems: list[str] = []
    binaries = [("FFMPEG_PATH", ffmpeg, "ffmpeg"), ("FFPROBE_PATH", ffprobe, "ffprobe")]
    binaries += [
        ("PATH", name, name) for name, set_to in (("ffmpeg", ffmpeg), ("ffprobe", ffprobe)) if set_to != name
    ]
    for var, binary, tool in binaries:
        why = _runs(binary)
        if why is not None:
            where = f"{var}={binary!r}" if var != "PATH" else f"{binary!r} on PATH (used by the providers)"
            problems.append(
                f"{tool} {why}: {where}; install ffmpeg (apt-get install ffmpeg, or the "
                "Heroku ffmpeg buildpack) or fix the path"
            )
    if problems:
        return problems
    for flag, wanted, kind in (
        ("-filters", FILTERS, "filters"),
        ("-encoders", ENCODERS, "encoders"),
        ("-muxers", MUXERS, "muxers"),
    ):
        names, error = _listing(ffmpeg, flag)
        if error:
            problems.append(f"FFMPEG_PATH: {error}")
            continue
        missing = [n for n in wanted if n not in names]
        if missing:
            problems.append(
                f"ffmpeg ({ffmpeg}) lacks {kind} the render engine uses: {', '.join(missing)}; "
                "install a full ffmpeg build (with libmp3lame)"
            )
    return problems
