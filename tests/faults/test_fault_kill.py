"""kill -9 of a pipeline worker: the job is rescued and completed exactly once by another worker,
and whatever the dead attempt stored is deleted (by the next attempt, or by the rescue leader when
the job gets no next attempt)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import all_keys, enqueue, job, pipeline_env
from tests.faults.conftest import FAST, FAULT_HANDLER, TONES
from tests.support.workers import wait_until

pytestmark = pytest.mark.timeout(90)

ENDED = ("completed", "failed", "cancelled")


def ended(conn, jid, timeout: float = 40) -> dict:
    return wait_until(
        lambda: (r := job(conn, jid))["status"] in ENDED and r, timeout=timeout, what=f"job {jid} to end"
    )


def result_keys(row: dict) -> list[str]:
    return sorted(f"{o['bucket']}/{o['key']}" for o in (row["result"]["master"], row["result"]["preview"]))


def completions(fleet) -> int:
    """Completions the workers logged, once at least one is there: the worker logs its line after
    the row has committed, so on a busy machine the test can see the row first."""

    def count() -> int:
        return sum(w.log.count("job completed in") for w in fleet.started)

    wait_until(lambda: count() >= 1, timeout=10, what="the worker's completion log line")
    return count()


def test_kill_9_mid_render_is_rescued_and_completed_once_by_another_worker(conn, fleet, s3, tmp_path, ffmpeg):
    ffmpeg.slow(30)  # the render hangs until the kill
    jid = enqueue(conn, TONES)
    env = pipeline_env(s3, tmp_path, FFMPEG_PATH=ffmpeg.path, **FAST)
    scratch = Path(env["RENDER_TMP_DIR"])
    a = fleet.start(**env)
    wait_until(lambda: job(conn, jid)["stage"] == "render", timeout=30, what="the render to start")
    a.kill()
    (left,) = scratch.glob(f"audio-worker-{a.pid}-*/job-{jid}-*")  # what kill -9 leaves behind
    live = LiveScratch(scratch)  # another worker's files, in use: never touched
    ffmpeg.slow(0)
    b = fleet.start(**env)
    row = ended(conn, jid)
    assert row["status"] == "completed", f"{row['error_message']}\n{b.log[-3000:]}"
    assert row["attempts"] == 2 and row["rescue_count"] == 1
    assert completions(fleet) == 1 and "job completed in" in b.log
    assert sorted(all_keys(s3)) == result_keys(row)
    assert row["pending_objects"] == []
    assert not left.parent.exists() and "removed the temp files of 1 dead worker process" in b.log
    assert live.file.exists()
    live.close()


class LiveScratch:
    """A process holding a scratch dir the way a live worker does (worker.job.workdir)."""

    def __init__(self, parent: Path) -> None:
        code = (
            "import sys, time; from pathlib import Path; from worker.job.workdir import process_dir; "
            "d = process_dir(Path(sys.argv[1])); (d / 'busy').write_text('x'); print(d, flush=True); time.sleep(60)"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, str(parent)], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.file = Path(self.proc.stdout.readline().strip()) / "busy"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def test_kill_9_after_the_master_upload_the_next_attempt_deletes_the_stale_objects(conn, fleet, s3, tmp_path):
    jid = enqueue(conn, TONES)
    a = fleet.start(**pipeline_env(s3, tmp_path, JOB_HANDLER=FAULT_HANDLER, FAULT_PREVIEW_PAUSE_S=60, **FAST))
    stale_master = wait_until(lambda: s3.keys(s3.bucket), timeout=30, what="the master to be stored")
    a.kill()  # master stored, preview not, job not completed: on_discard died with the process
    pending = job(conn, jid)["pending_objects"]
    assert sorted(f"{o['bucket']}/{o['key']}" for o in pending) == sorted(
        [f"{s3.bucket}/{stale_master[0]}", f"{s3.preview_bucket}/{stale_master[0].rsplit('.', 1)[0]}.mp3"]
    )

    b = fleet.start(**pipeline_env(s3, tmp_path, **FAST))
    row = ended(conn, jid)
    assert row["status"] == "completed", f"{row['error_message']}\n{b.log[-3000:]}"
    assert row["attempts"] == 2 and completions(fleet) == 1
    assert "left by an earlier attempt" in b.log
    # exactly the completed job's two objects: the dead attempt's master is gone
    assert sorted(all_keys(s3)) == result_keys(row)
    assert f"{s3.bucket}/{stale_master[0]}" not in result_keys(row)
    assert row["pending_objects"] == []


def test_kill_9_on_the_last_attempt_the_rescue_leader_deletes_the_objects_once_storage_is_back(
    conn, fleet, s3, tmp_path
):
    jid = enqueue(conn, TONES, max_attempts=1)  # no next attempt: reset_stuck_jobs fails it
    a = fleet.start(**pipeline_env(s3, tmp_path, JOB_HANDLER=FAULT_HANDLER, FAULT_PREVIEW_PAUSE_S=60, **FAST))
    wait_until(lambda: s3.keys(s3.bucket), timeout=30, what="the master to be stored")
    s3.disconnect()  # and storage is down when the job is failed
    a.kill()

    b = fleet.start(**pipeline_env(s3, tmp_path, **FAST))
    row = ended(conn, jid)
    assert row["status"] == "failed" and "last of 1 attempts" in row["error_message"]
    assert len(row["pending_objects"]) == 2
    wait_until(lambda: "could not delete 2 object(s)" in b.log, timeout=15, what="a failed sweep")
    assert len(job(conn, jid)["pending_objects"]) == 2  # kept for the next round

    s3.reconnect()
    wait_until(lambda: job(conn, jid)["pending_objects"] == [], timeout=15, what="the sweep")
    assert all_keys(s3) == []
    assert "left by a dead attempt of this failed job" in b.log
