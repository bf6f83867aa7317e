"""The S3 server down for a while mid-run: uploads are retried; every job either completes with
both files or fails cleanly, and nothing is left in storage that no completed job refers to."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import all_keys, enqueue, job, pipeline_env
from tests.faults.conftest import FAST, TONES
from tests.support.workers import wait_until

pytestmark = pytest.mark.timeout(90)


def test_storage_outage_mid_run_completes_with_both_files_or_fails_leaving_nothing(
    conn, fleet, s3, tmp_path, ffmpeg, fast_retries
):
    ids = [enqueue(conn, TONES) for _ in range(6)]
    ffmpeg.slow(0.2)
    env = pipeline_env(
        s3, tmp_path, FFMPEG_PATH=ffmpeg.path, MAX_CONCURRENT_JOBS=2, STORAGE_UPLOAD_ATTEMPTS=2, **FAST
    )
    workers = [fleet.start(**env), fleet.start(**env)]
    wait_until(
        lambda: any(job(conn, j)["status"] == "completed" for j in ids), timeout=40, what="a first completion"
    )
    s3.disconnect()
    time.sleep(3)
    s3.reconnect()

    rows = wait_until(
        lambda: (
            all(
                (r := [job(conn, j) for j in ids])[i]["status"] in ("completed", "failed")
                for i in range(len(ids))
            )
            and r
        ),
        timeout=60,
        what="every job to end",
    )
    # objects of attempts that failed while storage was down are deleted once it is back
    wait_until(
        lambda: all(job(conn, j)["pending_objects"] == [] for j in ids),
        timeout=20,
        what="no job listing objects",
    )

    completed = [r for r in rows if r["status"] == "completed"]
    for r in rows:
        if r["status"] == "failed":
            assert r["wav_url"] is None and r["mp3_url"] is None and r["result"] is None
            assert "storage" in r["error_message"]
    expected = sorted(
        f"{o['bucket']}/{o['key']}"
        for r in completed
        for o in (r["result"]["master"], r["result"]["preview"])
    )
    assert sorted(all_keys(s3)) == expected  # every completed job has both files; nothing else is left
    assert completed, "no job completed"
    assert any("storage unreachable" in (r["last_error"] or "") for r in rows) or any(
        "storage:" in w.log for w in workers
    ), "the outage hit no upload"
