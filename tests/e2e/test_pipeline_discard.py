"""A refused completion (the job was cancelled after its files were stored) leaves no files."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import all_keys, enqueue, job, pipeline_env
from tests.support.workers import wait_until

TONES = {
    "spec_version": 1,
    "duration_s": 3,
    "layers": [{"type": "binaural", "carrier_hz": 200, "beat_hz": 10}],
}


@pytest.mark.timeout(60)
def test_refused_completion_deletes_the_uploaded_files(conn, fleet, s3, tmp_path):
    jid = enqueue(conn, TONES)
    w = fleet.start(**pipeline_env(s3, tmp_path, JOB_HANDLER="tests.e2e.handlers:cancel_after_upload"))
    row = wait_until(
        lambda: (r := job(conn, jid))["status"] in ("cancelled", "completed", "failed") and r,
        timeout=30,
        what="the job to end",
    )
    assert row["status"] == "cancelled" and row["error_message"] == "cancelled while processing"
    assert w.log.count("stored ") == 2  # master and preview were uploaded ...
    # ... and deleted when the completion was refused (the claim loop cleans up right after)
    wait_until(lambda: all_keys(s3) == [], timeout=10, what="the uploads to be deleted")
    assert row["wav_url"] is None and row["mp3_url"] is None and row["result_url"] is None
