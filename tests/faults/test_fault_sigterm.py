"""SIGTERM mid-render (a Heroku restart): the job is released within the grace without spending an
attempt, a second SIGTERM does no harm, and another worker completes it."""

from __future__ import annotations

import signal
import time

import pytest

from tests.e2e.conftest import all_keys, enqueue, job, pipeline_env
from tests.faults.conftest import FAST, TONES
from tests.support.workers import wait_until

pytestmark = pytest.mark.timeout(90)

GRACE_S = 2
ABANDON_WAIT_S = 5  # worker.queue.claim_loop.ABANDON_WAIT_S


def test_sigterm_twice_mid_render_releases_the_job_unspent_and_another_worker_completes_it(
    conn, fleet, s3, tmp_path, ffmpeg
):
    ffmpeg.slow(30)  # the render outlasts the grace
    jid = enqueue(conn, TONES)
    env = pipeline_env(s3, tmp_path, FFMPEG_PATH=ffmpeg.path, SHUTDOWN_GRACE_SECONDS=GRACE_S, **FAST)
    a = fleet.start(**env)
    wait_until(lambda: job(conn, jid)["stage"] == "render", timeout=30, what="the render to start")

    started = time.monotonic()
    a.signal(signal.SIGTERM)
    time.sleep(0.3)
    a.signal(signal.SIGTERM)  # Heroku may send it twice
    assert a.wait(GRACE_S + ABANDON_WAIT_S + 5) == 0, a.log[-3000:]
    assert time.monotonic() - started < GRACE_S + ABANDON_WAIT_S + 3
    assert "already stopping" in a.log and "releasing 1 unfinished job" in a.log

    row = job(conn, jid)
    assert row["status"] == "pending" and row["attempts"] == 0 and row["rescue_count"] == 0
    assert row["locked_by"] is None and row["pending_objects"] == []
    assert all_keys(s3) == []

    ffmpeg.slow(0)
    b = fleet.start(**env)
    row = wait_until(
        lambda: (r := job(conn, jid))["status"] in ("completed", "failed") and r,
        timeout=40,
        what="the job to end",
    )
    assert row["status"] == "completed", f"{row['error_message']}\n{b.log[-3000:]}"
    assert row["attempts"] == 1 and row["rescue_count"] == 0  # the released attempt was not spent
    assert sorted(all_keys(s3)) == sorted(
        f"{o['bucket']}/{o['key']}" for o in (row["result"]["master"], row["result"]["preview"])
    )
