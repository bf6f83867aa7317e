"""Through a real PgBouncer 1.18, as through Supabase's transaction pooler: migrate, check, exactly
once with several workers, kill -9 rescue, cancel, and the wake-up with and without
LISTEN_DATABASE_URL. The pooler listens on a random port, so the worker must recognise it by what it
does, not by port 6543."""

from __future__ import annotations

import signal
import threading

import psycopg
import pytest
from pydantic import SecretStr

from tests.queue.test_worker_process import all_finished, counts, enqueue
from tests.support.jobs import job
from tests.support.pgbouncer import available
from tests.support.workers import WorkerFleet, wait_until
from worker.commands.check import database_problems
from worker.config import WorkerSettings
from worker.queue.db.connect import plan_connections, shares_backends
from worker.queue.db.migrate import discover, migrate

pytestmark = pytest.mark.skipif(not available(), reason="PgBouncer is not installed")


@pytest.fixture
def fleet(db_url, tmp_path):
    f = WorkerFleet(db_url, tmp_path)
    yield f
    f.close()


def settings(url: str, **kw: object) -> WorkerSettings:
    return WorkerSettings(database_url=SecretStr(url), **kw)  # type: ignore[arg-type]


def test_a_transaction_pooler_on_any_port_is_recognised_by_behaviour(db_url, pgbouncer, pgbouncer_session):
    through = pgbouncer.url(db_url)
    assert shares_backends(through) is True
    assert shares_backends(pgbouncer_session.url(db_url)) is False
    assert shares_backends(db_url) is False

    for configured in ("auto", "direct", "session"):
        plan = plan_connections(settings(through, database_pool_mode=configured))
        assert plan.mode == "transaction", configured
        assert plan.listen_url is None, "LISTEN must never go through a transaction pooler"
        assert plan.connect_kwargs["prepare_threshold"] is None
        assert "probed at start" in plan.note and "LISTEN unavailable" in plan.note
    with_listen = plan_connections(settings(through, listen_database_url=SecretStr(db_url)))
    assert with_listen.mode == "transaction" and with_listen.listen_url == db_url

    session = plan_connections(settings(pgbouncer_session.url(db_url)))
    assert session.mode == "direct" and session.listen_url == session.url

    # LISTEN_DATABASE_URL pointing at a transaction pooler is refused too.
    both = plan_connections(settings(db_url, listen_database_url=SecretStr(through)))
    assert both.mode == "direct" and both.listen_url == db_url
    assert "LISTEN_DATABASE_URL behaves like a transaction pooler" in both.note


def test_a_busy_transaction_pooler_is_still_recognised(db_url, pgbouncer):
    """A dyno restarting while the others keep every server connection of the pool busy: the
    probe's two clients can be handed the servers in turns that look like one session each. Taken
    for a direct server, the worker would LISTEN (and prepare statements) through the pooler."""
    through = pgbouncer.url(db_url)
    stop = threading.Event()

    def busy() -> None:
        with psycopg.connect(through, autocommit=True, prepare_threshold=None) as c:
            while not stop.is_set():
                c.execute("select pg_sleep(0.0005)")

    others = [threading.Thread(target=busy) for _ in range(2)]  # as many as the pool's servers
    for t in others:
        t.start()
    try:
        answers = [shares_backends(through) for _ in range(20)]
    finally:
        stop.set()
        for t in others:
            t.join(10)
    assert answers.count(True) == len(answers), (
        f"taken for a direct server {answers.count(False)} times in 20"
    )


def test_migrate_and_check_through_the_transaction_pooler(pg, pgbouncer):
    url = pg.create("aw_bouncer")
    try:
        through = pgbouncer.url(url)
        assert migrate(through, log=lambda _m: None) == [m.name for m in discover()]
        with psycopg.connect(url) as c:
            versions = [
                r[0] for r in c.execute("select version from audio_queue.schema_migrations order by 1")
            ]
        assert versions == [m.version for m in discover()]
        assert migrate(through, log=lambda _m: None) == []  # again: nothing to do
        assert database_problems(settings(through)) == []
    finally:
        pg.drop(url)


