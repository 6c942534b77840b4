"""HTTP-level tests of the status page server: a raw asyncio client against the fake source.

Loopback TCP only (127.0.0.1, port 0); no sleeps except where a slow client is the point,
and no assertion on how long anything took (guards are generous timeouts that only turn a
hang into a failure).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from router.web.api import WebServer, start_web_server
from router.web.schema import check_status
from router.web.server import Limits
from router.web.source import FakeStatusSource

T = TypeVar("T")
NOW = 1_790_000_000.0
TOKEN = "s3cret-operator-token-Zq9"
GUARD_S = 10.0  # a hang becomes a failure after this; never an assertion on speed


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    raw: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def parse_reply(raw: bytes) -> Reply:
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"no end of head in {raw[:200]!r}"
    lines = head.decode("latin-1").split("\r\n")
    match = re.fullmatch(r"HTTP/1\.1 (\d{3}) [A-Za-z -]+", lines[0])
    assert match, lines[0]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        assert name.lower() not in headers, f"repeated header {name}"
        headers[name.lower()] = value
    return Reply(int(match.group(1)), headers, body, raw)


async def exchange(port: int, raw: bytes, *, close_write: bool = False) -> Reply:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        if close_write:
            writer.write_eof()
        data = await asyncio.wait_for(reader.read(), GUARD_S)
    finally:
        writer.close()
    return parse_reply(data)


def get(path: str, *headers: str, method: str = "GET") -> bytes:
    extra = "".join(h + "\r\n" for h in headers)
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode()


def post(path: str, body: bytes = b"{}", *headers: str, host: str = "127.0.0.1") -> bytes:
    extra = "".join(h + "\r\n" for h in headers)
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def fake() -> FakeStatusSource:
    return FakeStatusSource(clock=lambda: NOW)


def run(scenario: Callable[[WebServer], Awaitable[T]], *, source: Any = None, token: str | None = TOKEN,
        limits: Limits | None = None, **options: Any) -> T:
    async def main() -> T:
        server = await start_web_server(source or fake(), "127.0.0.1", 0, token=token, limits=limits, **options)
        try:
            return await scenario(server)
        finally:
            await server.close()
    return asyncio.run(main())


class LoopThread:
    """An event loop in a thread, for tests whose client side is blocking (CLI, Chromium, fuzz)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


# --- reading ---------------------------------------------------------------------------------


def test_page_is_html_with_security_headers_and_a_matching_nonce() -> None:
    reply = run(lambda s: exchange(s.port, get("/")))
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.headers["cache-control"] == "no-store"
    assert reply.headers["connection"] == "close"
    assert int(reply.headers["content-length"]) == len(reply.body)
    csp = reply.headers["content-security-policy"]
    nonce = re.search(r"script-src 'nonce-([A-Za-z0-9_-]+)'", csp)
    assert nonce, csp
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp
    html = reply.body.decode()
    assert f'<script nonce="{nonce.group(1)}">' in html
    assert f'<style nonce="{nonce.group(1)}">' in html
    # No external resources: nothing is loaded from anywhere but this page.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "inside" in html and "wlan0" in html and "10.10.0.50" in html


def test_each_page_gets_a_fresh_nonce() -> None:
    async def two(server: WebServer) -> tuple[Reply, Reply]:
        return await exchange(server.port, get("/")), await exchange(server.port, get("/"))
    first, second = run(two)
    assert first.headers["content-security-policy"] != second.headers["content-security-policy"]


def test_head_has_the_headers_of_get_but_no_body() -> None:
    async def both(server: WebServer) -> tuple[Reply, Reply]:
        return (await exchange(server.port, get("/api/status")),
                await exchange(server.port, get("/api/status", method="HEAD")))
    full, head = run(both)
    assert head.status == 200 and head.body == b""
    assert head.headers["content-length"] == full.headers["content-length"]


def test_api_status_matches_the_schema() -> None:
    reply = run(lambda s: exchange(s.port, get("/api/status")))
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json; charset=utf-8"
    assert reply.headers["cache-control"] == "no-store"
    status = reply.json()
    assert check_status(status) == []
    assert {"situation", "uplinks", "registrations", "vpn", "mobile_network", "handovers", "counters",
            "version", "uptime_s"} <= set(status)
    assert status["situation"]["name"] == "inside"
    assert [u["name"] for u in status["uplinks"]] == ["wlan", "cell"]
    assert isinstance(status["uplinks"][0]["active"], bool)
    assert isinstance(status["registrations"]["inner"]["lifetime_left_s"], int)


