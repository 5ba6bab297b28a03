"""A gateway's certificates over HTTP (issue #14): list them, and revoke a lost Pi's.

- ``GET /api/gateways/{gw}/certificates``: every certificate issued to the gateway (serial,
  kind, issued, expiry, revoked), newest first, and whether this center can revoke (a CA
  directory is configured).
- ``POST /api/gateways/{gw}/revoke`` (supervisors; body ``{"confirm": gw}``, the gateway id
  typed again): every unrevoked certificate revoked, renewal refused from then on, the
  CRL rewritten (:func:`center.revoke.revoke_and_publish`), audited as ``cert_revoke``. The
  broker applies the CRL when it reloads (docs/broker.md): the answer says so.

The page is the gateway's configuration page (``/gateway/{gw}/config``).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from center.ca import CaError
from center.revoke import certificates_of, revoke_and_publish
from center.timefmt import iso
from center.web.dbcall import run_db
from center.web.session import CENTER, client_ip, json_object, require

__all__ = ["routes"]

routes = web.RouteTableDef()

RELOAD_HINT = "reload the broker to apply the CRL (systemctl reload mosquitto; docs/broker.md)"


@routes.get("/api/gateways/{gateway}/certificates")
async def api_certificates(request: web.Request) -> web.Response:
    require(request)
    center = request.app[CENTER]
    gw = request.match_info["gateway"]

    def read() -> list[dict[str, Any]]:
        with center.engine.connect() as conn:
            return certificates_of(conn, gw)

    times = ("issued_at", "not_after", "revoked_at")
    certs = [{**c, **{k: iso(c[k]) for k in times}} for c in await run_db(read)]
    can = center.config.enroll.ca_dir is not None
    return web.json_response({"gateway": gw, "certificates": certs, "can_revoke": can})


@routes.post("/api/gateways/{gateway}/revoke")
async def api_revoke(request: web.Request) -> web.Response:
    session = require(request, "supervisor")
    center = request.app[CENTER]
    gw = request.match_info["gateway"]
    body = await json_object(request)
    if body is None or body.get("confirm") != gw:
        return web.json_response({"error": f"type the gateway id ({gw}) to confirm"}, status=400)
    directory = center.config.enroll.ca_dir
    if directory is None:
        return web.json_response(
            {"error": "this center has no CA ([enroll] ca_dir): revoke where the CA is"},
            status=409,
        )

    def revoke() -> tuple[list[str], str]:
        serials, path = revoke_and_publish(
            center.engine, gw, directory, time.time(), actor=session.user, ip=client_ip(request)
        )
        return serials, str(path)

    try:
        serials, crl = await run_db(revoke)
    except CaError as exc:
        return web.json_response({"error": f"CRL not written: {exc}"}, status=500)
    return web.json_response(
        {"gateway": gw, "revoked": serials, "crl": crl, "next": RELOAD_HINT}
    )
