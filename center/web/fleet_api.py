"""Fleet operations over HTTP (issue #14): enrollment, and the gateway config editor.

- ``POST /api/enroll`` (no login: the one-time token or the current certificate is the
  credential) signs a gateway's CSR or renews its certificate (:mod:`center.enroll`); every
  issue and refusal is audited with the client address.
- ``GET /api/gateways/{gw}/config`` the versions and what the gateway reported;
  ``POST /api/gateways/{gw}/config`` (supervisors) saves and publishes the next version
  retained (:mod:`center.remote_config`); ``/gateway/{gw}/config`` is the editor page.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from center import remote_config as rc
from center.ca import CaError, load_ca
from center.enroll import EnrollRefused, enroll, renew
from center.store import schema as t
from center.store.db import writer
from center.store.queue import add_audit
from center.web.dbcall import run_db
from center.web.session import CENTER, client_ip, json_object, require

__all__ = ["routes"]

routes = web.RouteTableDef()


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def _issue(center: Any, body: dict[str, Any], ip: str) -> tuple[int, dict[str, Any]]:
    """Enroll (token) or renew (certificate + proof), audited; (HTTP status, answer)."""
    cfg = center.config.enroll
    now = time.time()
    try:
        ca = load_ca(cfg.ca_dir)
    except CaError as exc:
        return 503, {"error": f"enrollment is not available: {exc}"}
    csr = body.get("csr")
    try:
        if not isinstance(csr, str):
            raise EnrollRefused("csr (PEM text) is required", 400)
        with writer(center.engine) as conn:
            if "token" in body:
                if not isinstance(body["token"], str):
                    raise EnrollRefused("token must be text", 400)
                issued = enroll(conn, ca, body["token"], csr, days=cfg.cert_days, now=now)
                action = "enroll"
            else:
                cert, proof, signed_at = body.get("certificate"), body.get("proof"), \
                    body.get("signed_at")
                if not (isinstance(cert, str) and isinstance(proof, str)
                        and isinstance(signed_at, int)):
                    raise EnrollRefused("give a token, or certificate + proof + signed_at", 400)
                issued = renew(conn, ca, csr_pem=csr, cert_pem=cert, proof_b64=proof,
                               signed_at=signed_at, days=cfg.cert_days, now=now)
                action = "renew"
            add_audit(conn, now, action, ip=ip,
                      detail={"gateway": issued.gateway, "serial": issued.serial})
        return 200, issued.as_json(cfg.broker_url)
    except EnrollRefused as exc:
        with writer(center.engine) as conn:
            add_audit(conn, now, "enroll_refused", ip=ip, detail={"reason": str(exc)[:200]})
        return exc.status, {"error": str(exc)}


@routes.post("/api/enroll")
async def api_enroll(request: web.Request) -> web.Response:
    """A gateway's CSR signed (token) or its certificate renewed (proof of its current key)."""
    center = request.app[CENTER]
    if center.config.enroll.ca_dir is None:
        return _json({"error": "enrollment is off at this center ([enroll] ca_dir)"}, 503)
    body = await json_object(request)
    if body is None:
        return _json({"error": "expected a JSON object"}, 400)
    status, answer = await run_db(_issue, center, body, client_ip(request))
    return _json(answer, status)


@routes.get("/api/gateways/{gateway}/config")
async def api_config_get(request: web.Request) -> web.Response:
    """The gateway's configuration versions (newest first) and its own last report."""
    require(request)
    center, gw = request.app[CENTER], request.match_info["gateway"]

    def read() -> dict[str, Any]:
        with center.engine.connect() as conn:
            versions = rc.list_configs(conn, gw)
            health = conn.execute(sa.select(t.gateways.c.health)
                                  .where(t.gateways.c.gateway_id == gw)).scalar()
        reported = (json.loads(health) if health else {}).get("remote_config")
        return {"gateway": gw, "versions": versions, "reported": reported}

    return _json(await run_db(read))


@routes.post("/api/gateways/{gateway}/config")
async def api_config_post(request: web.Request) -> web.Response:
    """Supervisors: ``{"config": {...}}`` saved as the next version and published retained."""
    session = require(request, "supervisor")
    center, gw = request.app[CENTER], request.match_info["gateway"]
    body = await json_object(request)
    if body is None or "config" not in body:
        return _json({"error": 'expected {"config": {...}}'}, 400)

    def save() -> dict[str, Any]:
        now = time.time()
        with writer(center.engine) as conn:
            doc = rc.save_config(conn, gw, body["config"], by=session.user, now=now)
            add_audit(conn, now, "config_save", actor=session.user, ip=client_ip(request),
                      detail={"gateway": gw, "version": doc["version"]})
        return doc

    try:
        doc = await run_db(save)
    except rc.ConfigRefused as exc:
        return _json({"error": str(exc)}, 400)
    prefix = center.config.mqtt.topic_prefix
    payload = json.dumps(doc, separators=(",", ":")).encode()
    error = await asyncio.to_thread(rc.publish_retained, center.config.mqtt,
                                    f"{prefix}/{gw}/config", payload)

    def record() -> None:
        with writer(center.engine) as conn:
            rc.mark_sent(conn, gw, doc["version"], error, time.time())

    await run_db(record)
    return _json({"version": doc["version"], "published": error is None, "error": error},
                 200 if error is None else 502)


@routes.get("/gateway/{gateway}/config")
async def config_page(request: web.Request) -> web.Response:
    """The editor: the current version as JSON text, publish, and what the gateway said."""
    from center.web.pages import render

    require(request)
    return render(request, "gateway_config.html", gateway=request.match_info["gateway"])
