"""One dashboard for the tests of this package: its own database with jobs in every state, a local
S3 server holding a preview, ``python -m worker web`` as a real process on 127.0.0.1, and (started
by the browser test when it needs one) a real worker process.

Every secret here is a distinctive placeholder so a test can grep pages for it.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.e2e.conftest import storage_env
from tests.support.pg import TestDatabases
from tests.support.s3 import SECRET_ACCESS_KEY, S3Server
from tests.support.workers import REPO, WorkerProcess, wait_until
from worker.local.ports import free_port
from worker.queue.db.migrate import migrate

DB_PASSWORD = "pgpw-SENTINEL-4e1f9"
DASHBOARD_PASSWORD = "dash-pw-SENTINEL-0123"
SESSION_SECRET = "session-SENTINEL-7b3c2a9d"
HIREFIRE_TOKEN = "hf-SENTINEL-token-55aa"
OPENAI_KEY = "placeholder-openai-key-SENTINEL"
PAYLOAD_KEY = "payload-SENTINEL-apikey"
URL_PASSWORD = "urlpw-SENTINEL"
QUERY_TOKEN = "qtok-SENTINEL"
SECRETS = [
    DB_PASSWORD,
    DASHBOARD_PASSWORD,
    SESSION_SECRET,
    HIREFIRE_TOKEN,
    OPENAI_KEY,
    PAYLOAD_KEY,
    URL_PASSWORD,
    QUERY_TOKEN,
    SECRET_ACCESS_KEY,
]

FAILED_ERROR = "upload of the preview failed: storage unreachable after 4 attempts (ConnectTimeout)"
TONES = {
    "spec_version": 1,
    "duration_s": 3,
    "layers": [
        {"type": "solfeggio", "frequency_hz": 528},
        {"type": "noise", "color": "pink", "gain_db": -18},
    ],
    "output": {"preview": {"bitrate_kbps": 64}},
}


@dataclass
class Dash:
    url: str  # the dashboard's base URL
    db_url: str
    s3: S3Server
    env: dict[str, str]
    tmp: Path
    jobs: dict[str, str] = field(default_factory=dict)  # role -> job id
    workers: list[WorkerProcess] = field(default_factory=list)

    def conn(self) -> psycopg.Connection:
        return psycopg.connect(self.db_url, autocommit=True)

    def status(self, job_id: str) -> str:
        with self.conn() as c:
            row = c.execute("select status from audio_queue.jobs where id = %s", (job_id,)).fetchone()
        assert row is not None
        return str(row[0])

    def start_worker(self) -> WorkerProcess:
        """A real ``python -m worker run``: sleeps or the real pipeline into the local S3."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DATABASE_URL": self.db_url,
            "JOB_HANDLER": "tests.web.handlers:handle",
            "POLL_INTERVAL_MS": "1000",
            "LEASE_SECONDS": "3",
            "RESCUE_INTERVAL_SECONDS": "3600",
            "WORKER_ID": "web-test-dyno.1",
            "RENDER_TMP_DIR": str(self.tmp / "render-tmp"),
            "PROVIDER_CACHE_DIR": str(self.tmp / "provider-cache"),
            **storage_env(self.s3),
        }
        w = WorkerProcess(env, self.tmp / f"worker-{len(self.workers)}.log")
        self.workers.append(w)
        return w

    def login(self, client: httpx.Client) -> None:
        page = client.get("/login")
        done = client.post(
            "/login",
            data={"csrf_token": csrf_of(page.text), "username": "admin", "password": DASHBOARD_PASSWORD},
        )
        assert done.status_code == 303 and done.headers["location"] == "/", done.text


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def _enqueue(c: psycopg.Connection, payload: dict[str, Any], **kw: Any) -> str:
    args = "".join(f", p_{k} => %({k})s" for k in kw)
    row = c.execute(
        f"select audio_queue.enqueue_job(%(p)s::jsonb{args})", {"p": json.dumps(payload), **kw}
    ).fetchone()
    assert row is not None
    return str(row[0])


def _claim(c: psycopg.Connection, worker: str, lease_s: int = 600) -> tuple[str, str]:
    row = c.execute(
        "select id, lease_id from audio_queue.get_next_pending_job(%s, 1, %s)", (worker, lease_s)
    ).fetchone()
    assert row is not None
    return str(row[0]), str(row[1])


def _preview_mp3(path: Path) -> Path:
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=2",
            "-b:a",
            "64k",
            str(path),
        ],
        check=True,
        timeout=30,
    )
    return path


