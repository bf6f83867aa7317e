"""Fair claiming and fleet-wide provider slots, through the SQL functions (migration fair_share)."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest

from tests.support.jobs import scalar

HEAVY = uuid.UUID("aaaaaaaa-0000-0000-0000-000000000001")


def add_jobs(conn, user, n=1, priority=0, age_s=0.0):
    """n due jobs of ``user`` (None: no user), one millisecond apart, the newest ``age_s`` seconds
    old (never in the future: a claim in the same millisecond must see them all due)."""
    conn.execute(
        "insert into audio_queue.jobs (payload, user_id, priority, run_at) "
        "select '{}', %s, %s, now() - make_interval(secs => %s) - (%s - i) * interval '1 millisecond' "
        "from generate_series(1, %s) i",
        (user, priority, age_s, n, n),
    )


def claim(conn, n, worker="w"):
    return conn.execute(
        "select user_id, priority from audio_queue.get_next_pending_job(%s, %s, 60)", (worker, n)
    ).fetchall()


def test_a_heavy_backlog_does_not_delay_light_users(conn):
    add_jobs(conn, HEAVY, 300, age_s=3600)  # queued an hour earlier than everyone else
    light = [uuid.uuid4() for _ in range(5)]
    for u in light:
        add_jobs(conn, u)
    add_jobs(conn, None)  # jobs without a user are a group of their own

    first = [u for u, _ in claim(conn, 4)]
    second = [u for u, _ in claim(conn, 4)]
    # The heavy user gets one turn, then every light user and the no-user group before its second.
    assert first.count(HEAVY) == 1 and second.count(HEAVY) == 1
    others = [u for u in first + second if u != HEAVY]
    assert sorted(others, key=str) == sorted([*light, None], key=str)


def test_priority_still_wins_over_fairness(conn):
    add_jobs(conn, HEAVY, 5, priority=10)
    add_jobs(conn, uuid.uuid4(), 1, priority=0)
    got = claim(conn, 5)
    assert [(u, p) for u, p in got] == [(HEAVY, 10)] * 5


def test_fairness_off_claims_in_the_plain_priority_then_run_at_order(conn):
    conn.execute("update audio_queue.settings set fair_claiming = false")
    add_jobs(conn, HEAVY, 10, age_s=60)
    add_jobs(conn, uuid.uuid4(), 1)
    assert [u for u, _ in claim(conn, 10)] == [HEAVY] * 10


def test_the_per_user_cap_holds_and_other_users_still_run(conn):
    conn.execute("update audio_queue.settings set max_running_per_user = 2")
    other = uuid.uuid4()
    add_jobs(conn, HEAVY, 20, age_s=60)
    add_jobs(conn, other, 1)
    got = [u for u, _ in claim(conn, 10)]
    assert sorted(got, key=str) == sorted([HEAVY, HEAVY, other], key=str)
    assert claim(conn, 10) == []  # the heavy user is at its cap, nobody else waits
    # One of the heavy user's jobs ends: exactly one more may start.
    conn.execute(
        "update audio_queue.jobs set status = 'completed', completed_at = now() where id = "
        "(select id from audio_queue.jobs where user_id = %s and status = 'processing' limit 1)",
        (HEAVY,),
    )
    assert [u for u, _ in claim(conn, 10)] == [HEAVY]


def test_the_cap_holds_under_concurrent_claims(db_url, conn):
    conn.execute("update audio_queue.settings set max_running_per_user = 3")
    add_jobs(conn, HEAVY, 200)
    barrier = threading.Barrier(8)

    def claimer():
        with psycopg.connect(db_url, autocommit=True) as c:
            barrier.wait()
            for _ in range(5):
                c.execute("select * from audio_queue.get_next_pending_job('t', 2, 60)").fetchall()

    threads = [threading.Thread(target=claimer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert scalar(conn, "select count(*) from audio_queue.jobs where status = 'processing'") == 3


def test_a_capped_users_job_never_starts_before_the_job_whose_place_it_took_ended(db_url, conn):
    """started_at is when the cap let the job in. A claim whose statement began before the user's
    running job ended (it waited on the cap's lock behind another worker's claim, or runs in an
    older transaction) must not date its job earlier than that end: read from started_at and
    completed_at, the user's running jobs would overlap beyond the cap."""
    conn.execute("update audio_queue.settings set max_running_per_user = 1")
    add_jobs(conn, HEAVY, 2)
    first = conn.execute("select id, lease_id from audio_queue.get_next_pending_job('a', 1, 60)").fetchone()
    with psycopg.connect(db_url) as late:
        late.execute("select 1")  # its transaction (and now()) begins before the first job ends
        time.sleep(0.05)
        conn.execute("select audio_queue.complete_job(%s, '{}', null, %s)", first)
        ended = scalar(conn, "select completed_at from audio_queue.jobs where id = %s", first[0])
        started = late.execute(
            "select started_at from audio_queue.get_next_pending_job('b', 1, 60)"
        ).fetchone()
        late.commit()
    assert started is not None, "the slot was free: the second job must be claimed"
    assert started[0] >= ended


