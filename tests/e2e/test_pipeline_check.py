"""Operators' view of readiness: ``python -m worker check`` lists problems or says "ready", and
``python -m worker run`` refuses to start without a usable ffmpeg."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import PIPELINE, storage_env
from tests.support.s3 import SECRET_ACCESS_KEY
from worker.render.toolcheck import check_tools

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(60)


def worker(command: str, env: dict[str, str], timeout: float = 45) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", command],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", **env},
        timeout=timeout,
    )


def test_check_says_ready_when_everything_is_up(db_url, s3):
    out = worker("check", {"DATABASE_URL": db_url, **storage_env(s3)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == "ready"


def test_check_lists_each_problem_and_exits_1(s3):
    password = "pw-Sup3r-s3cret-db"
    env = {
        **storage_env(s3),
        "DATABASE_URL": f"postgresql://worker:{password}@127.0.0.1:1/app",
        "STORAGE_S3_ACCESS_KEY_ID": "",
        "STORAGE_S3_SECRET_ACCESS_KEY": "",
        "MAX_RETRIES": "11",
    }
    out = worker("check", env)
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert "config: MAX_RETRIES: must be less than or equal to 10 (got '11')" in lines
    assert any(x.startswith("database: cannot connect to worker@127.0.0.1:1/app") for x in lines), lines
    assert any(
        x.startswith("storage: storage credentials missing: set STORAGE_S3_ACCESS_KEY_ID") for x in lines
    )
    assert "ready" not in lines
    assert password not in out.stdout + out.stderr


def test_check_names_an_unmigrated_database_and_a_missing_bucket(pg, s3):
    env = {**storage_env(s3, STORAGE_PREVIEW_BUCKET="no-such-previews"), "DATABASE_URL": pg.create()}
    out = worker("check", env)
    assert out.returncode == 1
    assert (
        "database: the database has no audio_queue schema yet: run `python -m worker migrate`" in out.stdout
    )
    assert "storage bucket 'no-such-previews' does not exist" in out.stdout
    assert SECRET_ACCESS_KEY not in out.stdout + out.stderr


def test_run_refuses_to_start_without_ffmpeg(db_url, s3):
    env = {
        "DATABASE_URL": db_url,
        "JOB_HANDLER": PIPELINE,
        "FFMPEG_PATH": "/nonexistent/ffmpeg",
        **storage_env(s3),
    }
    out = worker("run", env)
    assert out.returncode != 0
    assert "ffmpeg not found: FFMPEG_PATH='/nonexistent/ffmpeg'" in out.stderr


def test_ffmpeg_without_an_encoder_the_engine_uses_is_named(tmp_path):
    # an ffmpeg whose -encoders listing lacks libmp3lame (a common minimal build)
    fake = tmp_path / "ffmpeg"
    fake.write_text(
        '#!/bin/sh\nif [ "$2" = "-encoders" ]; then ffmpeg "$@" | grep -v libmp3lame; '
        'else exec ffmpeg "$@"; fi\n'
    )
    fake.chmod(0o755)
    problems = check_tools(str(fake), "ffprobe")
    assert len(problems) == 1 and "lacks encoders the render engine uses: libmp3lame" in problems[0]
    assert check_tools() == []
