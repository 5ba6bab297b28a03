"""The JSON API, part two: fleet, device timeline, users (supervisors) and the SSE stream."""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from center import auth
from center.store import fleet
from center.store.db import writer
from center.store.queue import add_audit
from center.timefmt import parse_iso
from center.web.dbcall import run_db
from center.web.session import CENTER, client_ip, require

__all__ = ["routes"]

routes = web.RouteTableDef()

SSE_HEARTBEAT_S = 15.0
"""A comment line this often keeps proxies from closing an idle stream, s."""


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


@routes.get("/api/gateways")
async def api_gateways(request: web.Request) -> web.Response:
    """Every gateway: online/offline, last seen, outbox backlog, devices and coverage."""
    require(request)
    center = request.app[CENTER]

    def read() -> list[dict[str, Any]]:
        warn = center.config.enroll  # warning thresholds (issue #14)
        with center.engine.connect() as conn:
            return fleet.list_gateways(conn, time.time(), cert_days=warn.warn_cert_days,
                                       battery_pct=warn.warn_battery_pct)

    return _json(await run_db(read))


@routes.get("/api/devices/{gateway}/{device}/timeline")
async def api_timeline(request: web.Request) -> web.Response:
    """A device's timeline between ``since`` and ``until`` (ISO-8601; default last 24 h)."""
    require(request)
    center = request.app[CENTER]
    now = time.time()
    try:
        until = parse_iso(request.query["until"]) if request.query.get("until") else now + 60
        since = parse_iso(request.query["since"]) if request.query.get("since") else now - 86400
    except ValueError:
        return _json({"error": "since and until are ISO-8601 times"}, 400)
    gw, dev = request.match_info["gateway"], request.match_info["device"]

    def read() -> list[dict[str, Any]]:
        with center.engine.connect() as conn:
            return fleet.device_timeline(conn, gw, dev, since, until)

    return _json(await run_db(read))


@routes.get("/api/users")
async def api_users(request: web.Request) -> web.Response:
    require(request, "supervisor")
    center = request.app[CENTER]

    def read() -> list[dict[str, Any]]:
        with center.engine.connect() as conn:
            return auth.list_users(conn)

    return _json([{"name": u["name"], "role": u["role"], "disabled": u["disabled_at"] is not None}
                  for u in await run_db(read)])


@routes.post("/api/users")
async def api_user_add(request: web.Request) -> web.Response:
    """Supervisors add users: {"name", "role", "password"}."""
    session = require(request, "supervisor")
    center = request.app[CENTER]
    try:
        body = await request.json()
        name, role, password = body["name"], body["role"], body["password"]
    except (ValueError, KeyError, TypeError):
        return _json({"error": "name, role and password are required"}, 400)

    def add() -> None:
        now = time.time()
        with writer(center.engine) as conn:
            auth.add_user(conn, str(name), str(role), str(password), now)
            add_audit(conn, now, "user_add", actor=session.user, ip=client_ip(request),
                      detail={"user": name, "role": role})

    try:
        await run_db(add)
    except auth.AuthError as exc:
        return _json({"error": str(exc)}, 400)
    return _json({"name": name, "role": role}, 201)


async def _set_disabled(request: web.Request, disabled: bool) -> web.Response:
    session = require(request, "supervisor")
    center = request.app[CENTER]
    name = request.match_info["name"]

    def change() -> bool:
        now = time.time()
        with writer(center.engine) as conn:
            found = auth.set_disabled(conn, name, disabled, now)
            if found:
                add_audit(conn, now, "user_disable" if disabled else "user_enable",
                          actor=session.user, ip=client_ip(request), detail={"user": name})
            return found

    if not await run_db(change):
        return _json({"error": "no such user"}, 404)
    return _json({"name": name, "disabled": disabled})


@routes.post("/api/users/{name}/disable")
async def api_user_disable(request: web.Request) -> web.Response:
    return await _set_disabled(request, True)


@routes.post("/api/users/{name}/enable")
async def api_user_enable(request: web.Request) -> web.Response:
    return await _set_disabled(request, False)


@routes.get("/api/stream")
async def api_stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``change`` with the hub's version whenever something changed."""
    require(request)
    hub = request.app[CENTER].hub
    assert hub is not None
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                       "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    seen = hub.version
    await resp.write(f"retry: 2000\nevent: change\ndata: {json.dumps({'version': seen})}\n\n"
                     .encode())
    try:
        while True:
            version = await hub.wait(seen, SSE_HEARTBEAT_S)
            if version == seen:
                await resp.write(b": keep-alive\n\n")
                continue
            seen = version
            await resp.write(f"event: change\ndata: {json.dumps({'version': seen})}\n\n"
                             .encode())
    except ConnectionResetError:
        pass  # the page went away
    return resp
