"""A small, defensive HTTP/1.1 server on asyncio streams (one request per connection).

Theory of operation: every connection is one task that reads a request head under a single
deadline (a slow client -- slowloris -- is answered 408 and dropped when it passes), checks
sizes as it reads (request line -> 414, header section -> 431, body -> 413), parses strictly
(anything odd -> 400; only GET, HEAD and POST -> else 405), hands a :class:`Request` to the
application (``router.web.api``) and writes one :class:`Response` with ``Connection: close``.
Closing after each response keeps the parser free of pipelining and request-smuggling corner
cases; a status page polled every few seconds does not need keep-alive.

Robustness rules: no exception escapes a connection task (an application bug is logged with
its traceback and answered 500 without one); a bounded number of connections is served at
once (the next ones get 503); every write has a deadline; the server binds one explicit
address, never a wildcard (DESIGN.md section 8: the page lives on the LAN side only).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

REASONS = {
    200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 411: "Length Required",
    413: "Content Too Large", 414: "URI Too Long", 415: "Unsupported Media Type",
    421: "Misdirected Request",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
    503: "Service Unavailable", 505: "HTTP Version Not Supported",
}

METHODS = ("GET", "HEAD", "POST")

_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_TARGET = re.compile(rb"^/[\x21-\x7e]*$")
_VERSION = re.compile(rb"^HTTP/1\.[01]$")
# Field values: visible ASCII, spaces, tabs and obs-text; never CR, LF or NUL (RFC 9110 5.5).
_FIELD_VALUE = re.compile(rb"^[\t\x20-\x7e\x80-\xff]*$")


@dataclass(frozen=True, slots=True)
class Limits:
    max_request_line: int = 2048  # bytes, -> 414
    max_header_bytes: int = 8192  # the whole header section, -> 431
    max_headers: int = 64  # -> 431
    max_body: int = 16384  # -> 413
    head_timeout_s: float = 10.0  # the whole request head must arrive by then (slowloris) -> 408
    body_timeout_s: float = 10.0
    write_timeout_s: float = 10.0
    max_connections: int = 32  # served at once; more -> 503
    linger_s: float = 1.0  # after an early error answer, read and discard for at most this long


@dataclass(slots=True)
class Request:
    method: str
    target: str
    path: str
    query: str
    version: str
    headers: dict[str, str]  # lower-case names; repeated fields joined with ", " (RFC 9110 5.3)
    peer: str
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


class HttpError(Exception):
    """A request we refuse; ``message`` is safe to show (it never quotes the request)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


Application = Callable[[Request], Awaitable[Response]]

#: Sent with every response, whatever the route.
BASE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}
DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


