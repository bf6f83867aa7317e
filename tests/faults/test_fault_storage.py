"""The S3 server down for a while mid-run: uploads are retried; every job either completes with
both files or fails cleanly, and nothing is left in storage that no completed job refers to; a
worker killed mid-upload leaves no incomplete multipart upload behind for good, whether the upload
was a job's file or a provider file for the shared cache."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import CACHE_PREFIX, all_keys, enqueue, job, pipeline_env
from tests.faults.conftest import FAST, FAULT_HANDLER, TONES
from tests.support.workers import wait_until
from worker.providers.cache import ABANDONED_UPLOAD_AGE_S, SharedCache, cache_key
from worker.storage import Storage

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


# 25 s of tones at 48 kHz: a 24-bit WAV master of 7.2 MB, two parts when multipart is at 5 MiB; a
# short preview keeps the render quick.
LONG_TONES = {**TONES, "duration_s": 25, "sample_rate": 48000, "output": {"preview": {"seconds": 2}}}


def incomplete_uploads(s3) -> list[str]:
    client = s3.client()
    return sorted(
        f"{b}/{u['Key']}"
        for b in dict.fromkeys(s3.buckets)
        for u in client.list_multipart_uploads(Bucket=b).get("Uploads", [])
    )


def test_kill_9_mid_multipart_upload_the_sweep_aborts_the_incomplete_upload(conn, fleet, s3, tmp_path):
    """The upload id lived only in the dead process: the next attempt's sweep finds the incomplete
    upload by listing the job's keys and aborts it, so no parts are left holding storage."""
    jid = enqueue(conn, LONG_TONES)
    multipart = {
        "STORAGE_MULTIPART_THRESHOLD_MB": 5,
        "STORAGE_MULTIPART_PART_MB": 5,
        "STORAGE_MULTIPART_CONCURRENCY": 1,
    }
    a = fleet.start(
        **pipeline_env(s3, tmp_path, JOB_HANDLER=FAULT_HANDLER, FAULT_PART_PAUSE_S=60, **multipart, **FAST)
    )
    client = s3.client()

    def a_part_is_stored() -> bool:
        listed = client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", [])
        return any(
            client.list_parts(Bucket=s3.bucket, Key=u["Key"], UploadId=u["UploadId"]).get("Parts")
            for u in listed
        )

    wait_until(a_part_is_stored, timeout=40, what="a part of the master to be stored")
    a.kill()
    left = incomplete_uploads(s3)
    assert len(left) == 1 and left[0] in {
        f"{o['bucket']}/{o['key']}" for o in job(conn, jid)["pending_objects"]
    }

    b = fleet.start(**pipeline_env(s3, tmp_path, **FAST))
    row = wait_until(
        lambda: (r := job(conn, jid))["status"] in ("completed", "failed") and r,
        timeout=40,
        what="the job to end",
    )
    assert row["status"] == "completed", f"{row['error_message']}\n{b.log[-3000:]}"
    assert row["attempts"] == 2 and "left by an earlier attempt" in b.log
    assert incomplete_uploads(s3) == []
    assert sorted(all_keys(s3)) == sorted(
        f"{o['bucket']}/{o['key']}" for o in (row["result"]["master"], row["result"]["preview"])
    )


def test_the_rescue_leader_aborts_a_shared_cache_upload_a_killed_worker_left_half_done(fleet, s3, tmp_path):
    """A provider file shared through the cache is no job's object: a worker killed mid-upload
    leaves an incomplete multipart upload no job lists. The fleet's rescue leader aborts such
    uploads once they are older than any upload lasts; one in progress is left alone."""
    cache = SharedCache(Storage(s3.settings()), bucket=s3.bucket, prefix=CACHE_PREFIX)
    dead, live = (cache.object_key(cache_key(provider="openai", text=t), "mp3") for t in ("dead", "live"))
    s3.backdate_upload(s3.bucket, s3.start_upload(s3.bucket, dead), ABANDONED_UPLOAD_AGE_S + 60)
    s3.start_upload(s3.bucket, live)
    assert s3.uploads(s3.bucket, CACHE_PREFIX) == sorted([dead, live])

    w = fleet.start(**pipeline_env(s3, tmp_path, **FAST))
    wait_until(
        lambda: s3.uploads(s3.bucket, CACHE_PREFIX) == [live] or w.proc.poll() is not None,
        timeout=30,
        what="the abandoned upload to be aborted",
    )
    assert s3.uploads(s3.bucket, CACHE_PREFIX) == [live], w.log[-3000:]
    assert "aborted 1 upload(s) abandoned" in w.log