def seed(c: psycopg.Connection, s3: S3Server, tmp: Path) -> dict[str, str]:
    """Jobs in every state, made through the queue's functions (claims by a 'ghost' worker)."""
    jobs: dict[str, str] = {}
    # Finished history for the chart: 3 hours of completions and some failures (plain rows).
    c.execute(
        """insert into audio_queue.jobs (status, payload, attempts, created_at, started_at, completed_at, error_message)
           select case when i % 9 = 0 then 'failed' else 'completed' end, '{"history": true}', 1,
                  now() - make_interval(secs => i * 60 + 30), now() - make_interval(secs => i * 60 + 20),
                  now() - make_interval(secs => i * 60), case when i % 9 = 0 then 'history failure' end
             from generate_series(1, 170) i"""
    )
    # failed (the one the browser finds by its error text and requeues): a render spec.
    jobs["failed"] = _enqueue(c, TONES, max_attempts=1)
    job_id, lease = _claim(c, "web-dyno.7")
    c.execute("select audio_queue.complete_job(%s, null, %s, %s, false)", (job_id, FAILED_ERROR, lease))
    # completed, with a preview in storage, peaks and loudness.
    key = "generated/seeded_preview.mp3"
    s3.client().upload_file(str(_preview_mp3(tmp / "seeded.mp3")), s3.preview_bucket, key)
    jobs["completed"] = _enqueue(c, {"spec_version": 1, "duration_s": 2, "layers": [{"type": "solfeggio"}]})
    job_id, lease = _claim(c, "web-dyno.7")
    result = {
        "preview": {"bucket": s3.preview_bucket, "key": key, "content_type": "audio/mpeg"},
        "duration_s": 2.0,
        "loudness": {"integrated_lufs": -16.2, "true_peak_dbtp": -1.7, "lra": 2.5, "target_lufs": -16},
        "peaks": [abs(((i * 37) % 100) - 50) / 50 for i in range(200)],
    }
    c.execute("select audio_queue.complete_job(%s, %s::jsonb, null, %s)", (job_id, json.dumps(result), lease))
    # a failure that quotes secrets (as a careless provider error might), and a payload holding them.
    jobs["leaky"] = _enqueue(
        c,
        {
            "spec_version": 1,
            "api_key": PAYLOAD_KEY,
            "layers": [
                {
                    "type": "music",
                    "url": f"https://user:{URL_PASSWORD}@audio.example/a.mp3?token={QUERY_TOKEN}",
                }
            ],
        },
        max_attempts=1,
    )
    job_id, lease = _claim(c, "web-dyno.7")
    c.execute(
        "select audio_queue.complete_job(%s, null, %s, %s, false)",
        (job_id, f"provider said: bad key {OPENAI_KEY}; db password {DB_PASSWORD}", lease),
    )
    # cancelled before it started; scheduled for tomorrow; due now; stuck on a dead worker.
    jobs["cancelled"] = _enqueue(c, {"sleep_ms": 10})
    c.execute("select audio_queue.cancel_job(%s)", (jobs["cancelled"],))
    jobs["scheduled"] = _enqueue(c, {"sleep_ms": 10}, run_at="tomorrow")
    jobs["stuck"] = _enqueue(c, {"sleep_ms": 10})
    _claim(c, "ghost-dyno.3", lease_s=1)
    c.execute("select audio_queue.update_job_progress(%s, 42, 'render')", (jobs["stuck"],))
    jobs["pending"] = _enqueue(c, {"sleep_ms": 10}, priority=-1)
    return jobs


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the dashboard exited ({proc.returncode}):\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"the dashboard did not listen within {timeout}s:\n{log.read_text()}")


@contextmanager
def web_process(env: dict[str, str], log: Path) -> Iterator[str]:
    """A real ``python -m worker web`` with ``env`` (its DASHBOARD_PORT) until the block ends; its
    base URL."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker", "web"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        port = int(env["DASHBOARD_PORT"])
        _wait_listening(port, proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@pytest.fixture(scope="package")
def dash(pg: TestDatabases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dash]:
    tmp = tmp_path_factory.mktemp("dashboard")
    db_url = make_conninfo(pg.create("aw_dash"), password=DB_PASSWORD)  # trust auth: ignored by the server
    migrate(db_url, log=lambda _m: None)
    s3 = S3Server().start()
    d: Dash | None = None
    try:
        with psycopg.connect(db_url, autocommit=True) as c:
            jobs = seed(c, s3, tmp)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DATABASE_URL": db_url,
            "DASHBOARD_PASSWORD": DASHBOARD_PASSWORD,
            "DASHBOARD_SESSION_SECRET": SESSION_SECRET,
            "DASHBOARD_PORT": str(free_port()),
            "HIREFIRE_TOKEN": HIREFIRE_TOKEN,
            "OPENAI_API_KEY": OPENAI_KEY,
            **storage_env(s3),
        }
        with web_process(env, tmp / "web.log") as url:
            d = Dash(url=url, db_url=db_url, s3=s3, env=env, tmp=tmp, jobs=jobs)
            yield d
    finally:
        if d is not None:
            for w in d.workers:
                w.close()
        s3.stop()


@pytest.fixture
def client(dash: Dash) -> Iterator[httpx.Client]:
    """A signed-in HTTP client."""
    with httpx.Client(base_url=dash.url, timeout=10) as c:
        dash.login(c)
        yield c


def wait_for(cond: Any, timeout: float, what: str) -> Any:
    return wait_until(cond, timeout, interval=0.1, what=what)
