"""Failures land where a user expects them: bad specs and permanent provider errors fail at once,
transient provider and storage errors go back to the queue and then complete, and a failed job
leaves nothing in storage."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import all_keys, enqueue, job, pipeline_env, run_now
from tests.fakes import FakeOpenAI, FakeStability
from tests.fakes.server import Reply
from tests.support.workers import wait_until

pytestmark = pytest.mark.timeout(60)

TONES = {
    "spec_version": 1,
    "duration_s": 3,
    "layers": [
        {"type": "binaural", "carrier_hz": 200, "beat_hz": 10},
        {"type": "solfeggio", "frequency_hz": 528, "gain_db": -6},
    ],
}


def finished(conn, jid, *statuses: str, timeout: float = 30) -> dict:
    """Wait until the job is in one of ``statuses`` (pending counts only after an attempt)."""
    return wait_until(
        lambda: (
            (r := job(conn, jid))["status"] in statuses
            and (r["status"] != "pending" or r["attempts"] >= 1)
            and r
        ),
        timeout=timeout,
        what=f"job {jid} to be {'/'.join(statuses)}",
    )


def retried(conn, jid, timeout: float = 30) -> dict:
    """The job went back to pending after a failed attempt (its backoff still running)."""
    return wait_until(
        lambda: (r := job(conn, jid))["status"] == "pending" and r["attempts"] >= 1 and r,
        timeout=timeout,
        what=f"job {jid} to be retried",
    )


def assert_completed_with_both_files(row: dict, s3) -> None:
    assert row["status"] == "completed", row["error_message"]
    master, preview = row["result"]["master"], row["result"]["preview"]
    assert row["wav_url"] == master["url"] and row["mp3_url"] == row["result_url"] == preview["url"]
    assert sorted(all_keys(s3)) == sorted(
        [f"{master['bucket']}/{master['key']}", f"{preview['bucket']}/{preview['key']}"]
    )


def test_spec_error_fails_at_once_naming_the_field(conn, fleet, s3, tmp_path):
    jid = enqueue(
        conn,
        {
            "spec_version": 1,
            "duration_s": 5,
            "layers": [{"type": "solfeggio"}, {"type": "binaural", "carrier_hz": 200, "beat_hz": 100}],
        },
    )
    fleet.start(**pipeline_env(s3, tmp_path))
    row = finished(conn, jid, "failed", "completed")
    assert row["status"] == "failed" and row["attempts"] == 1
    assert "layers[1].beat_hz" in row["error_message"] and "between 0.5 and 40" in row["error_message"]
    assert all_keys(s3) == []


def test_permanent_provider_error_fails_at_once_with_the_providers_message(conn, fleet, s3, tmp_path):
    wrong_key = "placeholder-wrong-openai-key"
    with FakeOpenAI() as openai:
        jid = enqueue(
            conn,
            {
                "spec_version": 1,
                "duration_s": "fit",
                "tail_s": 1,
                "layers": [{"type": "speech", "text": "Hello there.", "provider": "openai"}],
            },
        )
        w = fleet.start(**pipeline_env(s3, tmp_path, openai, OPENAI_API_KEY=wrong_key))
        row = finished(conn, jid, "failed", "completed", "pending")
    assert row["status"] == "failed" and row["attempts"] == 1
    assert "Incorrect API key provided" in row["error_message"] and "layers[0]" in row["error_message"]
    assert wrong_key not in str(row) and wrong_key not in w.log
    assert all_keys(s3) == []


def test_transient_provider_error_is_retried_later_then_completes(conn, fleet, s3, tmp_path):
    with FakeStability() as stability:
        stability.always(Reply(503, {"name": "service_unavailable", "errors": ["try again later"]}))
        jid = enqueue(
            conn,
            {
                **TONES,
                "layers": [
                    *TONES["layers"],
                    {"type": "music", "generate": {"prompt": "soft pads", "seconds": 2}, "gain_db": -6},
                ],
            },
        )
        fleet.start(**pipeline_env(s3, tmp_path, stability, MAX_RETRIES=0))
        row = retried(conn, jid)
        assert row["attempts"] == 1 and row["error_message"] is None
        assert "layers[2]" in row["last_error"] and "503" in row["last_error"]
        assert conn.execute("select run_at > now() from audio_queue.jobs where id = %s", (jid,)).fetchone()[0]
        assert all_keys(s3) == []

        stability.always(None)
        run_now(conn, jid)
        row = finished(conn, jid, "completed", "failed")
    assert row["attempts"] == 2
    assert_completed_with_both_files(row, s3)


def test_storage_outage_at_upload_is_retried_later_then_completes(conn, fleet, s3, tmp_path):
    s3.disconnect()  # nothing before the upload needs storage: the outage hits the upload
    jid = enqueue(conn, TONES)
    fleet.start(**pipeline_env(s3, tmp_path, STORAGE_UPLOAD_ATTEMPTS=2))
    row = retried(conn, jid)
    assert row["attempts"] == 1 and "storage unreachable" in row["last_error"]
    s3.reconnect()
    assert all_keys(s3) == []

    run_now(conn, jid)
    row = finished(conn, jid, "completed", "failed")
    assert row["attempts"] == 2
    assert_completed_with_both_files(row, s3)


def test_failure_after_the_master_was_stored_deletes_it(conn, fleet, s3, tmp_path):
    # the master bucket works, the preview bucket does not exist: a permanent failure mid-upload
    jid = enqueue(conn, TONES)
    w = fleet.start(**pipeline_env(s3, tmp_path, STORAGE_PREVIEW_BUCKET="no-such-previews"))
    row = finished(conn, jid, "failed", "completed", "pending")
    assert row["status"] == "failed" and "no-such-previews" in row["error_message"]
    assert "stored " in w.log  # the master did land ...
    assert all_keys(s3) == []  # ... and was deleted with the failed job
    assert row["wav_url"] is None and row["mp3_url"] is None
