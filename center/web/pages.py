"""The console's HTML pages. They are shells: the rows, the strip and the fleet are drawn
by the page's script from the JSON API, so the page and the API show the same thing.
The first page of the queue comes embedded in the page (no second round trip)."""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from center import auth
from center.store import queue as q
from center.store.db import writer
from center.web.api import parse_filter
from center.web.dbcall import run_db
from center.web.session import CENTER, COOKIE, SESSION, TEMPLATES, client_ip, login, require

__all__ = ["routes"]

routes = web.RouteTableDef()


def render(request: web.Request, name: str, status: int = 200, **ctx: Any) -> web.Response:
    """A template with the common context (user, CSRF token, calibration)."""
    session: auth.Session | None = request[SESSION]
    center = request.app[CENTER]
    html = request.app[TEMPLATES].get_template(name).render(
        session=session, csrf=session.csrf_token if session else "",
        px_per_mm=center.config.web.px_per_mm,
        escalate_after_s=center.config.escalation.escalate_after_s, **ctx)
    return web.Response(text=html, content_type="text/html", status=status)


@routes.get("/login")
async def login_page(request: web.Request) -> web.Response:
    return render(request, "login.html", error=None)


@routes.post("/login")
async def login_submit(request: web.Request) -> web.Response:
    form = await request.post()
    name, password = str(form.get("user", "")), str(form.get("password", ""))
    center = request.app[CENTER]
    try:
        token, _csrf = await run_db(login, center, name, password, client_ip(request), "cookie")
    except auth.RateLimited:
        return render(request, "login.html", 429,
                      error="Too many failed logins. Wait a few minutes, or ask a supervisor.")
    except auth.AuthError:
        return render(request, "login.html", 401, error="Wrong user name or password.")
    resp = web.HTTPSeeOther("/")
    resp.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/",
                    secure=center.config.auth.cookie_secure,
                    max_age=int(center.config.auth.session_max_s))
    raise resp


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    session = require(request)
    center = request.app[CENTER]

    def out() -> None:
        with writer(center.engine) as conn:
            auth.delete_session(conn, session.token_hash)
            q.add_audit(conn, time.time(), "logout", actor=session.user, ip=client_ip(request))

    await run_db(out)
    resp = web.HTTPSeeOther("/login")
    resp.del_cookie(COOKIE, path="/")
    raise resp


@routes.get("/")
async def queue_page(request: web.Request) -> web.Response:
    """The queue: open items, most urgent first; the first page embedded."""
    require(request)
    center = request.app[CENTER]
    per_page = center.config.web.page_size

    def read() -> tuple[list[dict], int, dict[str, int]]:
        with center.engine.connect() as conn:
            rows, total = q.list_events(conn, q.EventFilter(state="open"), limit=per_page)
            return rows, total, q.queue_summary(conn)

    rows, total, summary = await run_db(read)
    now = time.time()
    initial = {"events": [q.row_to_api(r, now) for r in rows], "total": total,
               "summary": summary, "per_page": per_page}
    safe = json.dumps(initial).replace("<", "\\u003c")  # no "</script>" inside the island
    return render(request, "queue.html", initial=safe, summary=summary)


@routes.get("/strip/{msg_id}")
async def strip_page(request: web.Request) -> web.Response:
    """The strip viewer of one item (the view is audited)."""
    session = require(request)
    center = request.app[CENTER]
    msg_id = request.match_info["msg_id"]

    def read() -> dict[str, Any]:
        with writer(center.engine) as conn:
            row = q.get_event(conn, msg_id)
            q.add_audit(conn, time.time(), "view", actor=session.user, msg_id=msg_id,
                        ip=client_ip(request))
            return row

    try:
        row = await run_db(read)
    except q.NotFound:
        raise web.HTTPNotFound(text="no such strip or event") from None
    return render(request, "strip.html", item=q.row_to_api(row, time.time()),
                  msg_id=msg_id)


@routes.get("/device/{gateway}/{device}")
async def device_page(request: web.Request) -> web.Response:
    require(request)
    return render(request, "device.html", gateway=request.match_info["gateway"],
                  device=request.match_info["device"])


@routes.get("/fleet")
async def fleet_page(request: web.Request) -> web.Response:
    require(request)
    return render(request, "fleet.html")


@routes.get("/search")
async def search_page(request: web.Request) -> web.Response:
    require(request)
    parse_filter(request)  # 400 on bad filters before the page loads
    return render(request, "search.html")


@routes.get("/users")
async def users_page(request: web.Request) -> web.Response:
    require(request, "supervisor")
    return render(request, "users.html")
