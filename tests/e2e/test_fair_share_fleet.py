"""Fair share and fleet-wide provider limits with several real worker processes on one database."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.e2e.conftest import enqueue, pipeline_env
from tests.fakes import FakeElevenLabs, Reply
from tests.support.jobs import scalar
from tests.support.workers import wait_until

pytestmark = pytest.mark.timeout(120)

HEAVY = uuid.UUID("aaaaaaaa-0000-0000-0000-000000000001")


def live(conn) -> int:
    return scalar(conn, "select count(*) from audio_queue.jobs where status in ('pending', 'processing')")


def test_light_users_start_before_a_heavy_backlog_drains_and_the_cap_holds(conn, fleet):
    conn.execute("update audio_queue.settings set max_running_per_user = 2")
    heavy = [enqueue(conn, {"sleep_ms": 150}, user_id=HEAVY) for _ in range(40)]
    light = [enqueue(conn, {"sleep_ms": 150}, user_id=uuid.uuid4()) for _ in range(6)]
    for _ in range(3):
        fleet.start(MAX_CONCURRENT_JOBS=2, POLL_INTERVAL_MS=1000)
    wait_until(lambda: live(conn) == 0, timeout=60, what="every job to finish")

    rows = conn.execute(
        "select id, user_id, started_at, completed_at from audio_queue.jobs where status = 'completed'"
    ).fetchall()
    assert len(rows) == len(heavy) + len(light)
    started = {r[0]: r[2] for r in rows}
    heavy_done = sorted(started[j] for j in heavy)
    # Every light job starts while most of the heavy backlog still waits.
    assert max(started[j] for j in light) < heavy_done[len(heavy) // 3]
    # The cap, at every moment: the heavy user's running intervals never overlap more than twice.
    events = sorted(
        [(r[2], 1) for r in rows if r[1] == HEAVY] + [(r[3], -1) for r in rows if r[1] == HEAVY],
        key=lambda e: (e[0], e[1]),
    )
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert peak == 2


def speech_job(n: int) -> dict:
    return {
        "spec_version": 1,
        "duration_s": "fit",
        "tail_s": 0.2,
        "layers": [{"type": "speech", "text": f"Fleet limit number {n}.", "provider": "elevenlabs"}],
    }


def test_a_provider_limit_holds_for_the_whole_fleet(conn, fleet, s3, tmp_path):
    with FakeElevenLabs() as eleven:
        eleven.always(Reply(200, delay=0.4))
        eleven.max_concurrent = 2
        # The window as the API counts it, on arrival: exactly the one configured, although a
        # request reaches the API some time after its slot was granted.
        eleven.max_per_window = (4, 2.0)
        env = pipeline_env(
            s3,
            tmp_path,
            eleven,
            ELEVENLABS_MAX_CONCURRENT=2,
            ELEVENLABS_RATE_LIMIT=4,
            ELEVENLABS_RATE_WINDOW_S=2,
            MAX_CONCURRENT_JOBS=3,
            PROVIDER_CACHE_ENABLED="false",
        )
        for _ in range(2):
            fleet.start(**env)
        jobs = [enqueue(conn, speech_job(n)) for n in range(7)]
        wait_until(lambda: live(conn) == 0, timeout=90, what="every job to finish")
        statuses = dict(conn.execute("select status, count(*) from audio_queue.jobs group by 1").fetchall())
        assert statuses == {"completed": len(jobs)}, [w.log[-1500:] for w in fleet.started]
        assert eleven.excess == []
        assert eleven.peak_in_flight == 2  # six slots across two dynos, two requests at a time
        assert scalar(conn, "select count(*) from audio_queue.provider_leases") == 0


def test_a_killed_worker_releases_its_provider_slot_within_the_lease(conn, fleet, s3, tmp_path):
    with FakeElevenLabs() as eleven:
        eleven.always(Reply(200, delay=30))
        w = fleet.start(
            **pipeline_env(s3, tmp_path, eleven, ELEVENLABS_MAX_CONCURRENT=1, PROVIDER_SLOT_LEASE_S=3)
        )
        enqueue(conn, speech_job(1))
        eleven.wait_for_requests(1, timeout=30)
        held = "select count(*) from audio_queue.provider_leases where expires_at > now()"
        assert scalar(conn, held) == 1
        w.kill()
        wait_until(lambda: scalar(conn, held) == 0, timeout=4.5, what="the dead worker's slot to expire")
        stats = conn.execute(
            "select provider, in_use, max_concurrent from audio_queue.provider_slot_stats()"
        ).fetchall()
        assert stats == [("elevenlabs", 0, 1)]
        assert json.dumps([str(r) for r in stats]).find("placeholder") == -1  # never the key
