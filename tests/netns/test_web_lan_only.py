"""The status page is reachable from the LAN and not from the uplink side (real kernel, nftables).

Three namespaces: a LAN host (10.1.1.23) on the router's LAN interface lan0 (10.1.1.1), and an
uplink peer (198.51.100.2) on the router's up0 (198.51.100.1) with a route to 10.1.1.0/24
through the router. The page is served by ``python3 -m router.web.demo`` bound to 10.1.1.1
inside the router namespace. Binding the LAN address alone does not protect it (the kernel
accepts packets for any local address on any interface); router.web.firewall's ruleset does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from router.web.firewall import lan_only_ruleset

from .conftest import Namespaces, ip

ROOT = Path(__file__).resolve().parents[2]
PORT = 8080

CLIENT = r"""
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    s = socket.create_connection((host, port), timeout=1.5)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: " + host.encode() + b"\r\n\r\n")
    print(s.recv(100).split(b"\r\n")[0].decode())
except ConnectionRefusedError:
    print("refused")
except (TimeoutError, socket.timeout):
    print("timeout")
except OSError as e:
    print("error", e.errno)
"""


@dataclass
class World:
    router: str
    lan: str
    uplink: str


def fetch(namespace: str, host: str) -> str:
    done = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c", CLIENT, host, str(PORT)],
                          capture_output=True, text=True, timeout=30, check=False)
    return done.stdout.strip() or done.stderr.strip()


@pytest.fixture
def world(namespaces: Namespaces) -> Iterator[World]:
    router, lan, uplink = namespaces.new("rt"), namespaces.new("lan"), namespaces.new("up")
    ip("link", "add", "lan0", "netns", router, "type", "veth", "peer", "name", "h0", "netns", lan)
    ip("link", "add", "up0", "netns", router, "type", "veth", "peer", "name", "u0", "netns", uplink)
    for namespace, ifname, address in ((router, "lan0", "10.1.1.1/24"), (lan, "h0", "10.1.1.23/24"),
                                       (router, "up0", "198.51.100.1/24"), (uplink, "u0", "198.51.100.2/24")):
        ip("-n", namespace, "addr", "add", address, "dev", ifname)
        ip("-n", namespace, "link", "set", ifname, "up")
    ip("-n", uplink, "route", "add", "10.1.1.0/24", "via", "198.51.100.1")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    server = subprocess.Popen(
        ["ip", "netns", "exec", router, sys.executable, "-m", "router.web.demo",
         "--listen", f"10.1.1.1:{PORT}", "--every", "3600"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        assert first.startswith("status page: http://10.1.1.1:"), first + (server.stderr.read() if server.stderr else "")
        yield World(router, lan, uplink)
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_page_answers_only_on_the_lan_side(world: World) -> None:
    assert fetch(world.lan, "10.1.1.1") == "HTTP/1.1 200 OK"
    # Not bound on the uplink's address.
    assert fetch(world.uplink, "198.51.100.1") == "refused"
    # The weak host model: without the firewall, the LAN address is reachable over the uplink.
    assert fetch(world.uplink, "10.1.1.1") == "HTTP/1.1 200 OK"

    subprocess.run(["ip", "netns", "exec", world.router, "nft", "-f", "-"], input=lan_only_ruleset("lan0", PORT),
                   text=True, check=True, capture_output=True)
    assert fetch(world.uplink, "10.1.1.1") == "timeout"
    assert fetch(world.lan, "10.1.1.1") == "HTTP/1.1 200 OK"
    rules = subprocess.run(["ip", "netns", "exec", world.router, "nft", "list", "table", "inet", "router_web"],
                           capture_output=True, text=True, check=True).stdout
    assert "counter packets 0 " not in rules  # the drop rule matched the uplink's attempt
