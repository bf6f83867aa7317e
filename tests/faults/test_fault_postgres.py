"""PostgreSQL restarted mid-run (every worker connection dropped, LISTEN included): the workers
reconnect and every job completes exactly once; none is lost, duplicated or left processing.

The server is a throwaway cluster this test starts (and stops), so restarting it disturbs nothing
else; jobs are real renders and uploads."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.e2e.conftest import all_keys, enqueue, pipeline_env
from tests.faults.conftest import FAST, TONES
from tests.support.pg import TempCluster
from tests.support.workers import WorkerFleet, wait_until
from worker.queue.db.migrate import migrate

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def cluster() -> Iterator[TempCluster]:
    c = TempCluster()
    try:
        migrate(c.url, log=lambda _msg: None)
        yield c
    finally:
        c.stop()  # pg_ctl stop (its pid file) and the data directory removed


def restart(c: TempCluster) -> None:
    """pg_ctl restart (fast: active connections are terminated), as the user the server runs as."""
    c._run([c.pg_ctl, "-D", str(c.data), "-l", str(c.dir / "log"), "-m", "fast", "-w", "restart"])


def statuses(url: str) -> dict[str, int]:
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=2) as conn:
            return dict(
                conn.execute("select status, count(*) from audio_queue.jobs group by status").fetchall()
            )
    except psycopg.OperationalError:
        return {}


def test_postgres_restart_mid_run_loses_duplicates_and_strands_nothing(cluster, s3, tmp_path: Path, ffmpeg):
    fleet = WorkerFleet(cluster.url, tmp_path)
    try:
        with psycopg.connect(cluster.url, autocommit=True) as conn:
            ids = [enqueue(conn, TONES) for _ in range(6)]
        ffmpeg.slow(0.3)  # each ffmpeg pass: jobs are still in flight when the server goes away
        env = pipeline_env(s3, tmp_path, FFMPEG_PATH=ffmpeg.path, MAX_CONCURRENT_JOBS=2, **FAST)
        workers = [fleet.start(**env), fleet.start(**env)]
        wait_until(
            lambda: statuses(cluster.url).get("completed", 0) >= 1, timeout=40, what="a first completion"
        )
        assert statuses(cluster.url).get("processing", 0) >= 1  # the restart hits running jobs

        restart(cluster)
        with psycopg.connect(cluster.url, autocommit=True) as conn:  # and work arrives after it
            ids += [enqueue(conn, TONES) for _ in range(4)]
        wait_until(
            lambda: statuses(cluster.url).get("completed", 0) == len(ids),
            timeout=60,
            what="every job to complete",
        )
        time.sleep(0.5)  # let any straggling duplicate show itself

        with psycopg.connect(cluster.url, autocommit=True) as conn:
            rows = conn.execute("select status, result, pending_objects from audio_queue.jobs").fetchall()
        assert len(rows) == len(ids) and all(r[0] == "completed" for r in rows)
        assert all(r[2] == [] for r in rows)
        expected = sorted(
            f"{o['bucket']}/{o['key']}" for r in rows for o in (r[1]["master"], r[1]["preview"])
        )
        assert sorted(all_keys(s3)) == expected  # two objects per job, none from a discarded attempt
        assert sum(w.log.count("job completed in") for w in workers) == len(ids)  # exactly once each
        assert any("database unavailable" in w.log or "LISTEN connection lost" in w.log for w in workers)
        assert all(w.proc.poll() is None for w in workers)
    finally:
        fleet.close()
