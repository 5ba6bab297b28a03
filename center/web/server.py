"""The aiohttp application: middlewares (security headers, sessions, CSRF), routes, start.

Pages and API share one session layer (``center.web.session``): a cookie for the console
(with a CSRF token checked on every state-changing request) or ``Authorization: Bearer``
for API clients (no cookie, so no CSRF).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING

import jinja2
from aiohttp import web

from center import __version__
from center.web import api, api_admin, certs_api, fleet_api, pages, studies
from center.web.session import CENTER, TEMPLATES, session_middleware

if TYPE_CHECKING:
    from center.app import Center

__all__ = ["build_app", "start_web"]

_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; media-src 'none'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'")


@web.middleware
async def security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """No caching of patient data, no framing, scripts and styles from us only."""
    resp = await handler(request)
    resp.headers.setdefault("Content-Security-Policy", _CSP)
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["X-Frame-Options"] = "DENY"
    if not request.path.startswith("/static/"):
        resp.headers["Cache-Control"] = "no-store"
    return resp


def build_app(center: Center) -> web.Application:
    """The application for one Center (its engine, hub and configuration)."""
    app = web.Application(middlewares=[security_headers, session_middleware],
                          client_max_size=64 * 1024)
    app[CENTER] = center
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("center.web", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    env.globals["version"] = __version__
    app[TEMPLATES] = env
    app.router.add_routes(api.routes)
    app.router.add_routes(api_admin.routes)
    app.router.add_routes(fleet_api.routes)  # enrollment, config editor (issue #14)
    app.router.add_routes(certs_api.routes)  # certificates, revocation (issue #14)
    app.router.add_routes(pages.routes)
    app.router.add_routes(studies.routes)  # long-term studies (issue #13)
    app.router.add_static("/static/", str(resources.files("center.web") / "static"))
    return app


async def start_web(center: Center) -> tuple[web.AppRunner, str]:
    """Listen on the configured HOST:PORT (port 0: a free one); (runner, base URL)."""
    cfg = center.config.web
    runner = web.AppRunner(build_app(center), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, cfg.host, cfg.port)
    await site.start()
    sock = site._server.sockets[0]  # type: ignore[union-attr]
    host, port = sock.getsockname()[:2]
    host = f"[{host}]" if ":" in host else host
    return runner, f"http://{host}:{port}"
