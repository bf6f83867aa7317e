"""The ffmpeg process: stall and cancellation kill it and clean up; failures are summarised."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path

import pytest

from worker.errors import PermanentError, RetryableError
from worker.render import RenderSettings, parse_spec, render
from worker.render.ffmpeg_process import run_ffmpeg

RAMP = {"type": "binaural", "carrier_hz": 200,
        "schedule": [{"t_s": 0, "beat_hz": 10}, {"t_s": 300, "beat_hz": 6}, {"t_s": 600, "beat_hz": 4}]}  # fmt: skip


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in state  # killed, waiting to be reaped by init


def test_stalled_ffmpeg_and_its_children_are_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    fake = script(tmp_path / "ffmpeg", f'sleep 60 &\necho $! > "{pidfile}"\nwait\n')
    settings = RenderSettings(ffmpeg_path=str(fake), stall_timeout_s=1, tmp_dir=tmp_path / "work")
    spec = parse_spec({"spec_version": 1, "duration_s": 5, "layers": [{"type": "noise"}]}, settings)
    t = time.monotonic()
    with pytest.raises(RetryableError, match=r"ffmpeg stalled \(mix\): no progress for 1 s"):
        asyncio.run(render(spec, {}, tmp_path / "out", settings=settings))
    assert time.monotonic() - t < 5
    assert gone(int(pidfile.read_text()))
    assert list((tmp_path / "work").iterdir()) == []


def test_cancellation_kills_ffmpeg_and_removes_temp_files(tmp_path: Path) -> None:
    pidfile = tmp_path / "ffmpeg.pid"
    wrapper = script(tmp_path / "ffmpeg", f'echo $$ > "{pidfile}"\nexec ffmpeg "$@"\n')
    settings = RenderSettings(ffmpeg_path=str(wrapper), tmp_dir=tmp_path / "work")
    spec = parse_spec({"spec_version": 1, "duration_s": 600, "layers": [RAMP]}, settings)

    async def go() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(
            render(spec, {}, tmp_path / "out", settings=settings, on_progress=lambda p: started.set())
        )
        await asyncio.wait_for(started.wait(), 20)
        assert any((tmp_path / "work").iterdir())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert gone(int(pidfile.read_text()))
    assert list((tmp_path / "work").iterdir()) == []
    assert not (tmp_path / "out" / "master.wav").exists()


def test_ffmpeg_failure_is_summarised_briefly() -> None:
    cmd = [
        "ffmpeg",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=1",
        "-af",
        "nosuchfilter",
        "-f",
        "null",
        "-",
    ]
    with pytest.raises(PermanentError) as exc:
        asyncio.run(run_ffmpeg(cmd, duration_s=1, label="mix"))
    msg = str(exc.value)
    assert msg.startswith("ffmpeg failed (mix, exit ") and "nosuchfilter" in msg
    assert len(msg) < 600 and "\n" not in msg


def test_progress_reaches_100_monotonically(tmp_path: Path) -> None:
    seen: list[float] = []
    cmd = [
        "ffmpeg",
        "-f",
        "lavfi",
        "-i",
        "anoisesrc=duration=300:sample_rate=44100",
        "-af",
        "aecho",
        "-f",
        "null",
        "-",
    ]
    asyncio.run(run_ffmpeg(cmd, duration_s=300, on_progress=seen.append))
    assert seen == sorted(seen) and seen[-1] == pytest.approx(100, abs=0.5)
    assert os.cpu_count()