def check_bind_address(host: str) -> str:
    """The address to bind, refusing wildcards and names (the page must stay on the LAN side)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"web listen address must be an IP address (the LAN address), got {host!r}") from None
    if address.is_unspecified:
        raise ValueError(f"web listen address must be the router's LAN address, not {host}")
    if address.is_multicast:
        raise ValueError(f"web listen address must be a unicast address, got {host}")
    return str(address)


def printable(text: str, limit: int = 120) -> str:
    """For log lines: no control characters (log injection), bounded length."""
    clean = "".join(c if " " <= c < "\x7f" else "?" for c in text)
    return clean if len(clean) <= limit else clean[:limit] + "..."


async def read_head(reader: asyncio.StreamReader, limits: Limits, peer: str) -> Request | None:
    """Parse one request head. ``None`` if the client closed before sending anything."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise HttpError(400, "incomplete request line") from None
    except asyncio.LimitOverrunError:
        raise HttpError(414, "request line too long") from None
    if len(line) > limits.max_request_line:
        raise HttpError(414, "request line too long")
    parts = line.rstrip(b"\r\n").split(b" ")
    if len(parts) != 3:
        raise HttpError(400, "malformed request line")
    method_b, target_b, version_b = parts
    if not _TOKEN.match(method_b):
        raise HttpError(400, "malformed method")
    if not _VERSION.match(version_b):
        if version_b.startswith(b"HTTP/") and len(version_b) < 16:
            raise HttpError(505, "only HTTP/1.0 and HTTP/1.1 are spoken here")
        raise HttpError(400, "malformed protocol version")
    if not _TARGET.match(target_b):
        raise HttpError(400, "malformed request target (expected an absolute path)")
    method = method_b.decode("ascii")
    target = target_b.decode("ascii")

    headers: dict[str, str] = {}
    total = 0
    count = 0
    while True:
        try:
            raw = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            raise HttpError(400, "incomplete request head") from None
        except asyncio.LimitOverrunError:
            raise HttpError(431, "header field too large") from None
        total += len(raw)
        if total > limits.max_header_bytes:
            raise HttpError(431, "header section too large")
        if raw in (b"\r\n", b"\n"):
            break
        count += 1
        if count > limits.max_headers:
            raise HttpError(431, "too many header fields")
        if raw[:1] in (b" ", b"\t"):
            raise HttpError(400, "obsolete header line folding")
        name_b, colon, value_b = raw.rstrip(b"\r\n").partition(b":")
        if not colon or not _TOKEN.match(name_b):
            raise HttpError(400, "malformed header field")
        value_b = value_b.strip(b" \t")
        if not _FIELD_VALUE.match(value_b):
            raise HttpError(400, "malformed header field value")
        name = name_b.decode("ascii").lower()
        value = value_b.decode("latin-1")
        if name in headers:
            if name in ("content-length", "host", "authorization", "content-type", "origin"):
                raise HttpError(400, f"repeated {name} header")
            headers[name] = headers[name] + ", " + value
        else:
            headers[name] = value
    version = version_b.decode("ascii")
    if version == "HTTP/1.1" and "host" not in headers:
        raise HttpError(400, "missing Host header")
    path, _, query = target.partition("?")
    return Request(method, target, path, query, version, headers, peer)


async def read_body(reader: asyncio.StreamReader, request: Request, limits: Limits) -> bytes:
    if "transfer-encoding" in request.headers:
        raise HttpError(501, "chunked request bodies are not supported; send Content-Length")
    length_text = request.headers.get("content-length")
    if length_text is None:
        return b""
    if not length_text.isdigit() or len(length_text) > 12:
        raise HttpError(400, "malformed Content-Length")
    length = int(length_text)
    if length > limits.max_body:
        raise HttpError(413, f"request body larger than {limits.max_body} bytes")
    if length == 0:
        return b""
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise HttpError(400, "request body shorter than Content-Length") from None