def test_old_calls_still_claim(conn):
    """The previous release's workers call the function with no or positional arguments."""
    add_jobs(conn, HEAVY, 2)
    assert len(conn.execute("select * from audio_queue.get_next_pending_job()").fetchall()) == 1
    assert len(conn.execute("select * from audio_queue.get_next_pending_job('old', 5, 30)").fetchall()) == 1


def test_user_load_shows_the_busiest_users(conn):
    add_jobs(conn, HEAVY, 6)
    add_jobs(conn, None, 1)
    claim(conn, 3)
    rows = conn.execute("select user_id, running, waiting from audio_queue.user_load(5)").fetchall()
    assert sum(r[1] for r in rows) == 3 and sum(r[2] for r in rows) == 4
    assert rows[0][0] == HEAVY


# One group waiting: the claim skips the walk over groups (migration queue_fast_paths) -----------


def claim_ids(conn, n):
    return [r[0] for r in conn.execute("select id from audio_queue.get_next_pending_job('w', %s, 60)", (n,))]


def test_one_users_backlog_is_claimed_in_priority_then_run_at_order(conn):
    add_jobs(conn, HEAVY, 6, age_s=60)
    add_jobs(conn, HEAVY, 2, priority=5)  # newer, but higher priority
    order = [
        r[0]
        for r in conn.execute("select id from audio_queue.jobs order by priority desc, run_at, id").fetchall()
    ]
    # Each call takes the next jobs of that order (a call returns its rows in no particular order).
    batches = [set(claim_ids(conn, n)) for n in (1, 3, 1, 10)]
    assert batches == [set(order[:1]), set(order[1:4]), set(order[4:5]), set(order[5:])]


def test_jobs_without_a_user_are_claimed_in_order_and_scheduled_ones_wait(conn):
    add_jobs(conn, None, 4, age_s=10)
    conn.execute(
        "insert into audio_queue.jobs (payload, user_id, run_at) values ('{}', %s, now() + interval '1 hour')",
        (uuid.uuid4(),),
    )
    order = [
        r[0]
        for r in conn.execute(
            "select id from audio_queue.jobs where user_id is null order by run_at, id"
        ).fetchall()
    ]
    assert [set(claim_ids(conn, 2)), set(claim_ids(conn, 5))] == [set(order[:2]), set(order[2:])]
    assert claim_ids(conn, 5) == []  # the other user's job is not due yet


def test_a_second_user_is_served_in_turn_whichever_side_of_the_first_its_id_sorts(conn):
    """The check for other waiting groups looks at user ids above and below the first due job's."""
    a, b, c = (uuid.UUID(f"{x * 8}-0000-0000-0000-000000000001") for x in "abc")
    for heavy, light in [(b, a), (b, c), (b, None), (None, c)]:
        conn.execute("truncate audio_queue.jobs cascade")
        add_jobs(conn, heavy, 10, age_s=3600)
        assert [u for u, _ in claim(conn, 2)] == [heavy, heavy]  # one group: the plain order
        add_jobs(conn, light)
        # The heavy group already runs two: the light user's job goes first.
        assert [u for u, _ in claim(conn, 1)] == [light], (heavy, light)
        assert [u for u, _ in claim(conn, 2)] == [heavy, heavy]


def test_priority_wins_when_another_users_job_waits_at_a_lower_priority(conn):
    other = uuid.UUID("00000000-0000-0000-0000-000000000001")  # sorts before HEAVY
    add_jobs(conn, HEAVY, 3, priority=10)
    add_jobs(conn, other, 3, priority=0, age_s=3600)
    assert [(u, p) for u, p in claim(conn, 1)] == [(HEAVY, 10)]
    assert [(u, p) for u, p in claim(conn, 2)] == [(HEAVY, 10)] * 2
    assert [(u, p) for u, p in claim(conn, 5)] == [(other, 0)] * 3


def test_with_many_users_waiting_each_gets_one_turn_before_anyone_a_second(conn):
    users = [uuid.UUID(int=i + 1) for i in range(60)]
    for k, u in enumerate(users):
        add_jobs(conn, u, 3, age_s=60 - k)  # the first users' jobs are the oldest
    first = [u for u, _ in claim(conn, 40)]
    assert sorted(first) == users[:40]  # one each, the oldest turns first
    second = [u for u, _ in claim(conn, 40)]
    assert sorted(second) == users[:20] + users[40:]  # the rest, then the oldest second turns


# Provider slots ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_slots_left(conn):
    """Slots are not jobs: the db_url fixture leaves them, so each test starts without any."""
    conn.execute(
        "truncate audio_queue.provider_leases, audio_queue.provider_requests, audio_queue.provider_limits"
    )