def test_exactly_once_cancel_and_kill_9_rescue_through_the_transaction_pooler(conn, fleet, db_url, pgbouncer):
    env = {"DATABASE_URL": pgbouncer.url(db_url), "LEASE_SECONDS": 3, "RESCUE_INTERVAL_SECONDS": 1}
    log_start = len(pgbouncer.log)
    # kill -9 the worker holding a job: another one rescues and completes it
    (victim,) = enqueue(conn, {"first_attempt_ms": 60000, "sleep_ms": 50, "child": True}, priority=10)
    a = fleet.start(MAX_CONCURRENT_JOBS=1, **env)
    wait_until(lambda: job(conn, victim)["status"] == "processing", timeout=20, what="claim of the victim")
    a.kill()
    # meanwhile, two workers of two slots through the pooler's 2 server connections
    (long_,) = enqueue(conn, {"sleep_ms": 60000}, priority=5)
    ids = enqueue(conn, {"sleep_ms": 0}, n=150)
    workers = [fleet.start(MAX_CONCURRENT_JOBS=2, **env) for _ in range(2)]
    # cancel a running job: its worker stops it at the next heartbeat
    wait_until(lambda: job(conn, long_)["status"] == "processing", timeout=20, what="claim")
    assert conn.execute("select audio_queue.cancel_job(%s)", (long_,)).fetchone()[0] is True

    wait_until(lambda: all_finished(conn), timeout=60, interval=0.2, what="every job through PgBouncer")
    assert counts(conn) == {"completed": 151, "cancelled": 1}
    done = fleet.executions("done")
    assert set(done) == {str(i) for i in [*ids, victim]} and max(done.values()) == 1, "a job ran twice"
    row = job(conn, victim)
    assert row["attempts"] == 2 and row["rescue_count"] == 1
    assert job(conn, long_)["error_message"] == "cancelled while processing"
    assert all("transaction pooler (it shares server sessions" in w.log for w in [a, *workers])
    assert "server conn crashed" not in pgbouncer.log[log_start:]


def test_without_listen_url_the_worker_polls_and_never_listens_through_the_pooler(
    conn, fleet, db_url, pgbouncer
):
    w = fleet.start(DATABASE_URL=pgbouncer.url(db_url), POLL_INTERVAL_MS=1000)
    wait_until(lambda: "LISTEN unavailable" in w.log, timeout=20, what="start-up note")
    (jid,) = enqueue(conn, {"sleep_ms": 10})
    wait_until(lambda: job(conn, jid)["status"] == "completed", timeout=10, what="completion by polling")
    listeners = conn.execute(
        "select count(*) from pg_stat_activity where datname = current_database() and query ilike 'listen%%'"
    ).fetchone()[0]
    assert listeners == 0
    w.signal(signal.SIGTERM)
    assert w.wait(20) == 0


@pytest.mark.parametrize("route", ["listen_url", "session_pooler"])
def test_notify_wakes_an_idle_worker(conn, fleet, db_url, pgbouncer, pgbouncer_session, route):
    """Polling every hour: only NOTIFY can start the job within seconds."""
    if route == "listen_url":
        env = {"DATABASE_URL": pgbouncer.url(db_url), "LISTEN_DATABASE_URL": db_url}
        note = "LISTEN uses LISTEN_DATABASE_URL"
    else:
        env = {"DATABASE_URL": pgbouncer_session.url(db_url)}
        note = "LISTEN/NOTIFY wakes idle workers"
    w = fleet.start(POLL_INTERVAL_MS=3_600_000, **env)
    wait_until(lambda: note in w.log, timeout=20, what="start-up note")
    wait_until(
        lambda: conn.execute(
            "select count(*) from pg_stat_activity where datname = current_database() and query ilike 'listen%%'"
        ).fetchone()[0],
        timeout=20,
        what="the LISTEN connection",
    )
    (jid,) = enqueue(conn, {"sleep_ms": 10})
    wait_until(lambda: job(conn, jid)["status"] == "completed", timeout=10, what="completion woken by NOTIFY")


def test_the_plan_without_a_probe_answer_falls_back_to_the_port_and_an_explicit_mode_is_not_probed():
    probed: list[str] = []

    def unreachable(url: str) -> bool | None:
        probed.append(url)
        return None

    supabase = "postgresql://u@pooler.example:6543/postgres"
    assert plan_connections(settings(supabase), probe=unreachable).mode == "transaction"
    other = "postgresql://u@db.example:5432/postgres"
    plan = plan_connections(settings(other), probe=unreachable)
    assert plan.mode == "direct" and plan.listen_url == other
    assert probed == [other]  # port 6543 needs no probe
    probed.clear()
    plan = plan_connections(settings(other, database_pool_mode="transaction"), probe=unreachable)
    assert plan.mode == "transaction" and plan.listen_url is None and probed == []
