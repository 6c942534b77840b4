"""The lab world's wired part on the host kernel (veth, bridges, nftables; no radios/peers).

Needs root. Namespaces carry the prefix `lt-` so they never meet a real world or another test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from qemu.lab import World, plan, topology
from qemu.lab.topology import existing_namespaces

pytestmark = pytest.mark.root

PREFIX = "lt-"


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    if os.geteuid() != 0:
        pytest.fail("tests/netns need root (network namespaces)")
    lab = World(prefix=PREFIX, radios=False, peers=False)
    lab.up()
    try:
        yield lab
    finally:
        lab.down()


def test_every_host_is_a_namespace(world: World) -> None:
    assert set(world.ns.all()) <= existing_namespaces()


def test_neighbours_reach_each_other(world: World) -> None:
    for host, destination in [
        ("lan-host", plan.ROUTER_LAN_ADDRESS),
        ("outer-ha", "198.51.100.1"),
        ("cell", plan.OUTER_HA_ADDRESS),
        ("cn", plan.INNER_HA_ADDRESS),
        ("corp", "10.30.0.1"),
    ]:
        assert world.ping(host, destination, count=1).ok, (host, destination)


def test_internet_has_no_way_into_corp(world: World) -> None:
    assert not world.ping("inet", plan.CORRESPONDENT_ADDRESS, count=1).ok
    assert not world.ping("outer-ha", plan.INNER_HA_ADDRESS, count=1).ok


def test_vpn_gateway_forwards_no_cleartext(world: World) -> None:
    # Give the DMZ a route through the gateway and corp a way back: only nftables stands in
    # the way then, and removing it must open the path (so the firewall is what blocked it).
    world.exec(
        "outer-ha", ["ip", "route", "add", plan.VPN_PROTECTED, "via", plan.VPN_GATEWAY_ADDRESS]
    )
    world.exec(
        "corp", ["ip", "route", "add", "192.0.2.0/24", "via", plan.VPN_GATEWAY_INSIDE_ADDRESS]
    )
    try:
        assert not world.ping("outer-ha", plan.CORRESPONDENT_ADDRESS, count=1).ok
        world.exec("vpn-gw", ["nft", "delete", "table", "inet", "lab_vpn_gw"])
        assert world.ping("outer-ha", plan.CORRESPONDENT_ADDRESS, count=1).ok
    finally:
        world.exec("outer-ha", ["ip", "route", "del", plan.VPN_PROTECTED])
        world.exec("corp", ["ip", "route", "del", "192.0.2.0/24"])
        world.exec("vpn-gw", ["nft", "delete", "table", "inet", "lab_vpn_gw"], check=False)
        topology.nft(world.ns("vpn-gw"), topology.VPN_GATEWAY_FIREWALL)


def test_up_again_removes_leftovers_and_down_removes_all() -> None:
    first = World(prefix="lu-", radios=False, peers=False)
    first.up()  # never torn down: as if a test process had crashed
    world = World(prefix="lu-", radios=False, peers=False)
    world.up()
    assert world.ping("lan-host", plan.ROUTER_LAN_ADDRESS, count=1).ok
    world.down()
    world.down()  # idempotent
    assert not {name for name in existing_namespaces() if name.startswith("lu-")}


def test_lan_can_be_left_to_the_product() -> None:
    world = World(prefix="ln-", radios=False, peers=False, static_lan=False)
    world.up()
    try:
        assert "inet " not in world.exec("lan-host", ["ip", "-4", "addr", "show", "eth0"])
        assert "inet " not in world.exec("router", ["ip", "-4", "addr", "show", "br-lan"])
        assert "master br-lan" in world.exec("router", ["ip", "link", "show", "lan0"])
        assert world.ping("cn", plan.INNER_HA_ADDRESS, count=1).ok
    finally:
        world.down()
