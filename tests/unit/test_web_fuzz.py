"""Random and half-structured request bytes never crash the server; it answers well afterwards."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.web.api import WebServer, start_web_server
from router.web.server import Limits
from tests.unit.test_web_http import TOKEN, LoopThread, fake, parse_reply

GOOD = b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.fixture(scope="module")
def served() -> Iterator[WebServer]:
    loop = LoopThread()
    limits = Limits(head_timeout_s=2.0, body_timeout_s=2.0, linger_s=0.2, max_body=4096)
    server = loop.run(start_web_server(fake(), "127.0.0.1", 0, token=TOKEN, limits=limits))
    yield server
    loop.run(server.close())
    loop.stop()


def send(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may answer (and close) before we finished sending
        data = bytearray()
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    return bytes(data)


def check_alive(server: WebServer) -> None:
    reply = parse_reply(send(server.port, GOOD))
    assert reply.status == 200
    assert server.http.counters["internal_errors"] == 0


methods = st.sampled_from([b"GET", b"HEAD", b"POST", b"PUT", b"G\x00T", b"", b"get", b"OPTIONS"])
targets = st.one_of(st.sampled_from([b"/", b"/api/status", b"/metrics", b"/api/action/reconnect",
                                     b"/api/action/uplink_prefer", b"*", b"//x", b"/%00"]),
                    st.binary(max_size=40))
versions = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"HTTP/1.1\x00", b"", b"http/1.1"])
header_names = st.sampled_from([b"Host", b"Content-Length", b"Content-Type", b"Authorization", b"Origin",
                                b"Sec-Fetch-Site", b"Transfer-Encoding", b"X", b"", b"Bad Name"])
header_values = st.one_of(st.sampled_from([b"0", b"5", b"-1", b"99999999999999", b"application/json",
                                           b"Bearer " + TOKEN.encode(), b"chunked", b"same-origin",
                                           b"http://127.0.0.1", b"1, 2"]),
                          st.binary(max_size=30))
line_ends = st.sampled_from([b"\r\n", b"\n", b"\r", b""])


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    end = draw(line_ends)
    out = draw(methods) + b" " + draw(targets) + b" " + draw(versions) + end
    for _ in range(draw(st.integers(0, 6))):
        out += draw(header_names) + b": " + draw(header_values) + draw(line_ends)
    out += draw(line_ends) + draw(st.binary(max_size=60))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400))
def test_random_bytes_never_crash_the_server(served: WebServer, raw: bytes) -> None:
    answer = send(served.port, raw)
    if answer:
        assert answer.startswith(b"HTTP/1.1 "), answer[:60]
        assert b"Traceback" not in answer
    check_alive(served)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests())
def test_half_structured_requests_never_crash_the_server(served: WebServer, raw: bytes) -> None:
    answer = send(served.port, raw)
    if answer:
        reply = parse_reply(answer)
        assert reply.status in {200, 204, 400, 401, 403, 404, 405, 408, 413, 414, 415, 431, 501, 505}, reply.status
        assert b"Traceback" not in reply.body
        assert TOKEN.encode() not in answer
    check_alive(served)