def acquire(conn, provider="elevenlabs", account="acct", conc=None, reqs=None, window=None, lease=30):
    return conn.execute(
        "select lease_id, retry_after_s from audio_queue.acquire_provider_slot(%s, %s, %s, %s, %s, %s)",
        (provider, account, conc, reqs, window, lease),
    ).fetchone()


def test_concurrent_slots_are_limited_and_released(conn):
    a, _ = acquire(conn, conc=2)
    b, _ = acquire(conn, conc=2)
    refused, wait = acquire(conn, conc=2)
    assert a and b and refused is None and 0 < wait <= 0.25
    assert acquire(conn, account="other", conc=2)[0] is not None  # accounts are separate
    assert scalar(conn, "select audio_queue.release_provider_slot(%s)", a) is True
    assert acquire(conn, conc=2)[0] is not None


def test_requests_per_window_are_limited_with_the_wait_until_the_window_frees(conn):
    for _ in range(3):
        lease, _ = acquire(conn, reqs=3, window=2)
        scalar(conn, "select audio_queue.release_provider_slot(%s)", lease)
    refused, wait = acquire(conn, reqs=3, window=2)
    assert refused is None and 1.0 < wait <= 2.0
    time.sleep(wait + 0.05)
    assert acquire(conn, reqs=3, window=2)[0] is not None


def test_a_slot_whose_holder_died_frees_itself_when_its_lease_expires(conn):
    held, _ = acquire(conn, conc=1, lease=1)
    assert acquire(conn, conc=1)[0] is None
    time.sleep(1.1)
    assert scalar(conn, "select audio_queue.renew_provider_slot(%s, 30)", held) is False
    assert acquire(conn, conc=1)[0] is not None


def test_renewed_slots_stay_held(conn):
    held, _ = acquire(conn, conc=1, lease=1)
    for _ in range(3):
        time.sleep(0.4)
        assert scalar(conn, "select audio_queue.renew_provider_slot(%s, 1)", held) is True
    assert acquire(conn, conc=1)[0] is None


def test_provider_slot_stats_show_slots_in_use_against_the_limit(conn):
    acquire(conn, provider="openai", account="k1", conc=4, reqs=50, window=60)
    acquire(conn, provider="openai", account="k1", conc=4, reqs=50, window=60)
    row = conn.execute(
        "select in_use, max_concurrent, requests_in_window, max_requests from audio_queue.provider_slot_stats() "
        "where provider = 'openai' and account = 'k1'"
    ).fetchone()
    assert row == (2, 4, 2, 50)


@pytest.mark.parametrize(
    "args", [(None, "a", 1, None, None, 30), ("p", "a", None, 5, None, 30), ("p", "a", 1, None, None, 0)]
)
def test_bad_slot_arguments_are_refused_naming_the_parameter(conn, args):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="acquire_provider_slot: p_"):
        conn.execute("select * from audio_queue.acquire_provider_slot(%s, %s, %s, %s, %s, %s)", args)


def release(conn, lease):
    return scalar(conn, "select audio_queue.release_provider_slot(%s)", lease)


def test_a_request_counts_in_its_window_until_its_answer(conn):
    """A provider counts a request when it arrives, any time before its answer: the window of a
    slow request runs from its answer, not from its grant."""
    first, _ = acquire(conn, reqs=2, window=1)
    second, _ = acquire(conn, reqs=2, window=1)
    time.sleep(1.1)  # a whole window after both grants, both still running
    refused, wait = acquire(conn, reqs=2, window=1)
    assert refused is None and 0 < wait <= 1
    release(conn, first)
    refused, wait = acquire(conn, reqs=2, window=1)
    assert refused is None and 0.8 < wait <= 1.0  # one window after the first answer
    time.sleep(wait + 0.05)
    assert acquire(conn, reqs=2, window=1)[0] is not None
    assert release(conn, second) is True


def test_a_dead_holders_request_counts_until_its_lease_expired_plus_the_window(conn):
    acquire(conn, reqs=1, window=1, lease=1)
    time.sleep(1.1)  # the lease expired: the request ended then, at the latest
    refused, wait = acquire(conn, reqs=1, window=1)
    assert refused is None and 0.7 < wait <= 1.0


def test_the_window_starts_after_a_wait_for_the_lock_not_at_the_statement(conn):
    """In a transaction that began long before, the grant is booked at the clock, not at now()."""
    with conn.transaction():
        conn.execute("select pg_sleep(1.1)")
        lease, _ = acquire(conn, reqs=1, window=1)
        release(conn, lease)
    refused, wait = acquire(conn, reqs=1, window=1)
    assert refused is None and wait > 0.8


def test_requests_still_running_show_in_the_window_stats(conn):
    acquire(conn, provider="openai", account="k2", reqs=5, window=1)
    time.sleep(1.1)
    row = conn.execute(
        "select requests_in_window from audio_queue.provider_slot_stats() where account = 'k2'"
    ).fetchone()
    assert row == (1,)
