"""Sign-in, sessions and CSRF for the dashboard.

The session is a cookie signed by Starlette's SessionMiddleware (itsdangerous), HttpOnly and
SameSite=strict. It holds the operator's name and a random CSRF token; every POST carries that
token in a form field and is refused (403) without it. Pages need a session: a browser asking for
HTML is sent to the sign-in form (303), anything else gets 401.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

CSRF_FIELD = "csrf_token"
# Paths served without a session: the sign-in form, its assets, and the autoscaler's endpoint
# (which checks its own token).
PUBLIC_PREFIXES = ("/login", "/static/", "/hirefire")


def check_password(accounts: dict[str, str], name: str, password: str) -> bool:
    """Constant-time check that does the same work whether or not ``name`` exists."""
    expected = accounts.get(name)
    ok = hmac.compare_digest(
        (expected if expected is not None else secrets.token_hex(16)).encode(), password.encode()
    )
    return ok and expected is not None


def csrf_token(request: Request) -> str:
    """This session's CSRF token (made on first use)."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def csrf_ok(request: Request, submitted: object) -> bool:
    token = request.session.get("csrf")
    return (
        isinstance(token, str)
        and isinstance(submitted, str)
        and hmac.compare_digest(token.encode(), submitted.encode())
    )


def current_user(request: Request) -> str | None:
    user = request.session.get("user")
    return user if isinstance(user, str) else None


def is_public(path: str) -> bool:
    return path == "/login" or path.startswith(PUBLIC_PREFIXES)


class RequireLogin:
    """ASGI middleware (inside SessionMiddleware): no session, no page."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if current_user(request) is None:
            response: Response
            wants_html = "text/html" in request.headers.get("accept", "")
            if request.method == "GET" and wants_html:
                response = RedirectResponse("/login", status_code=303)
            else:
                response = PlainTextResponse("sign in first", status_code=401)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


Endpoint = Callable[[Request], Awaitable[Response]]


def post_with_csrf(endpoint: Endpoint) -> Endpoint:
    """Wrap a POST endpoint: the form's csrf_token must match the session's, else 403."""

    async def checked(request: Request) -> Response:
        form = await request.form()
        if not csrf_ok(request, form.get(CSRF_FIELD)):
            return PlainTextResponse("bad or missing CSRF token", status_code=403)
        return await endpoint(request)

    checked.__name__ = endpoint.__name__
    checked.__doc__ = endpoint.__doc__
    return checked
