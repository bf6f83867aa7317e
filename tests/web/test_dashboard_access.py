"""The dashboard's access rules and secrecy, over HTTP against the real ``python -m worker web``:
no session, no page and no action; no CSRF token, no action; no secret in any page; HireFire's
endpoint only with its token."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import uuid
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from starlette.routing import Mount, Route

from tests.support.workers import REPO
from tests.web.conftest import DASHBOARD_PASSWORD, HIREFIRE_TOKEN, SECRETS, Dash, csrf_of
from worker.config import WorkerSettings
from worker.queue.db.connect import plan_connections
from worker.web.app import create_app
from worker.web.auth import is_public
from worker.web.settings import DashboardSettings


def app_routes() -> list[tuple[str, str]]:
    """(method, path) of every route of the app, path parameters filled in."""
    app = create_app(
        DashboardSettings(dashboard_password="x" * 12),
        plan_connections(WorkerSettings(database_url="postgresql://u@127.0.0.1/db")),  # type: ignore[arg-type]
        None,
    )
    out = []
    for r in app.routes:
        if isinstance(r, Mount):
            continue
        assert isinstance(r, Route)
        path = re.sub(r"\{job_id\}", str(uuid.uuid4()), r.path).replace("{token}", "x")
        out += [(m, path) for m in sorted(r.methods or []) if m != "HEAD"]
    return out


def test_every_route_needs_a_session(dash: Dash) -> None:
    routes = app_routes()
    assert len(routes) >= 10
    with httpx.Client(base_url=dash.url, timeout=10) as anon:
        for method, path in routes:
            if is_public(path):
                continue
            html = anon.request(method, path, headers={"Accept": "text/html"})
            other = anon.request(method, path, headers={"Accept": "application/json"})
            if method == "GET":
                assert html.status_code == 303 and html.headers["location"] == "/login", (method, path)
            else:
                assert html.status_code == 401, (method, path)
            assert other.status_code == 401, (method, path)
        # The public ones: the sign-in form, and HireFire's endpoint without its token is a 404.
        assert anon.get("/login").status_code == 200
        assert anon.get("/hirefire/not-the-token/info").status_code == 404
        assert anon.get("/hirefire", headers={"HireFire-Token": "nope"}).status_code == 404
        assert anon.get("/hirefire").status_code == 404


def test_actions_are_refused_without_a_session_or_with_a_bad_csrf_token(
    dash: Dash, client: httpx.Client
) -> None:
    pending = dash.jobs["scheduled"]
    failed = dash.jobs["leaky"]
    actions = {
        f"/jobs/{pending}/cancel": {},
        f"/jobs/{failed}/requeue": {},
        "/actions/reset-stuck": {"minutes": "1"},
        "/actions/requeue-failed": {"hours": "24"},
        "/actions/purge": {"days": "1"},
    }
    good = csrf_of(client.get("/").text)
    with httpx.Client(base_url=dash.url, timeout=10) as anon:
        for path, form in actions.items():
            assert anon.post(path, data={**form, "csrf_token": good}).status_code == 401, path
            assert client.post(path, data=form).status_code == 403, path
            assert client.post(path, data={**form, "csrf_token": "forged"}).status_code == 403, path
            assert client.post(path, data={**form, "csrf_token": ""}).status_code == 403, path
    # A cross-site form cannot carry the cookie (SameSite=strict) nor the token; nothing changed.
    assert dash.status(pending) == "pending"
    assert dash.status(failed) == "failed"
    login = httpx.post(
        f"{dash.url}/login", data={"username": "admin", "password": "whatever", "csrf_token": "x"}
    )
    assert login.status_code == 403


def test_a_wrong_password_is_refused(dash: Dash) -> None:
    with httpx.Client(base_url=dash.url, timeout=10) as c:
        token = csrf_of(c.get("/login").text)
        bad = c.post(
            "/login", data={"csrf_token": token, "username": "admin", "password": "guess-guess-guess"}
        )
        assert bad.status_code == 401 and "wrong name or password" in bad.text
        assert c.get("/", headers={"Accept": "text/html"}).status_code == 303
        good = c.post(
            "/login", data={"csrf_token": token, "username": "admin", "password": DASHBOARD_PASSWORD}
        )
        cookie = good.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert c.get("/").status_code == 200


def test_no_secret_appears_in_any_page(dash: Dash, client: httpx.Client) -> None:
    pages = ["/", "/live", "/jobs", "/jobs?status=failed", "/jobs?error=provider"]
    with dash.conn() as c:
        pages += [
            f"/jobs/{row[0]}"
            for row in c.execute("select id from audio_queue.jobs where payload <> '{\"history\": true}'")
        ]
    texts = {"/login (signed out)": httpx.get(f"{dash.url}/login").text}
    for path in pages:
        page = client.get(path)
        assert page.status_code == 200, path
        texts[path] = page.text
    for path, text in texts.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} shown on {path}"
    leaky = client.get(f"/jobs/{dash.jobs['leaky']}").text
    assert "provider said: bad key ***; db password ***" in leaky  # the error is shown, masked
    assert "&#34;api_key&#34;: &#34;***&#34;" in leaky
    assert "user:***@audio.example" in leaky
    # The server's own log holds no secret either (sign-ins and actions are logged by name).
    log = (dash.tmp / "web.log").read_text()
    for secret in SECRETS:
        assert secret not in log


def test_hirefire_reports_the_worker_queue(dash: Dash) -> None:
    with dash.conn() as c:
        row = c.execute(
            "select count(*) from audio_queue.jobs where status = 'processing' "
            "or (status in ('pending', 'queued') and run_at <= now())"
        ).fetchone()
    info = httpx.get(f"{dash.url}/hirefire/{HIREFIRE_TOKEN}/info")
    assert info.status_code == 200 and info.headers["content-type"].startswith("application/json")
    assert info.json() == [{"name": "worker", "value": row[0] if row else 0}]
    header = httpx.get(f"{dash.url}/hirefire", headers={"HireFire-Token": HIREFIRE_TOKEN})
    assert header.json() == info.json()


def test_the_dashboard_refuses_to_start_without_an_account() -> None:
    with pytest.raises(ValidationError, match="at least 12 characters"):
        DashboardSettings(dashboard_password="short")
    with pytest.raises(ValidationError, match="at least 12 characters"):
        DashboardSettings(dashboard_accounts="ops:short")
    out = subprocess.run(
        [sys.executable, "-m", "worker", "web"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": "postgresql://u@127.0.0.1:1/db"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "DASHBOARD_PASSWORD" in out.stderr


def test_hirefire_job_queue_latency_variant(dash: Dash) -> None:
    """HIREFIRE_METRIC=job_queue_latency reports how long the oldest due job has waited, in seconds."""
    settings = DashboardSettings(
        dashboard_password="x" * 12, hirefire_token="t" * 16, hirefire_metric="job_queue_latency"
    )
    app = create_app(settings, plan_connections(WorkerSettings(database_url=dash.db_url)), None)  # type: ignore[arg-type]
    with dash.conn() as c:
        row = c.execute(
            "select audio_queue.enqueue_job('{}'::jsonb, -100, now() - interval '90 seconds')"
        ).fetchone()
    assert row is not None

    async def ask() -> Any:
        async with app.router.lifespan_context(app):  # opens and closes the database pool
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://dash") as ac:
                return (await ac.get(f"/hirefire/{'t' * 16}/info")).json()

    try:
        (entry,) = asyncio.run(ask())
        assert entry["name"] == "worker" and 90 <= entry["value"] < 600
    finally:
        with dash.conn() as c:
            c.execute("delete from audio_queue.jobs where id = %s", (row[0],))
