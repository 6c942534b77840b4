"""The status page's routes, the JSON API, the metrics page and the guarded actions.

Routes (everything else is 404; a known path with the wrong method is 405):

    GET/HEAD  /                  the status page (HTML, live-updating)
    GET/HEAD  /fragment/main     the page's <main> alone (the script swaps it in)
    GET/HEAD  /api/status        the snapshot as JSON (router/web/SCHEMA.md)
    GET/HEAD  /api/series        the plot series as JSON
    GET/HEAD  /metrics           Prometheus text format
    GET/HEAD  /healthz           "ok"
    POST      /api/action/NAME   uplink_prefer {"name": ...} | reconnect {}

Actions are the only way to change anything, and three checks guard them, in this order:
1. not cross-site: ``Sec-Fetch-Site`` (when sent) must be same-origin or none, and ``Origin``
   (when sent) must be this server's own origin -> else 403;
2. ``Authorization: Bearer <token>`` matching the configured token (compared in constant
   time, on digests so not even the length leaks) -> else 401; no token configured -> 403;
3. ``Content-Type: application/json`` -> else 415. A cross-site HTML form can send none of
   these headers, and a cross-site ``fetch`` that tries triggers a CORS preflight (OPTIONS),
   which this server refuses.
The token is never echoed, logged, or put in a page.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Collection
from typing import Any

from router.web import metrics, page
from router.web.schema import normalise, sanitise
from router.web.server import HttpError, HttpServer, Limits, Request, Response, printable
from router.web.source import ACTIONS, StatusSource

log = logging.getLogger(__name__)

JSON_TYPE = "application/json; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"
ACTION_PREFIX = "/api/action/"

_READ_ROUTES = ("/", "/index.html", "/fragment/main", "/api/status", "/api/series", "/metrics",
                "/healthz", "/favicon.ico")


def json_bytes(value: Any) -> bytes:
    return json.dumps(sanitise(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(b"router-web-token:" + token).digest()


def _json_response(status: int, value: Any) -> Response:
    return Response(status, json_bytes(value), JSON_TYPE)


class WebApp:
    """The application behind :class:`HttpServer`: routing, rendering, the action guard."""

    def __init__(self, source: StatusSource, *, token: bytes | str | None = None,
                 poll_interval_s: float = 2.0, allowed_hosts: Collection[str] | None = None,
                 action_timeout_s: float = 10.0) -> None:
        self.source = source
        if isinstance(token, str):
            token = token.encode()
        # Only a digest is kept, so the token cannot leak through this object's repr or a dump.
        self._token_digest = _digest(token) if token else None
        self.poll_interval_s = poll_interval_s
        self.allowed_hosts = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}
        self.action_timeout_s = action_timeout_s
        self.server: HttpServer | None = None

    @property
    def actions_enabled(self) -> bool:
        return self._token_digest is not None

    async def __call__(self, request: Request) -> Response:
        self._check_host(request)
        path = request.path
        if path.startswith(ACTION_PREFIX):
            if request.method != "POST":
                raise HttpError(405, "actions are POST only", {"Allow": "POST"})
            return await self._action(request, path[len(ACTION_PREFIX):])
        if path not in _READ_ROUTES:
            raise HttpError(404, "not found")
        if request.method not in ("GET", "HEAD"):
            raise HttpError(405, "read-only resource", {"Allow": "GET, HEAD"})
        if path in ("/", "/index.html"):
            return self._page()
        if path == "/fragment/main":
            return Response(200, page.render_main(self._status(), self._series()).encode(), HTML_TYPE)
        if path == "/api/status":
            return _json_response(200, self._status())
        if path == "/api/series":
            return _json_response(200, {k: [list(p) for p in v] for k, v in self._series().items()})
        if path == "/metrics":
            counters = dict(self.server.counters) if self.server is not None else None
            return Response(200, metrics.render_metrics(self._status(), counters).encode(), metrics.CONTENT_TYPE)
        if path == "/healthz":
            return Response(200, b"ok\n")
        return Response(204)  # /favicon.ico: there is none, and no 404 noise for it

    # --- reading the source, defensively ---

    def _status(self) -> dict[str, Any]:
        try:
            snapshot = self.source.status()
        except Exception:
            log.exception("web: status source failed")
            raise HttpError(503, "status unavailable (see the router's log)") from None
        if not isinstance(snapshot, dict):
            log.error("web: status source returned %s, not a dict", type(snapshot).__name__)
            raise HttpError(503, "status unavailable (see the router's log)")
        return normalise(snapshot)

    def _series(self) -> dict[str, list[tuple[float, float]]]:
        try:
            series = self.source.series()
        except Exception:
            log.exception("web: series source failed")
            return {}
        return series if isinstance(series, dict) else {}

    def _page(self) -> Response:
        status = self._status()
        nonce = secrets.token_urlsafe(18)
        html = page.render_page(status, self._series(), nonce=nonce, poll_interval_s=self.poll_interval_s,
                                actions_enabled=self.actions_enabled)
        csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
               "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
               "frame-ancestors 'none'")
        return Response(200, html.encode(), HTML_TYPE, {"Content-Security-Policy": csp})

    # --- the guard ---

    def _check_host(self, request: Request) -> None:
        """With ``allowed_hosts``, refuse other Host names (a DNS-rebinding defence)."""
        if self.allowed_hosts is None:
            return
        host = (request.header("host") or "").lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if host not in self.allowed_hosts and name not in self.allowed_hosts:
            raise HttpError(421, "this router does not answer to that host name")

    def _authorise(self, request: Request) -> None:
        site = request.header("sec-fetch-site")
        if site is not None and site.strip().lower() not in ("same-origin", "none"):
            raise HttpError(403, "cross-site request refused")
        origin = request.header("origin")
        if origin is not None:
            host = request.header("host")
            if host is None or origin.strip().lower() != f"http://{host.strip().lower()}":
                raise HttpError(403, "cross-origin request refused")
        if self._token_digest is None:
            raise HttpError(403, "actions are disabled: no token is configured")
        scheme, _, given = (request.header("authorization") or "").strip().partition(" ")
        presented = given.strip().encode("latin-1")
        if scheme.lower() != "bearer" or not presented or not hmac.compare_digest(
                _digest(presented), self._token_digest):
            raise HttpError(401, "missing or wrong token", {"WWW-Authenticate": 'Bearer realm="router"'})
        content_type = (request.header("content-type") or "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            raise HttpError(415, "actions need Content-Type: application/json")

    async def _action(self, request: Request, name: str) -> Response:
        self._authorise(request)
        if name not in ACTIONS:
            return _json_response(404, {"error": f"unknown action; expected one of {', '.join(ACTIONS)}"})
        try:
            args = json.loads(request.body.decode("utf-8")) if request.body.strip() else {}
        except (UnicodeDecodeError, ValueError):
            return _json_response(400, {"error": "body is not valid JSON"})
        if not isinstance(args, dict):
            return _json_response(400, {"error": "body must be a JSON object"})
        log.info("web: action %s %s from %s", name, printable(json.dumps(args)), request.peer)
        try:
            result = await asyncio.wait_for(self.source.action(name, args), self.action_timeout_s)
        except ValueError as exc:
            return _json_response(400, {"error": str(exc)})
        except TimeoutError:
            return _json_response(503, {"error": "the router did not answer in time"})
        return _json_response(200, result if isinstance(result, dict) else {"result": result})


class WebServer:
    """The status page server as one unit the daemon can start and close."""

    def __init__(self, app: WebApp, http: HttpServer) -> None:
        self.app = app
        self.http = http

    @property
    def port(self) -> int:
        return self.http.port

    async def close(self, grace_s: float = 2.0) -> None:
        await self.http.close(grace_s)

    async def __aenter__(self) -> WebServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def start_web_server(source: StatusSource, host: str, port: int, *,
                           token: bytes | str | None = None, limits: Limits | None = None,
                           poll_interval_s: float = 2.0,
                           allowed_hosts: Collection[str] | None = None) -> WebServer:
    """Serve the status page on ``host:port`` (an explicit address; 0.0.0.0 is refused).

    ``token``: the operator token for POST actions (``None`` = read-only page). ``port=0``
    picks a free port (see ``.port``).
    """
    app = WebApp(source, token=token, poll_interval_s=poll_interval_s, allowed_hosts=allowed_hosts)
    http = HttpServer(app, limits)
    app.server = http
    await http.start(host, port)
    return WebServer(app, http)
