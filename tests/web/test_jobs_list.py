"""The jobs list: the status filter (``pending`` includes ``queued``, its alias since 0001), the
user and track filters, and keyset pages (``?after=``) that keep the filters and neither skip nor
repeat a job, even among jobs created in the same instant."""

from __future__ import annotations

import html
import re
import uuid

import httpx
import pytest

from tests.web.conftest import Dash

pytestmark = pytest.mark.timeout(60)

WAITING = '{"sleep_ms": 10}'


def listed(page: str) -> list[str]:
    """The job ids of a jobs page, in their order."""
    return re.findall(r'<td class="mono"><a href="/jobs/([0-9a-f-]{36})">', page)


def next_link(page: str) -> str | None:
    m = re.search(r'<a rel="next" href="([^"]+)"', page)
    return html.unescape(m.group(1)) if m else None


def test_the_pending_filter_lists_queued_jobs(dash: Dash, client: httpx.Client) -> None:
    with dash.conn() as c:  # waiting for ever: no worker of another test takes them
        rows = c.execute(
            "insert into audio_queue.jobs (status, payload, run_at) "
            "values ('queued', %(p)s, 'infinity'), ('pending', %(p)s, 'infinity') returning id, status",
            {"p": WAITING},
        ).fetchall()
    ids_by_status = {status: str(job_id) for job_id, status in rows}
    queued, pending = ids_by_status["queued"], ids_by_status["pending"]
    for status in ("pending", "queued"):  # the alias means the same jobs
        page = client.get("/jobs", params={"status": status})
        assert page.status_code == 200
        ids = listed(page.text)
        assert queued in ids and pending in ids, status
        assert dash.jobs["completed"] not in ids
        assert '<option value="pending" selected>' in page.text  # the filter shown is the one applied


def test_user_and_track_filters_page_by_keyset(dash: Dash, client: httpx.Client) -> None:
    user, other_user, track = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with dash.conn() as c:
        # 61 jobs of one user (every third on the track), created in pairs of the same instant;
        # 3 of another user on the same track.
        c.execute(
            """insert into audio_queue.jobs (payload, run_at, user_id, track_id, created_at)
               select %(p)s::jsonb, 'infinity'::timestamptz, %(u)s, case when i %% 3 = 0 then %(t)s end,
                      now() - make_interval(secs => i / 2)
                 from generate_series(1, 61) i
               union all
               select %(p)s::jsonb, 'infinity'::timestamptz, %(o)s, %(t)s, now() from generate_series(1, 3)""",
            {"p": WAITING, "u": user, "o": other_user, "t": track},
        )

        def newest_first(where: str) -> list[str]:
            rows = c.execute(
                f"select id from audio_queue.jobs where {where} order by created_at desc, id desc",
                {"u": user, "t": track},
            ).fetchall()
            return [str(r[0]) for r in rows]

        users_jobs = newest_first("user_id = %(u)s")
        on_track = newest_first("track_id = %(t)s")
        users_on_track = newest_first("user_id = %(u)s and track_id = %(t)s")
    assert len(users_jobs) == 61 and len(on_track) == 23 and len(users_on_track) == 20

    first = client.get("/jobs", params={"user": str(user)})
    assert first.status_code == 200 and listed(first.text) == users_jobs[:50]
    older = next_link(first.text)
    assert older is not None and "after=" in older and f"user={user}" in older
    second = client.get(older)
    assert second.status_code == 200 and listed(second.text) == users_jobs[50:]
    assert next_link(second.text) is None  # the last page
    assert '<a href="/jobs?user=' in second.text  # back to the newest, with the filter

    assert listed(client.get("/jobs", params={"track": str(track)}).text) == on_track
    both = client.get("/jobs", params={"user": str(user), "track": str(track)})
    assert listed(both.text) == users_on_track


def test_pending_and_queued_jobs_page_together_in_order(dash: Dash) -> None:
    """dashboard_jobs merges the two statuses page by page: a keyset walk meets every waiting job
    once, newest first, whichever status each has."""
    user = uuid.uuid4()
    with dash.conn() as c:
        c.execute(
            """insert into audio_queue.jobs (status, payload, run_at, user_id, created_at)
               select case when i %% 3 = 0 then 'pending' else 'queued' end, %(p)s::jsonb,
                      'infinity'::timestamptz, %(u)s, now() - make_interval(secs => i / 2)
                 from generate_series(1, 11) i""",
            {"p": WAITING, "u": user},
        )
        expected = [
            str(r[0])
            for r in c.execute(
                "select id from audio_queue.jobs where user_id = %s order by created_at desc, id desc",
                (user,),
            )
        ]
        for status in ("pending", "queued"):
            seen: list[str] = []
            after: tuple[object, object] = (None, None)
            while True:
                page = c.execute(
                    "select id, created_at from audio_queue.dashboard_jobs(p_status => %s, p_user_id => %s,"
                    " p_after_created => %s, p_after_id => %s, p_limit => 3)",
                    (status, user, *after),
                ).fetchall()
                if not page:
                    break
                seen += [str(r[0]) for r in page]
                after = (page[-1][1], page[-1][0])
            assert seen == expected, status
