"""A full render disk: a retryable failure whose message says the disk is full, not the loudness
summary ffmpeg prints after the cause (issue 10, found by trying to break it, point 3)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from worker.errors import ChildKilled, PermanentError, RetryableError
from worker.render import RenderSettings, parse_spec, render
from worker.render.ffmpeg_process import failure, run_ffmpeg

SINE = ["-f", "lavfi", "-i", "sine=frequency=440:duration=5", "-af", "ebur128"]


def test_ffmpeg_writing_to_a_full_device_is_retryable_and_says_disk_full() -> None:
    with pytest.raises(RetryableError) as err:
        asyncio.run(run_ffmpeg(["ffmpeg", *SINE, "-f", "wav", "-y", "/dev/full"], duration_s=5, label="mix"))
    msg = str(err.value)
    assert msg.startswith("disk full while rendering (ffmpeg mix, exit 1): "), msg
    assert "No space left on device" in msg and "LUFS" not in msg and "LRA" not in msg


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs: a render's temp files fill it at once. Unmounted at teardown."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], capture_output=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {out.stderr.decode(errors='replace').strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_render_on_a_full_disk_is_retryable_and_says_disk_full(tiny_disk: Path) -> None:
    settings = RenderSettings(tmp_dir=tiny_disk / "work", stall_timeout_s=20)
    spec = parse_spec({"spec_version": 1, "duration_s": 60, "layers": [{"type": "noise"}]}, settings)
    with pytest.raises(
        RetryableError, match=r"^disk full while rendering \(ffmpeg mix, exit \d+\): .*No space"
    ):
        asyncio.run(render(spec, {}, tiny_disk / "out", settings=settings))


def test_signal_deaths_name_the_signal() -> None:
    tail = [
        "[Parsed_ebur128_0 @ 0x5] Summary:",
        "    I:   -21.8 LUFS",
        "Exiting normally, received signal 15.",
    ]
    killed = failure("mix", 255, tail)
    assert isinstance(killed, ChildKilled) and str(killed) == "ffmpeg (mix) was killed by SIGTERM"
    assert str(failure("mix", -9, [])) == "ffmpeg (mix) was killed by SIGKILL"
    other = failure("mix", 1, ["Unknown filter 'x'", "  LRA high:  -20.4 LUFS", "    Peak:  -4.6 dBFS"])
    assert (
        isinstance(other, PermanentError) and str(other) == "ffmpeg failed (mix, exit 1): Unknown filter 'x'"
    )
