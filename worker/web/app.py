"""The operator dashboard: an ASGI app (Starlette + Jinja2) over the queue's SQL functions.

Pages read through the ``dashboard_*`` functions (migration 0010); actions go through the
runbook's functions with the operator's name recorded. Every page passes through the same secret
masking as the logs, and the autoscaler's JSON is served at ``/hirefire/<token>/info``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from loguru import logger
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from worker.logs import redact
from worker.queue.db.connect import ConnectionPlan
from worker.storage.client import Storage
from worker.web.auth import (
    CSRF_FIELD,
    RequireLogin,
    check_password,
    csrf_ok,
    csrf_token,
    current_user,
    post_with_csrf,
)
from worker.web.charts import throughput_chart
from worker.web.db import DashboardDB
from worker.web.mask import mask, mask_text
from worker.web.settings import DashboardSettings
from worker.web.waveform import Waveforms

HERE = Path(__file__).parent
STATUSES = ("pending", "processing", "completed", "failed", "cancelled")
# 'queued' is an alias of 'pending' (migration 0001): the filter 'pending' lists both (0020).
STATUS_ALIASES = {"queued": "pending"}
PAGE_SIZE = 50
CHART_MINUTES = 180
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    # Scripts and styles from this app only; audio from the storage's signed URLs.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; media-src 'self' https: http:; "
    "style-src 'self'; script-src 'self'; form-action 'self'; frame-ancestors 'none'",
}


class Dashboard:
    """The app's state: settings, database, storage (None when not configured) and templates."""

    def __init__(
        self, settings: DashboardSettings, plan: ConnectionPlan, storage: Storage | None, waveforms: Waveforms
    ) -> None:
        self.settings = settings
        self.accounts = settings.accounts()
        if not self.accounts:
            raise ValueError("set DASHBOARD_PASSWORD or DASHBOARD_ACCOUNTS: the dashboard never runs open")
        self.db = DashboardDB(plan)
        self.storage = storage
        self.waveforms = waveforms
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(), auto_reload=False
        )
        self.templates.filters["age"] = human_age
        self.templates.filters["ts"] = timestamp

    # -- rendering -----------------------------------------------------------------------------

    def page(self, request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
        """A template rendered with the operator, CSRF token and flash; known secrets masked."""
        html = self.templates.get_template(name).render(
            request=request,
            user=current_user(request),
            csrf_field=CSRF_FIELD,
            csrf=csrf_token(request),
            flash=request.session.pop("flash", None),
            **context,
        )
        return HTMLResponse(redact(html), status_code=status_code, headers=SECURITY_HEADERS)

    # -- pages ---------------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        if current_user(request):
            return RedirectResponse("/", status_code=303)
        return self.page(request, "login.html", error=None)

    async def login(self, request: Request) -> Response:
        form = await request.form()
        if not csrf_ok(request, form.get(CSRF_FIELD)):
            return PlainTextResponse("bad or missing CSRF token (reload the page)", status_code=403)
        name, password = str(form.get("username", "")), str(form.get("password", ""))
        if not check_password(self.accounts, name, password):
            logger.warning("dashboard: failed sign-in for {!r} from {}", name[:64], client_of(request))
            await asyncio.sleep(0.5)  # slows guessing
            return self.page(request, "login.html", status_code=401, error="wrong name or password")
        request.session.clear()
        request.session["user"] = name
        request.session["csrf"] = secrets.token_urlsafe(32)  # a fresh token for the new session
        logger.info("dashboard: {} signed in from {}", name, client_of(request))
        return RedirectResponse("/", status_code=303)

    async def logout(self, request: Request) -> Response:
        logger.info("dashboard: {} signed out", current_user(request))
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    async def overview(self, request: Request) -> Response:
        return self.page(request, "overview.html", **await self._overview_data())

    async def overview_live(self, request: Request) -> Response:
        """The overview's changing part (counts, running jobs, workers); the page polls it."""
        return self.page(request, "_live.html", **await self._overview_data())

    async def _overview_data(self) -> dict[str, Any]:
        overview, running, workers, throughput = await asyncio.gather(
            self.db.row("overview"),
            self.db.rows("running", {"limit": 100}),
            self.db.rows("workers", {"window": timedelta(hours=1)}),
            self.db.rows("throughput", {"minutes": CHART_MINUTES}),
        )
        now = datetime.now(UTC)
        return {
            "o": overview or {},
            "running": running,
            "workers": workers,
            "chart": throughput_chart(throughput, now, CHART_MINUTES),
            "now": now,
        }

    async def jobs(self, request: Request) -> Response:
        q = request.query_params
        status = STATUS_ALIASES.get(q.get("status", ""), q.get("status"))
        filters: dict[str, Any] = {
            "status": status if status in STATUSES else None,
            "user_id": parse_uuid(q.get("user")),
            "track_id": parse_uuid(q.get("track")),
            "created_from": parse_date(q.get("from")),
            "created_to": parse_date(q.get("to"), end_of_day=True),
            "error": (q.get("error") or "").strip()[:200] or None,
        }
        after = q.get("after", "")
        after_created, _, after_id = after.partition("_")
        params = {
            **filters,
            "after_created": parse_datetime(after_created),
            "after_id": parse_uuid(after_id),
            "limit": PAGE_SIZE + 1,
        }
        rows = await self.db.rows("jobs", params)
        more = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        for r in rows:
            r["error"] = mask_text(r["error"]) if r["error"] else None
        next_after = f"{rows[-1]['created_at'].isoformat()}_{rows[-1]['id']}" if more and rows else None
        keep = {k: v for k, v in q.items() if k != "after" and v}
        if filters["status"]:
            keep["status"] = filters["status"]
        return self.page(
            request,
            "jobs.html",
            rows=rows,
            statuses=STATUSES,
            q=keep,
            next_query={**keep, "after": next_after} if next_after else None,
            first_page=not after,
        )

    async def job(self, request: Request) -> Response:
        job_id = parse_uuid(request.path_params["job_id"])
        job = await self.db.row("job", {"job_id": job_id}) if job_id else None
        if job is None:
            return self.page(request, "missing.html", status_code=404, what="job")
        events = await self.db.rows("job_events", {"job_id": job_id})
        for e in events:
            e["detail"] = mask_text(e["detail"]) if e["detail"] else None
        result = job["result"] if isinstance(job["result"], dict) else None
        waveform = await self.waveforms.of(result)
        return self.page(
            request,
            "job.html",
            job=job,
            events=events,
            payload=pretty(mask(job["payload"])),
            result=pretty(mask(result)) if result is not None else None,
            error=mask_text(job["error_message"]) if job["error_message"] else None,
            last_error=mask_text(job["last_error"]) if job["last_error"] else None,
            preview_url=self._preview_url(result),
            loudness=result.get("loudness") if result and isinstance(result.get("loudness"), dict) else None,
            duration_s=result.get("duration_s") if result else None,
            waveform=waveform.path,
            waveform_note=waveform.note,
        )

    def _preview_url(self, result: dict[str, Any] | None) -> str | None:
        """A fresh signed URL of the job's MP3 preview, or None (no preview or no storage)."""
        preview = result.get("preview") if result else None
        if self.storage is None or not isinstance(preview, dict):
            return None
        bucket, key = preview.get("bucket"), preview.get("key")
        if not isinstance(bucket, str) or not isinstance(key, str):
            return None
        return self.storage.signed_url(bucket, key, self.settings.dashboard_preview_url_ttl_s)

    # -- actions (POST, CSRF-checked) ----------------------------------------------------------

    async def _act(
        self, request: Request, what: str, name: str, params: dict[str, Any], back: str
    ) -> Response:
        user = current_user(request) or "?"
        value = await self.db.action(name, params, actor=user)
        logger.info("dashboard: {} {} -> {}", user, what, value)
        request.session["flash"] = f"{what}: {describe(name, value)}"
        return RedirectResponse(back, status_code=303)

    async def cancel(self, request: Request) -> Response:
        job_id = parse_uuid(request.path_params["job_id"])
        if job_id is None:
            return PlainTextResponse("no such job", status_code=404)
        return await self._act(
            request, f"cancel job {job_id}", "cancel_job", {"job_id": job_id}, f"/jobs/{job_id}"
        )

    async def requeue(self, request: Request) -> Response:
        job_id = parse_uuid(request.path_params["job_id"])
        if job_id is None:
            return PlainTextResponse("no such job", status_code=404)
        return await self._act(
            request, f"requeue job {job_id}", "requeue_job", {"job_id": job_id}, f"/jobs/{job_id}"
        )

    async def requeue_failed(self, request: Request) -> Response:
        hours = form_number(await request.form(), "hours", default=24, lo=1, hi=24 * 90)
        return await self._act(
            request, f"requeue jobs failed in the last {hours:g} h", "requeue_failed",
            {"since": timedelta(hours=hours)}, "/",
        )  # fmt: skip

    async def reset_stuck(self, request: Request) -> Response:
        minutes = form_number(await request.form(), "minutes", default=10, lo=1, hi=24 * 60)
        return await self._act(
            request, f"reset jobs stuck for {minutes:g} min", "reset_stuck_jobs",
            {"stale_after": timedelta(minutes=minutes)}, "/",
        )  # fmt: skip

    async def purge(self, request: Request) -> Response:
        days = form_number(await request.form(), "days", default=30, lo=1, hi=3650)
        return await self._act(
            request, f"purge jobs finished more than {days:g} days ago", "purge_finished_jobs",
            {"older_than": timedelta(days=days)}, "/",
        )  # fmt: skip

    # -- autoscaling ---------------------------------------------------------------------------

    async def hirefire_info(self, request: Request) -> Response:
        """HireFire's worker info: ``[{"name": "worker", "value": N}]``; 404 unless the token matches."""
        token = self.settings.hirefire_token
        given = request.path_params.get("token") or request.headers.get("hirefire-token") or ""
        if token is None or not hmac.compare_digest(token.get_secret_value().encode(), given.encode()):
            return PlainTextResponse("not found", status_code=404)
        signal = await self.db.row("autoscale_signal") or {}
        if self.settings.hirefire_metric == "job_queue_latency":
            value: float | int = round(float(signal.get("job_queue_latency_s") or 0), 3)
        else:
            value = int(signal.get("job_queue_size") or 0)
        return JSONResponse(
            [{"name": "worker", "value": value}],
            headers={"Cache-Control": "must-revalidate, private, max-age=0"},
        )


# -- small helpers -----------------------------------------------------------------------------


def client_of(request: Request) -> str:
    forwarded = request.headers.get("x-forwarded-for", "").split(",")[0].strip()
    return forwarded or (request.client.host if request.client else "?")


def parse_uuid(text: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(text) if text else None
    except ValueError:
        return None


def parse_datetime(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def parse_date(text: str | None, end_of_day: bool = False) -> datetime | None:
    """``2026-12-01`` (UTC midnight; the next midnight with ``end_of_day``) or a full timestamp."""
    value = parse_datetime(text)
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if end_of_day and text and len(text) == 10:
        value += timedelta(days=1)
    return value


def form_number(form: Any, name: str, default: float, lo: float, hi: float) -> float:
    try:
        value = float(form.get(name) or default)
    except ValueError:
        value = default
    return min(max(value, lo), hi)


def describe(name: str, value: Any) -> str:
    if name == "cancel_job":
        return "done" if value else "nothing to cancel (the job has already ended)"
    if name == "requeue_job":
        return "queued again" if value else "not requeued (only failed or cancelled jobs are)"
    return f"{value} job(s)"


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def human_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = float(seconds)
    if s < 0:
        return f"in {human_age(-s)}"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def timestamp(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# -- the app -----------------------------------------------------------------------------------


def create_app(
    settings: DashboardSettings,
    plan: ConnectionPlan,
    storage: Storage | None,
    *,
    https_only: bool = False,
    ffmpeg_path: str = "ffmpeg",
    ffprobe_path: str = "ffprobe",
) -> Starlette:
    """The ASGI app. Refuses (ValueError) to build without an account. ``https_only``: the session
    cookie is Secure (behind Heroku's router, which terminates TLS). The ffmpeg and ffprobe paths
    measure waveforms of previews (FFMPEG_PATH, FFPROBE_PATH)."""
    d = Dashboard(settings, plan, storage, Waveforms(storage, ffmpeg=ffmpeg_path, ffprobe=ffprobe_path))

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await d.db.open()
        try:
            yield
        finally:
            await d.db.close()

    routes = [
        Route("/", d.overview, methods=["GET"]),
        Route("/live", d.overview_live, methods=["GET"]),
        Route("/jobs", d.jobs, methods=["GET"]),
        Route("/jobs/{job_id}", d.job, methods=["GET"]),
        Route("/jobs/{job_id}/cancel", post_with_csrf(d.cancel), methods=["POST"]),
        Route("/jobs/{job_id}/requeue", post_with_csrf(d.requeue), methods=["POST"]),
        Route("/actions/requeue-failed", post_with_csrf(d.requeue_failed), methods=["POST"]),
        Route("/actions/reset-stuck", post_with_csrf(d.reset_stuck), methods=["POST"]),
        Route("/actions/purge", post_with_csrf(d.purge), methods=["POST"]),
        Route("/login", d.login_form, methods=["GET"]),
        Route("/login", d.login, methods=["POST"]),
        Route("/logout", post_with_csrf(d.logout), methods=["POST"]),
        Route("/hirefire/{token}/info", d.hirefire_info, methods=["GET"]),
        Route("/hirefire", d.hirefire_info, methods=["GET"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    secret = settings.dashboard_session_secret
    middleware = [
        Middleware(
            SessionMiddleware,
            secret_key=secret.get_secret_value() if secret else secrets.token_urlsafe(32),
            session_cookie="audio_worker_dashboard",
            max_age=int(settings.dashboard_session_hours * 3600),
            same_site="strict",
            https_only=https_only,
        ),
        Middleware(RequireLogin),
    ]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
