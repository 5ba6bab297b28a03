"""The JSON API (the console's pages use it too). Documented in docs/center.md."""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from center import __version__, auth
from center.store import queue as q
from center.store import schema as t
from center.store.db import writer
from center.timefmt import parse_iso
from center.web.dbcall import run_db
from center.web.ecg import ecg_view
from center.web.session import CENTER, client_ip, login, require

__all__ = ["parse_filter", "routes"]

routes = web.RouteTableDef()

MAX_NOTE_CHARS = 2000
MAX_PER_PAGE = 500


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers,
                             dumps=lambda o: json.dumps(o, separators=(",", ":")))


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text='{"error": "body is not JSON"}',
                                 content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='{"error": "expected an object"}',
                                 content_type="application/json")
    return body


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """No login: database reachable, broker connected, ingest backlog."""
    center = request.app[CENTER]

    def ping() -> bool:
        try:
            with center.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except sa.exc.SQLAlchemyError:
            return False

    db_ok = await run_db(ping)
    link = center.link
    broker_ok = link is not None and link.connected.is_set()
    st = center.ingest.stats if center.ingest else None
    body = {"status": "ok" if db_ok and broker_ok else "degraded", "db": db_ok,
            "broker": broker_ok, "subscribed": link is not None and link.subscribed.is_set(),
            "version": __version__,
            "ingest": None if st is None else {
                "received": st.received, "stored": st.stored, "duplicates": st.duplicates,
                "rejected": st.rejected, "batches": st.batches, "db_errors": st.db_errors,
                "backlog": center.ingest.backlog}}
    return _json(body, status=200 if db_ok else 503)


@routes.post("/api/login")
async def api_login(request: web.Request) -> web.Response:
    body = await _body(request)
    name, password = body.get("user"), body.get("password")
    if not isinstance(name, str) or not isinstance(password, str):
        return _json({"error": "user and password are required"}, 400)
    try:
        token, _csrf = await run_db(login, request.app[CENTER], name, password,
                                    client_ip(request), "bearer")
    except auth.RateLimited as exc:
        return _json({"error": str(exc)}, 429, {"Retry-After": "60"})
    except auth.AuthError as exc:
        return _json({"error": str(exc)}, 401)
    return _json({"token": token})


@routes.post("/api/logout")
async def api_logout(request: web.Request) -> web.Response:
    session = require(request)
    center = request.app[CENTER]

    def out() -> None:
        with writer(center.engine) as conn:
            auth.delete_session(conn, session.token_hash)
            q.add_audit(conn, time.time(), "logout", actor=session.user, ip=client_ip(request))

    await run_db(out)
    return _json({"ok": True})


def _time_param(request: web.Request, key: str) -> float | None:
    value = request.query.get(key)
    if not value:
        return None
    try:
        return parse_iso(value)
    except ValueError:
        raise web.HTTPBadRequest(text=f'{{"error": "{key} is not an ISO-8601 time"}}',
                                 content_type="application/json") from None


def parse_filter(request: web.Request) -> q.EventFilter:
    """The event filters of a request's query string."""
    qs = request.query
    state = qs.get("state", "open")
    if state not in ("open", "acknowledged", "all"):
        raise web.HTTPBadRequest(text='{"error": "state is open, acknowledged or all"}',
                                 content_type="application/json")
    esc = qs.get("escalated")
    return q.EventFilter(state=state, gateway=qs.get("gateway") or None,
                         device=qs.get("device") or None, trigger=qs.get("trigger") or None,
                         kind=qs.get("kind") or None, since=_time_param(request, "since"),
                         until=_time_param(request, "until"),
                         escalated=None if esc in (None, "") else esc in ("1", "true"))


def _page(request: web.Request) -> tuple[int, int]:
    try:
        page = max(1, int(request.query.get("page", "1")))
        default = request.app[CENTER].config.web.page_size
        per_page = min(MAX_PER_PAGE, max(1, int(request.query.get("per_page", default))))
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": "page and per_page are integers"}',
                                 content_type="application/json") from None
    return page, per_page


@routes.get("/api/events")
async def api_events(request: web.Request) -> web.Response:
    """A page of items (a JSON list); the total in ``X-Total-Count``."""
    require(request)
    center = request.app[CENTER]
    f = parse_filter(request)
    page, per_page = _page(request)

    def read() -> tuple[list[dict], int]:
        with center.engine.connect() as conn:
            return q.list_events(conn, f, limit=per_page, offset=(page - 1) * per_page)

    rows, total = await run_db(read)
    now = time.time()
    return _json([q.row_to_api(r, now) for r in rows],
                 headers={"X-Total-Count": str(total), "X-Page": str(page),
                          "X-Per-Page": str(per_page)})