def test_the_schema_checker_finds_what_is_wrong() -> None:
    status = fake().status()
    status["uplinks"][0]["active"] = 1
    del status["vpn"]["state"]
    status["situation"]["name"] = "lost"
    status["counters"]["x"] = True
    problems = check_status(status)
    assert "uplinks[0].active: expected bool, got int" in problems
    assert "vpn.state: missing" in problems
    assert any(p.startswith("situation.name") for p in problems)
    assert "counters.x: expected int, got bool" in problems


def test_series_and_fragment_and_health() -> None:
    async def three(server: WebServer) -> list[Reply]:
        return [await exchange(server.port, get(p)) for p in ("/api/series", "/fragment/main", "/healthz")]
    series, fragment, health = run(three)
    assert series.status == 200 and "rtt_ms.wlan" in series.json()
    assert fragment.status == 200 and b"<script" not in fragment.body and b"wlan0" in fragment.body
    assert health.status == 200 and health.body == b"ok\n"


def test_unknown_path_is_404_and_wrong_method_405() -> None:
    async def many(server: WebServer) -> list[Reply]:
        return [await exchange(server.port, raw) for raw in (
            get("/nope"), get("/api/status/../../etc/passwd"), post("/api/status"),
            get("/", method="PUT"), get("/", method="OPTIONS"), get("/api/action/reconnect"))]
    nope, traversal, post_status, put, options, get_action = run(many)
    assert nope.status == 404 and traversal.status == 404
    assert post_status.status == 405 and post_status.headers["allow"] == "GET, HEAD"
    assert put.status == 405 and options.status == 405 and put.headers["allow"] == "GET, HEAD, POST"
    assert get_action.status == 405 and get_action.headers["allow"] == "POST"


# --- limits and hostile clients --------------------------------------------------------------


def test_oversized_header_is_431_and_long_request_line_414() -> None:
    async def many(server: WebServer) -> list[Reply]:
        return [await exchange(server.port, raw) for raw in (
            get("/", "X-Big: " + "a" * 9000),
            get("/", *[f"X-H{i}: {'b' * 150}" for i in range(60)]),
            get("/", *[f"X-{i}: 1" for i in range(80)]),
            get("/" + "c" * 3000),
            get("/" + "d" * 20000))]
    one_big, many_medium, too_many, long_line, huge_line = run(many)
    assert one_big.status == 431 and many_medium.status == 431 and too_many.status == 431
    assert long_line.status == 414 and huge_line.status == 414


def test_huge_body_is_413_without_reading_it() -> None:
    raw = (b"POST /api/action/reconnect HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000000\r\n"
           b"Content-Type: application/json\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n\r\n{")
    reply = run(lambda s: exchange(s.port, raw))
    assert reply.status == 413


def test_slow_client_is_dropped_with_408() -> None:
    limits = Limits(head_timeout_s=0.3)

    async def slowloris(server: WebServer) -> tuple[bytes, int]:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-a: 1\r\n")
        await writer.drain()
        # Keep sending a header line every 0.1 s: each line is timely, but the deadline is for
        # the whole head. Listen between lines so we stop writing once the server answered.
        first = b""
        for i in range(100):
            writer.write(f"X-Dribble-{i}: 1\r\n".encode())
            await writer.drain()
            try:
                first = await asyncio.wait_for(reader.read(1), 0.1)
            except TimeoutError:
                continue
            break
        assert first, "the slow client was never answered"
        data = first + await asyncio.wait_for(reader.read(), GUARD_S)
        writer.close()
        return data, server.http.counters["dropped_slow"]

    data, dropped = run(slowloris, limits=limits)
    assert parse_reply(data).status == 408
    assert dropped == 1


def test_garbage_is_400_without_a_traceback() -> None:
    bad = [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n",  # a TLS hello
        b"GET\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        b"GET http://evil/ HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
        b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad\x00Name: 1\r\n\r\n",
        b"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /api/action/reconnect HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"POST /api/action/reconnect HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"G\xc3\xa9T / HTTP/1.1\r\nHost: x\r\n\r\n",
    ]

    async def many(server: WebServer) -> tuple[list[Reply], int]:
        replies = [await exchange(server.port, raw, close_write=True) for raw in bad]
        return replies, server.http.counters["internal_errors"]

    replies, internal_errors = run(many)
    for raw, reply in zip(bad, replies, strict=True):
        assert reply.status == 400, (raw, reply.status)
        assert b"Traceback" not in reply.body and b"File \"" not in reply.body
    assert internal_errors == 0


