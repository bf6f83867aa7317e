"""A poison job (its ffmpeg run kills the worker every time) ends failed after the rescue limit
instead of cycling forever, and the other jobs still complete."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import all_keys, enqueue, job, pipeline_env
from tests.faults.conftest import FAST, TONES
from tests.support.workers import wait_until

pytestmark = pytest.mark.timeout(90)


def test_a_job_whose_render_kills_the_worker_ends_failed_after_the_rescue_limit(
    conn, fleet, s3, tmp_path, ffmpeg
):
    conn.execute("update audio_queue.settings set max_rescues = 2")
    # the poison: a tone frequency only its spec uses makes its ffmpeg run kill the worker
    poison = enqueue(
        conn,
        {**TONES, "layers": [{"type": "binaural", "carrier_hz": 137.25, "beat_hz": 10}]},
        max_attempts=10,
        priority=10,
    )
    good = enqueue(conn, TONES)
    ffmpeg.poison("frequency=137.25")
    env = pipeline_env(s3, tmp_path, FFMPEG_PATH=ffmpeg.path, MAX_CONCURRENT_JOBS=1, **FAST)

    w, deaths = fleet.start(**env), 0
    deadline = time.monotonic() + 70
    while job(conn, poison)["status"] not in ("failed", "completed", "cancelled"):
        if w.proc.poll() is not None:  # the dyno manager restarts a crashed worker
            deaths += 1
            w = fleet.start(**env)
        assert time.monotonic() < deadline, f"poison job still cycling after {deaths} deaths"
        time.sleep(0.1)

    row = job(conn, poison)
    assert row["status"] == "failed", row
    assert "gave up after the rescue limit of 2" in row["error_message"]
    assert row["rescue_count"] == 3 and row["attempts"] == 3
    assert deaths == 3 or (deaths == 2 and w.proc.poll() is not None)  # the last death may be unseen yet
    assert row["pending_objects"] == []  # it died before uploading anything

    if w.proc.poll() is not None:
        w = fleet.start(**env)
    g = wait_until(
        lambda: (r := job(conn, good))["status"] in ("completed", "failed") and r,
        timeout=30,
        what="the good job to end",
    )
    assert g["status"] == "completed", g["error_message"]
    assert sorted(all_keys(s3)) == sorted(
        f"{o['bucket']}/{o['key']}" for o in (g["result"]["master"], g["result"]["preview"])
    )
