"""A rolling deploy as Heroku does it: workers of the previous release (its own code, checked out
from git) keep running beside the new release's workers on the newest schema.

The frozen calls (test_compat_calls.py) prove every statement one by one; this runs the previous
release's ``python -m worker run`` itself, killed mid-job and rescued, cancelled, sharing a queue
with a current worker, and checks that every job ran exactly once.
"""

from __future__ import annotations

import collections
import io
import os
import signal
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.jobs import job, scalar
from tests.support.workers import wait_until

REPO = Path(__file__).resolve().parents[2]
# The release running in production (main when this round began, schema version 6). After each
# release, point it at that release's commit: the next one must keep its workers working.
PREVIOUS_RELEASE = "8971caf"
OLD_PATHS = ["worker", "migrations", "tests/__init__.py", "tests/handlers.py"]


@pytest.fixture(scope="module")
def previous_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The previous release's code, from git (skipped in a clone without that history)."""
    known = subprocess.run(
        ["git", "cat-file", "-e", f"{PREVIOUS_RELEASE}^{{commit}}"],
        cwd=REPO,
        capture_output=True,
        check=False,
    )
    if known.returncode != 0:
        pytest.skip(f"git history without {PREVIOUS_RELEASE} (shallow clone?)")
    archive = subprocess.run(
        ["git", "archive", "--format=tar", PREVIOUS_RELEASE, *OLD_PATHS],
        cwd=REPO,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    dest = tmp_path_factory.mktemp("previous-release")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest


class Worker:
    """``python -m worker run`` of the code in ``cwd``, in its own process group, killed by pid."""

    def __init__(self, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self._log = open(log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "worker", "run"],
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        self.kill()
        self._log.close()

    @property
    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def start(db_url: str, tmp_path: Path) -> Iterator[object]:
    started: list[Worker] = []
    exec_dir = tmp_path / "exec"
    exec_dir.mkdir()

    def _start(cwd: Path, **env: object) -> Worker:
        full = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DATABASE_URL": db_url,
            "JOB_HANDLER": "tests.handlers:record",
            "EXEC_LOG_DIR": str(exec_dir),
            "POLL_INTERVAL_MS": "1000",
            "LEASE_SECONDS": "3",
            "RESCUE_INTERVAL_SECONDS": "1",
            **{k: str(v) for k, v in env.items()},
        }
        w = Worker(cwd, full, tmp_path / f"worker-{len(started)}.log")
        started.append(w)
        return w

    _start.exec_dir = exec_dir  # type: ignore[attr-defined]
    yield _start
    for w in started:
        w.stop()


def done_by_pid(exec_dir: Path) -> dict[int, collections.Counter[str]]:
    out: dict[int, collections.Counter[str]] = {}
    for f in exec_dir.glob("*.log"):
        for line in f.read_text().splitlines():
            event, job_id, _attempt = line.split()
            if event == "done":
                out.setdefault(int(f.stem), collections.Counter())[job_id] += 1
    return out


def enqueue(conn: psycopg.Connection, payload: str, n: int = 1, priority: int = 0) -> list[object]:
    rows = conn.execute(
        "select audio_queue.enqueue_job(%s::jsonb, p_priority => %s) from generate_series(1, %s)",
        (payload, priority, n),
    ).fetchall()
    return [r[0] for r in rows]


def test_previous_release_workers_keep_working_beside_new_ones_on_the_newest_schema(
    conn, start, previous_release
):
    assert scalar(conn, "select max(version) from audio_queue.schema_migrations") > 6
    (victim,) = enqueue(conn, '{"first_attempt_ms": 60000, "sleep_ms": 10, "child": true}', priority=10)
    old_a = start(previous_release, MAX_CONCURRENT_JOBS=1)
    wait_until(lambda: job(conn, victim)["status"] == "processing", timeout=30, what="the old worker's claim")
    old_a.kill()  # kill -9 mid-job: a worker of either release rescues it

    old_b = start(previous_release, MAX_CONCURRENT_JOBS=2)
    new = start(REPO, MAX_CONCURRENT_JOBS=2)
    wait_until(lambda: "starting" in old_b.log and "starting" in new.log, timeout=30, what="both workers")
    (long_,) = enqueue(conn, '{"sleep_ms": 60000}', priority=5)
    ids = enqueue(conn, '{"sleep_ms": 100}', n=40)  # 2 s of work per worker: both get some
    wait_until(lambda: job(conn, long_)["status"] == "processing", timeout=30, what="claim of the long job")
    assert scalar(conn, "select audio_queue.cancel_job(%s)", long_) is True

    def finished() -> bool:
        return scalar(
            conn, "select count(*) = 0 from audio_queue.jobs where status in ('pending', 'processing')"
        )

    wait_until(finished, timeout=60, interval=0.2, what="every job, old and new workers together")
    statuses = dict(conn.execute("select status, count(*) from audio_queue.jobs group by 1").fetchall())
    assert statuses == {"completed": 41, "cancelled": 1}, statuses
    assert job(conn, long_)["error_message"] == "cancelled while processing"
    row = job(conn, victim)
    assert row["attempts"] == 2 and row["rescue_count"] == 1
    assert scalar(conn, "select max(attempts) from audio_queue.jobs where id <> %s", victim) == 1

    done = done_by_pid(start.exec_dir)  # type: ignore[attr-defined]
    total: collections.Counter[str] = sum(done.values(), collections.Counter())
    assert set(total) == {str(i) for i in [*ids, victim]} and max(total.values()) == 1, "a job ran twice"
    assert done.get(old_b.proc.pid) and done.get(new.proc.pid), "both releases must have done jobs"
    assert old_b.proc.poll() is None and new.proc.poll() is None