def test_other_protocol_versions_and_chunked_bodies_are_refused() -> None:
    async def many(server: WebServer) -> list[Reply]:
        return [await exchange(server.port, raw, close_write=True) for raw in (
            b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
            b"POST /api/action/reconnect HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")]
    version, chunked = run(many)
    assert version.status == 505 and chunked.status == 501


def test_connections_beyond_the_limit_get_503() -> None:
    limits = Limits(max_connections=2, head_timeout_s=5.0)

    async def crowd(server: WebServer) -> Reply:
        idle = []
        for _ in range(2):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET / HTTP/1.1\r\n")  # never finished
            await writer.drain()
            idle.append((reader, writer))
        async with asyncio.timeout(GUARD_S):  # until the server has accepted both
            while server.http.active_connections < 2:
                await asyncio.sleep(0.01)
        try:
            return await exchange(server.port, get("/healthz"))
        finally:
            for _, writer in idle:
                writer.close()

    reply = run(crowd, limits=limits)
    assert reply.status == 503 and reply.headers["retry-after"] == "2"


def test_a_flood_beyond_twice_the_limit_is_closed_without_an_answer() -> None:
    limits = Limits(max_connections=1, head_timeout_s=GUARD_S, linger_s=GUARD_S)

    async def flood(server: WebServer) -> tuple[bytes, int]:
        idle = []
        for _ in range(2):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET / HTTP/1.1\r\n")
            await writer.drain()
            idle.append(writer)
        async with asyncio.timeout(GUARD_S):
            while server.http.active_connections < 2:
                await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            return await asyncio.wait_for(reader.read(), GUARD_S), server.http.counters["dropped_flood"]
        finally:
            for w in (*idle, writer):
                w.close()

    answer, dropped = run(flood, limits=limits)
    assert answer == b"" and dropped == 1


def test_wildcard_and_name_binds_are_refused() -> None:
    for host in ("0.0.0.0", "::", "", "localhost", "224.0.0.1"):
        with pytest.raises(ValueError, match="address"):
            asyncio.run(start_web_server(fake(), host, 0))


def test_a_failing_source_is_503_and_the_server_keeps_serving() -> None:
    class Broken(FakeStatusSource):
        def status(self) -> dict[str, Any]:
            raise RuntimeError("daemon state torn")

    async def many(server: WebServer) -> list[Reply]:
        return [await exchange(server.port, get(p)) for p in ("/api/status", "/", "/metrics", "/healthz")]

    status, page, metrics, health = run(many, source=Broken(clock=lambda: NOW))
    assert status.status == 503 and page.status == 503 and metrics.status == 503
    assert b"torn" not in status.body and b"Traceback" not in status.body
    assert health.status == 200


def test_hostile_strings_are_escaped_and_secrets_redacted() -> None:
    source = fake()
    source.clients.append({"mac": "52:54:00:00:00:01", "address": "10.1.1.66",
                           "hostname": '<script>alert("x")</script>', "expires": NOW + 60})
    source.situation["reason"] = "<img src=x onerror=alert(1)>"
    source.vpn["psk"] = "hunter2"
    source.registrations["inner"]["key"] = "0123456789abcdef"

    async def two(server: WebServer) -> tuple[Reply, Reply]:
        return await exchange(server.port, get("/")), await exchange(server.port, get("/api/status"))

    page, api = run(two, source=source)
    assert b'<script>alert("x")</script>' not in page.body
    assert b"&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page.body
    assert b"<img src=x" not in page.body
    for reply in (page, api):
        assert b"hunter2" not in reply.body and b"0123456789abcdef" not in reply.body
    assert api.json()["vpn"]["psk"] == "<redacted>"


def test_allowed_hosts_refuses_other_host_names() -> None:
    async def two(server: WebServer) -> tuple[Reply, Reply]:
        ok = await exchange(server.port, get("/healthz"))
        rebound = await exchange(server.port, b"GET /api/status HTTP/1.1\r\nHost: attacker.example\r\n\r\n")
        return ok, rebound
    ok, rebound = run(two, allowed_hosts=["127.0.0.1", "router.lan"])
    assert ok.status == 200 and rebound.status == 421


# --- actions ----------------------------------------------------------------------------------

JSON_CT = "Content-Type: application/json"
BEARER = f"Authorization: Bearer {TOKEN}"
SAME_ORIGIN = ("Origin: http://127.0.0.1", "Sec-Fetch-Site: same-origin")


def act(name: str, body: bytes, *headers: str) -> bytes:
    return post(f"/api/action/{name}", body, *headers)


