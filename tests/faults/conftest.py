"""Fixtures for the fault tests: the e2e fixtures (a moto S3 server per test, a fleet of real
worker processes) plus an ffmpeg wrapper the test steers (slow renders, a poison job) and fast
queue settings (LEASE_SECONDS=3, RESCUE_INTERVAL_SECONDS=1) so rescues take seconds."""

from __future__ import annotations

import shutil
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import fleet, pipeline_env, s3  # noqa: F401 - fixtures re-exported

FAULT_HANDLER = "tests.faults.handlers:render_job"
FAST = {"LEASE_SECONDS": 3, "RESCUE_INTERVAL_SECONDS": 1, "LOG_LEVEL": "info"}

# A tiny job: two tones, 2 s; its render takes a fraction of a second.
TONES = {
    "spec_version": 1,
    "duration_s": 2,
    "layers": [
        {"type": "binaural", "carrier_hz": 200, "beat_hz": 10},
        {"type": "solfeggio", "frequency_hz": 528, "gain_db": -6},
    ],
}

_WRAPPER = '''#!{python}
"""ffmpeg wrapper for fault tests: jobs' render passes (run in a render- temp dir) may be
slowed (file "slow": seconds) or kill the worker that started them (file "poison": argument
substrings, e.g. a tone frequency only the poison job's spec uses)."""
import os, signal, sys, time
ctl, real = {ctl!r}, {real!r}
args = " ".join(sys.argv[1:])  # the master pass writes into the job's job-<id>- temp dir
if "job-" in args or os.path.basename(os.getcwd()).startswith("render-"):  # a job's render pass
    def read(name):
        try:
            with open(os.path.join(ctl, name)) as f:
                return f.read().split()
        except OSError:
            return []
    if any(marker in args for marker in read("poison")):
        os.kill(os.getppid(), signal.SIGKILL)
        sys.exit(1)
    slow = read("slow")
    if slow:  # wait, but not past the worker's death (ffmpeg runs in a session of its own)
        parent, until = os.getppid(), time.monotonic() + float(slow[0])
        while time.monotonic() < until:
            if os.getppid() != parent:
                sys.exit(1)
            time.sleep(0.05)
os.execv(real, [real, *sys.argv[1:]])
'''


class FfmpegWrapper:
    """An FFMPEG_PATH whose behaviour the test changes while workers run."""

    def __init__(self, directory: Path) -> None:
        real = shutil.which("ffmpeg")
        assert real, "ffmpeg is not installed"
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self.path = directory / "ffmpeg"
        self.path.write_text(_WRAPPER.format(python=sys.executable, ctl=str(directory), real=real))
        self.path.chmod(self.path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    def slow(self, seconds: float) -> None:
        """Each job's ffmpeg run waits ``seconds`` before starting (0: not at all)."""
        (self.dir / "slow").write_text(str(seconds) if seconds else "")

    def poison(self, *markers: str) -> None:
        """An ffmpeg render whose arguments contain a marker (no spaces; e.g. "frequency=137.25")
        SIGKILLs the worker process that started it."""
        (self.dir / "poison").write_text(" ".join(markers))


@pytest.fixture
def ffmpeg(tmp_path: Path) -> FfmpegWrapper:
    return FfmpegWrapper(tmp_path / "ffmpeg-wrapper")


@pytest.fixture
def fast_retries(conn: Any) -> None:
    """Retryable failures come back after ~0.1-0.2 s instead of 10 s (restored by db_url's reset)."""
    conn.execute("update audio_queue.settings set retry_base_seconds = 0.2, retry_cap_seconds = 0.5")