def render_response(response: Response, *, head_only: bool = False) -> bytes:
    reason = REASONS.get(response.status, "Unknown")
    headers = dict(BASE_HEADERS)
    headers.setdefault("Content-Security-Policy", DEFAULT_CSP)
    headers.update(response.headers)
    headers["Content-Type"] = response.content_type
    headers["Content-Length"] = str(len(response.body))
    headers["Connection"] = "close"
    lines = [f"HTTP/1.1 {response.status} {reason}"]
    for name, value in headers.items():
        # Header values come from our own code, but never let one split the response.
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {name} contains a line break")
        lines.append(f"{name}: {value}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + response.body


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(status, (message + "\n").encode(), headers=dict(headers or {}))


class HttpServer:
    """Owns the listening socket and the connection tasks; the application owns the routes."""

    def __init__(self, application: Application, limits: Limits | None = None) -> None:
        self.application = application
        self.limits = limits or Limits()
        self.counters: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("server not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def active_connections(self) -> int:
        return len(self._tasks)

    async def start(self, host: str, port: int) -> None:
        address = check_bind_address(host)
        # The reader's limit bounds what one readuntil() may buffer: a line longer than the
        # larger of our two limits is refused before it can grow memory.
        limit = max(self.limits.max_request_line, self.limits.max_header_bytes) + 2
        self._server = await asyncio.start_server(self._accept, address, port, limit=limit,
                                                  reuse_address=True, backlog=64)
        log.info("web: listening on http://%s:%d/", address, self.port)

    async def close(self, grace_s: float = 2.0) -> None:
        """Stop accepting, give running requests ``grace_s``, then cancel the rest."""
        if self._server is not None:
            self._server.close()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback (not a coroutine function), so the connection task is ours to track.
        connection = asyncio.ensure_future(self._connection(reader, writer))
        self._tasks.add(connection)
        connection.add_done_callback(self._tasks.discard)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer_info = writer.get_extra_info("peername")
        peer = str(peer_info[0]) if isinstance(peer_info, tuple) else "?"
        self.counters["connections"] += 1
        try:
            if len(self._tasks) > 2 * self.limits.max_connections:
                # A flood: not even a 503 (it would linger); just close.
                self.counters["dropped_flood"] += 1
                return
            if len(self._tasks) > self.limits.max_connections:
                self.counters["refused_busy"] += 1
                await self._send(writer, error_response(503, "busy, try again", {"Retry-After": "2"}),
                                 None, peer, reader)
                return
            await self._serve_one(reader, writer, peer)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug of ours: the log gets the traceback, the client nothing but the connection close.
            self.counters["internal_errors"] += 1
            log.exception("web: connection from %s failed", peer)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> None:
        request: Request | None = None
        try:
            async with asyncio.timeout(self.limits.head_timeout_s):
                request = await read_head(reader, self.limits, peer)
            if request is None:
                return
            if request.method not in METHODS:
                raise HttpError(405, "only GET, HEAD and POST", {"Allow": ", ".join(METHODS)})
            async with asyncio.timeout(self.limits.body_timeout_s):
                request.body = await read_body(reader, request, self.limits)
        except TimeoutError:
            self.counters["dropped_slow"] += 1
            log.info("web: dropped slow client %s", peer)
            await self._send(writer, error_response(408, "request took too long"), request, peer, reader)
            return
        except HttpError as exc:
            await self._send(writer, error_response(exc.status, exc.message, exc.headers), request, peer,
                             reader)
            return
        except (ConnectionError, OSError):
            return
        try:
            response = await self.application(request)
        except HttpError as exc:
            response = error_response(exc.status, exc.message, exc.headers)
        except Exception:
            self.counters["internal_errors"] += 1
            log.exception("web: handler for %s %s failed", request.method, printable(request.path))
            response = error_response(500, "internal error (see the router's log)")
        await self._send(writer, response, request, peer)

    async def _send(self, writer: asyncio.StreamWriter, response: Response, request: Request | None,
                    peer: str, reader: asyncio.StreamReader | None = None) -> None:
        """Write ``response``; with ``reader``, linger so unread request bytes do not reset it.

        Closing a socket whose receive buffer still holds data makes the kernel send RST,
        and a client may then lose the error response we just wrote. So after an early
        answer we half-close and discard what the client still sends, briefly and bounded.
        """
        self.counters[f"responses.{response.status}"] += 1
        head_only = request is not None and request.method == "HEAD"
        what = f"{request.method} {printable(request.path)}" if request else "-"
        log.debug("web: %s %s %d %dB", peer, what, response.status, len(response.body))
        try:
            writer.write(render_response(response, head_only=head_only))
            async with asyncio.timeout(self.limits.write_timeout_s):
                await writer.drain()
        except (TimeoutError, ConnectionError, OSError):
            self.counters["write_failed"] += 1
            return
        if reader is not None:
            await self._linger(reader, writer)

    async def _linger(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if writer.can_write_eof():
                writer.write_eof()
            async with asyncio.timeout(self.limits.linger_s):
                discarded = 0
                while discarded < 1 << 20:
                    chunk = await reader.read(65536)
                    if not chunk:
                        break
                    discarded += len(chunk)
        except (TimeoutError, ConnectionError, OSError, asyncio.LimitOverrunError):
            pass