def test_actions_need_the_token_and_same_origin_json() -> None:
    source = fake()
    cases = {
        "no token": act("reconnect", b"{}", JSON_CT, *SAME_ORIGIN),
        "wrong token": act("reconnect", b"{}", JSON_CT, "Authorization: Bearer nope", *SAME_ORIGIN),
        "token as basic": act("reconnect", b"{}", JSON_CT, f"Authorization: Basic {TOKEN}"),
        "prefix of token": act("reconnect", b"{}", JSON_CT, f"Authorization: Bearer {TOKEN[:-1]}"),
        "cross-site": act("reconnect", b"{}", JSON_CT, BEARER, "Sec-Fetch-Site: cross-site"),
        "same-site": act("reconnect", b"{}", JSON_CT, BEARER, "Sec-Fetch-Site: same-site"),
        "foreign origin": act("reconnect", b"{}", JSON_CT, BEARER, "Origin: http://evil.example"),
        "null origin": act("reconnect", b"{}", JSON_CT, BEARER, "Origin: null"),
        "form post": act("reconnect", b"a=1", "Content-Type: application/x-www-form-urlencoded", BEARER),
        "text/plain": act("reconnect", b"{}", "Content-Type: text/plain", BEARER, *SAME_ORIGIN),
        "not an object": act("uplink_prefer", b"[1]", JSON_CT, BEARER, *SAME_ORIGIN),
        "bad json": act("uplink_prefer", b"{nope", JSON_CT, BEARER, *SAME_ORIGIN),
        "unknown uplink": act("uplink_prefer", b'{"name": "moon"}', JSON_CT, BEARER, *SAME_ORIGIN),
        "unknown action": act("selfdestruct", b"{}", JSON_CT, BEARER, *SAME_ORIGIN),
    }

    async def all_cases(server: WebServer) -> dict[str, Reply]:
        return {name: await exchange(server.port, raw) for name, raw in cases.items()}

    replies = run(all_cases, source=source)
    expected = {"no token": 401, "wrong token": 401, "token as basic": 401, "prefix of token": 401,
                "cross-site": 403, "same-site": 403, "foreign origin": 403, "null origin": 403,
                "form post": 415, "text/plain": 415, "not an object": 400, "bad json": 400,
                "unknown uplink": 400, "unknown action": 404}
    assert {name: r.status for name, r in replies.items()} == expected
    assert source.actions == []
    assert replies["no token"].headers["www-authenticate"].startswith("Bearer")
    assert "unknown uplink 'moon'" in replies["unknown uplink"].json()["error"]
    for reply in replies.values():
        assert TOKEN.encode() not in reply.raw


def test_an_authorised_same_origin_action_reaches_the_source() -> None:
    source = fake()

    async def two(server: WebServer) -> tuple[Reply, Reply]:
        prefer = await exchange(server.port, act("uplink_prefer", b'{"name": "cell"}', JSON_CT, BEARER, *SAME_ORIGIN))
        # A client that sends neither Origin nor Sec-Fetch-Site (curl) is not a browser: allowed.
        reconnect = await exchange(server.port, act("reconnect", b"", "Content-Type: application/json; charset=utf-8",
                                                    BEARER))
        return prefer, reconnect

    prefer, reconnect = run(two, source=source)
    assert prefer.status == 200 and prefer.json() == {"accepted": True, "message": "preferring uplink cell"}
    assert reconnect.status == 200
    assert source.actions == [("uplink_prefer", {"name": "cell"}), ("reconnect", {})]
    assert TOKEN.encode() not in prefer.raw


def test_without_a_configured_token_actions_are_off() -> None:
    source = fake()
    reply = run(lambda s: exchange(s.port, act("reconnect", b"{}", JSON_CT, "Authorization: Bearer x")),
                source=source, token=None)
    assert reply.status == 403 and source.actions == []


def test_the_token_never_reaches_a_page_or_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def many(server: WebServer) -> list[Reply]:
        return [await exchange(server.port, raw) for raw in (
            get("/"), get("/api/status"), get("/metrics"), get("/fragment/main"),
            act("reconnect", b"{}", JSON_CT, BEARER, *SAME_ORIGIN),
            act("reconnect", b"{}", JSON_CT, "Authorization: Bearer " + TOKEN + "x"),
            get(f"/nope?token={TOKEN}"))]

    replies = run(many)
    assert [r.status for r in replies] == [200, 200, 200, 200, 200, 401, 404]
    for reply in replies:
        assert TOKEN.encode() not in reply.raw
    assert TOKEN not in caplog.text
    assert "action reconnect" in caplog.text