def _detail(center: Any, msg_id: str, user: str, ip: str) -> dict[str, Any]:
    now = time.time()
    with writer(center.engine) as conn:
        row = q.get_event(conn, msg_id)
        q.add_audit(conn, now, "view", actor=user, msg_id=msg_id, ip=ip)
        trail = q.audit_for(conn, msg_id)
    out = q.row_to_api(row, now)
    out["note"] = row["ack_note"]
    out["payload"] = json.loads(row["payload"])
    out["audit"] = trail
    return out


@routes.get("/api/events/{msg_id}")
async def api_event(request: web.Request) -> web.Response:
    """One item with its full payload (the FHIR Observation) and audit trail; audited."""
    session = require(request)
    try:
        out = await run_db(_detail, request.app[CENTER], request.match_info["msg_id"],
                           session.user, client_ip(request))
    except q.NotFound:
        return _json({"error": "no such msg_id"}, 404)
    return _json(out)


@routes.get("/api/events/{msg_id}/ecg")
async def api_event_ecg(request: web.Request) -> web.Response:
    """The samples decoded for drawing: leads, µV (null = gap), beats, press, window."""
    require(request)
    center = request.app[CENTER]

    def read() -> dict[str, Any]:
        with center.engine.connect() as conn:
            return q.get_event(conn, request.match_info["msg_id"])

    try:
        row = await run_db(read)
    except q.NotFound:
        return _json({"error": "no such msg_id"}, 404)
    return _json(ecg_view(json.loads(row["payload"])))


@routes.post("/api/events/{msg_id}/ack")
async def api_ack(request: web.Request) -> web.Response:
    """Acknowledge with an optional note: 200 the item, 404, 409 when already acknowledged."""
    session = require(request)
    body = await _body(request) if request.can_read_body else {}
    note = body.get("note") or ""
    if not isinstance(note, str) or len(note) > MAX_NOTE_CHARS:
        return _json({"error": f"note is text of at most {MAX_NOTE_CHARS} characters"}, 400)
    center = request.app[CENTER]
    msg_id = request.match_info["msg_id"]

    def ack() -> dict[str, Any]:
        with writer(center.engine) as conn:
            return q.acknowledge(conn, msg_id, session.user, note.strip(), time.time(),
                                 prefix=center.config.mqtt.topic_prefix, ip=client_ip(request))

    try:
        row = await run_db(ack)
    except q.NotFound:
        return _json({"error": "no such msg_id"}, 404)
    except q.AlreadyAcknowledged as exc:
        r = q.row_to_api(exc.row, time.time())
        return _json({"error": "already acknowledged", "acknowledged_by": r["acknowledged_by"],
                      "acknowledged_at": r["acknowledged_at"]}, 409)
    center.ack_sent_wake()
    if center.hub is not None:
        center.hub.poke()
    return _json(q.row_to_api(row, time.time()))


@routes.get("/api/summary")
async def api_summary(request: web.Request) -> web.Response:
    """Queue counts, ingest counters and this process's state (the console's header)."""
    require(request)
    center = request.app[CENTER]

    def read() -> dict[str, Any]:
        with center.engine.connect() as conn:
            counters = dict(conn.execute(sa.select(t.counters.c.name, t.counters.c.value)).all())
            return {"queue": q.queue_summary(conn), "counters": counters}

    out = await run_db(read)
    out["broker_connected"] = center.link is not None and center.link.connected.is_set()
    out["escalate_after_s"] = center.config.escalation.escalate_after_s
    out["version"] = center.hub.version if center.hub else 0
    return _json(out)


@routes.get("/api/events/{msg_id}/audit")
async def api_event_audit(request: web.Request) -> web.Response:
    """The audit trail of one item (reading it is not itself audited)."""
    require(request)
    center = request.app[CENTER]

    def read() -> list[dict[str, Any]]:
        with center.engine.connect() as conn:
            q.get_event(conn, request.match_info["msg_id"])
            return q.audit_for(conn, request.match_info["msg_id"])

    try:
        return _json(await run_db(read))
    except q.NotFound:
        return _json({"error": "no such msg_id"}, 404)
