"""Heroku's shutdown, as the dyno manager does it: SIGTERM to every process of the dyno at once
(the worker and its ffmpeg/espeak-ng children), twice, SIGKILL at 30 s (tests.support.heroku).

A job whose child is ended by that signal is released (attempt not spent, another dyno can take it
at once), never failed nor retried with backoff. A child killed by a signal while the worker is
NOT stopping (the kernel's OOM killer, an operator) is a retryable failure that says so. A worker
started on Heroku with a SHUTDOWN_GRACE_SECONDS that the SIGKILL would cut short says so at start."""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import all_keys, enqueue, job, pipeline_env
from tests.faults.conftest import FAST
from tests.support.heroku import alive, heroku_stop, process_tree
from tests.support.workers import wait_until
from worker.commands.demo import DEFAULT_SPEC
from worker.queue.claim_loop import HEROKU_MAX_GRACE_S

pytestmark = pytest.mark.timeout(120)

GRACE_S = 25  # longer than the tests take: a release must come from the child's death, not the grace
MEDITATION = json.loads(DEFAULT_SPEC.read_text())
# 10 minutes of tones and noise: long enough a render to be caught mid-way, no speech stage.
LONG_TONES = {
    "spec_version": 1,
    "duration_s": 600,
    "layers": [
        {"type": "binaural", "carrier_hz": 200, "beat_hz": 10},
        {"type": "noise", "color": "pink", "gain_db": -20},
    ],
}


def _children_named(pid: int, name: str) -> list[int]:
    out = []
    for p in process_tree(pid)[1:]:
        try:
            comm = Path(f"/proc/{p}/comm").read_text().strip()
            cmdline = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if name in comm or name in cmdline:
            out.append(p)
    return out


_SLOW_ESPEAK = '''#!{python}
"""espeak-ng, but a text holding the word SLOW takes a minute to speak."""
import os, sys, time
args = sys.argv[1:]
if "-f" in args and "SLOW" in open(args[args.index("-f") + 1]).read():
    time.sleep(60)
os.execvp("espeak-ng", ["espeak-ng", *args])
'''


def test_heroku_stop_mid_render_and_mid_speech_releases_both_jobs_unspent(conn, fleet, s3, tmp_path):
    espeak = tmp_path / "espeak-ng-wrapper"
    espeak.write_text(_SLOW_ESPEAK.format(python=sys.executable))
    espeak.chmod(espeak.stat().st_mode | stat.S_IXUSR)
    rendering = enqueue(conn, MEDITATION, priority=1)
    speaking = enqueue(
        conn, {"spec_version": 1, "duration_s": 5, "layers": [{"type": "speech", "text": "SLOW"}]}
    )
    env = pipeline_env(s3, tmp_path, ESPEAK_BINARY=espeak, SHUTDOWN_GRACE_SECONDS=GRACE_S, **FAST)
    w = fleet.start(MAX_CONCURRENT_JOBS=2, **env)
    try:
        wait_until(
            lambda: (
                job(conn, rendering)["stage"] == "render"
                and _children_named(w.pid, "ffmpeg")
                and _children_named(w.pid, "espeak-ng-wrapper")
            ),
            timeout=60,
            what="the meditation's render and the other job's speech to run",
        )
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\n{job(conn, rendering)}\n{job(conn, speaking)}\n{w.log[-4000:]}"
        ) from None

    stopped = heroku_stop(w.pid)  # SIGTERM to the worker, ffmpeg and espeak-ng at once, twice

    assert w.wait(10) == 0, w.log[-3000:]
    assert stopped.killed == [], f"Heroku had to SIGKILL {stopped.killed}\n{w.log[-3000:]}"
    assert len(stopped.children) >= 2 and stopped.took_s < GRACE_S  # released at the child's death
    for jid in (rendering, speaking):
        row = job(conn, jid)
        assert row["status"] == "pending", f"{row['status']}: {row['error_message'] or row['last_error']}"
        assert row["attempts"] == 0 and row["rescue_count"] == 0 and row["run_at"] <= row["updated_at"]
        assert row["error_message"] is None and row["last_error"] is None
        assert row["locked_by"] is None and row["pending_objects"] == []
    assert all_keys(s3) == []
    assert w.log.count("handed back to the queue") == 2 and "grace" not in w.log.split("SIGTERM")[-1]


def test_ffmpeg_killed_outside_shutdown_is_a_retryable_failure_naming_the_signal(conn, fleet, s3, tmp_path):
    jid = enqueue(conn, LONG_TONES)
    w = fleet.start(**pipeline_env(s3, tmp_path, SHUTDOWN_GRACE_SECONDS=GRACE_S, **FAST))
    (ffmpeg,) = wait_until(
        lambda: job(conn, jid)["stage"] == "render" and _children_named(w.pid, "ffmpeg"),
        timeout=30,
        what="the render's ffmpeg",
    )
    os.kill(ffmpeg, signal.SIGKILL)  # what the kernel's OOM killer does
    row = wait_until(lambda: (r := job(conn, jid))["last_error"] and r, timeout=20, what="the failure")
    assert row["status"] == "pending" and row["attempts"] == 1, row  # retried with backoff
    assert row["last_error"].startswith("ffmpeg (mix) was killed by SIGKILL"), row["last_error"]
    assert "exit" not in row["last_error"] and all_keys(s3) == []
    assert alive(w.pid)
    assert heroku_stop(w.pid).killed == [] and w.wait(10) == 0


def test_a_grace_heroku_would_cut_short_is_warned_at_start_naming_the_setting_and_the_limit(fleet):
    """Heroku (it sets DYNO) SIGKILLs 30 s after SIGTERM: with a longer grace, the jobs still running
    at a restart are killed instead of handed back. The worker starts anyway and says so."""
    over = fleet.start(DYNO="worker.1", SHUTDOWN_GRACE_SECONDS=60)
    at_limit = fleet.start(DYNO="worker.2", SHUTDOWN_GRACE_SECONDS=HEROKU_MAX_GRACE_S)
    elsewhere = fleet.start(SHUTDOWN_GRACE_SECONDS=60)  # no DYNO: not Heroku, no 30 s limit
    for w in (over, at_limit, elsewhere):
        wait_until(lambda w=w: "starting:" in w.log, timeout=30, what="the worker to start")

    said = [line for line in over.log.splitlines() if "SHUTDOWN_GRACE_SECONDS" in line]
    assert len(said) == 1 and "WARNING" in said[0], over.log
    assert "SHUTDOWN_GRACE_SECONDS=60 " in said[0] and f"{HEROKU_MAX_GRACE_S:g} or less" in said[0]
    assert "DYNO=worker.1" in said[0] and "SIGKILL" in said[0]
    assert "SHUTDOWN_GRACE_SECONDS" not in at_limit.log + elsewhere.log
    for w in (over, at_limit, elsewhere):
        assert alive(w.pid)  # a warning, not a refusal to start
        w.signal(signal.SIGTERM)
    assert [w.wait(30) for w in (over, at_limit, elsewhere)] == [0, 0, 0]
