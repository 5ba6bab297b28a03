"""Who is asking: sessions from the cookie or the bearer token, CSRF, roles, login.

``session_middleware`` resolves the session of every request (``request[SESSION]``, None
when anonymous) and refuses a state-changing request on a cookie session whose CSRF token
(header ``X-CSRF-Token`` or form field ``csrf_token``) is missing or wrong (403).
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import jinja2
from aiohttp import web

from center import auth
from center.store.db import writer
from center.store.queue import add_audit
from center.web.dbcall import run_db

if TYPE_CHECKING:
    from center.app import Center

__all__ = [
    "CENTER",
    "COOKIE",
    "SESSION",
    "TEMPLATES",
    "client_ip",
    "json_object",
    "login",
    "require",
    "session_middleware",
]

CENTER: web.AppKey[Center] = web.AppKey("center")
TEMPLATES = web.AppKey("templates", jinja2.Environment)
SESSION = "session"
COOKIE = "ecg_center_session"
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
_OPEN_PATHS = ("/login", "/api/login", "/healthz")


async def json_object(request: web.Request) -> dict[str, Any] | None:
    """The request's body as a JSON object; None when it is not JSON or not an object."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def client_ip(request: web.Request) -> str:
    """The client's address (the proxy's last X-Forwarded-For entry when trusted)."""
    center = request.app[CENTER]
    fwd = request.headers.get("X-Forwarded-For")
    if center.config.web.trust_forwarded_for and fwd:
        return fwd.split(",")[-1].strip()[:64]
    return (request.remote or "?")[:64]


def _token(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[7:].strip(), "bearer"
    cookie = request.cookies.get(COOKIE)
    return (cookie, "cookie") if cookie else None


async def _csrf_ok(request: web.Request, session: auth.Session) -> bool:
    sent = request.headers.get("X-CSRF-Token")
    if sent is None and request.content_type == "application/x-www-form-urlencoded":
        sent = (await request.post()).get("csrf_token")  # type: ignore[assignment]
    return isinstance(sent, str) and hmac.compare_digest(sent, session.csrf_token)


@web.middleware
async def session_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Attach the session; enforce CSRF on cookie sessions."""
    center = request.app[CENTER]
    request[SESSION] = None
    found = _token(request)
    if found is not None and not request.path.startswith("/static/"):
        token, kind = found
        request[SESSION] = await run_db(_resolve, center, token, kind)
    session = request[SESSION]
    if (session is not None and session.kind == "cookie" and request.method not in _SAFE_METHODS
            and request.path not in _OPEN_PATHS and not await _csrf_ok(request, session)):
        raise web.HTTPForbidden(text="CSRF token missing or wrong")
    return await handler(request)


def _resolve(center: Center, token: str, kind: str) -> auth.Session | None:
    """Read the session; write only to end an expired one or to record a use (at most
    every 15 s), so most requests never wait for the ingest's write transactions."""
    now = time.time()
    with center.engine.connect() as conn:
        stored = auth.read_session(conn, token, kind)
    if stored is None:
        return None
    verdict = stored.verdict(now, center.config.auth)
    if verdict != "ok":
        with writer(center.engine) as conn:
            if verdict == "expired":
                auth.delete_session(conn, stored.session.token_hash)
                return None
            auth.touch_session(conn, stored.session.token_hash, now)
    return stored.session


def require(request: web.Request, role: str | None = None) -> auth.Session:
    """The session, or 401 (API) / a redirect to the login page; 403 without the role."""
    session: auth.Session | None = request[SESSION]
    if session is None:
        if request.path.startswith("/api/"):
            raise web.HTTPUnauthorized(text='{"error": "login required"}',
                                       content_type="application/json")
        raise web.HTTPSeeOther("/login")
    if role == "supervisor" and not session.is_supervisor:
        raise web.HTTPForbidden(text="supervisors only")
    return session


def login(center: Center, name: str, password: str, ip: str, kind: str) -> tuple[str, str]:
    """Check the password and open a session: (token, csrf). AuthError / RateLimited,
    with the failure (rows and audit) committed."""
    now = time.time()
    with writer(center.engine) as conn:
        try:
            uid, _role = auth.authenticate(conn, name, password, ip, now, center.config.auth)
        except auth.AuthError as exc:
            action = "login_limited" if isinstance(exc, auth.RateLimited) else "login_failed"
            add_audit(conn, now, action, actor=name[:64], ip=ip)
            failure = exc
        else:
            add_audit(conn, now, "login", actor=name, ip=ip, detail={"kind": kind})
            return auth.create_session(conn, uid, kind, ip, now)
    raise failure
