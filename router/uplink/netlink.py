"""rtnetlink for the uplink drivers (pyroute2 AsyncIPRoute): watch one interface's link and
IPv4 addresses as events, and apply a DHCP lease's address. No polling: the watcher binds the
link and IPv4-address multicast groups before it reads the current state, so no change between
the dump and the first event is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from pyroute2 import AsyncIPRoute  # type: ignore[import-untyped]
from pyroute2.netlink.rtnl import (  # type: ignore[import-untyped]
    RTMGRP_IPV4_IFADDR,
    RTMGRP_LINK,
)

log = logging.getLogger(__name__)

IFF_UP = 0x1
IFF_RUNNING = 0x40
IFF_LOWER_UP = 0x10000


@dataclass(frozen=True, slots=True)
class IfAddress:
    local: str
    peer: str | None  # point-to-point peer (ppp), None on broadcast links
    prefix_length: int


@dataclass(frozen=True, slots=True)
class InterfaceSnapshot:
    ifname: str
    present: bool = False
    up: bool = False  # administratively up
    carrier: bool = False  # lower layer up (associated / PPP running)
    addresses: tuple[IfAddress, ...] = ()
    index: int | None = None


@dataclass
class InterfaceWatch:
    """Calls ``on_change(snapshot)`` whenever the interface's link or IPv4 addresses change."""

    ifname: str
    on_change: Callable[[InterfaceSnapshot], None]
    snapshot: InterfaceSnapshot = field(init=False)
    _ipr: Any = None
    _task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.snapshot = InterfaceSnapshot(self.ifname)

    async def start(self) -> InterfaceSnapshot:
        ipr = AsyncIPRoute()
        await ipr.bind(groups=RTMGRP_LINK | RTMGRP_IPV4_IFADDR)
        self._ipr = ipr
        async for message in await ipr.get_links():
            self._message(message, notify=False)
        async for message in await ipr.get_addr(family=2):
            self._message(message, notify=False)
        self._task = asyncio.create_task(self._read(), name=f"netlink {self.ifname}")
        return self.snapshot

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    async def __aenter__(self) -> InterfaceWatch:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def _read(self) -> None:
        while True:
            async for message in self._ipr.get():
                self._message(message, notify=True)

    def _message(self, message: Any, notify: bool) -> None:
        event = message.get("event")
        before = self.snapshot
        snapshot = before
        if event in ("RTM_NEWLINK", "RTM_DELLINK"):
            if message.get("ifname") != self.ifname:
                return
            if event == "RTM_DELLINK":
                snapshot = InterfaceSnapshot(self.ifname)
            else:
                flags = int(message.get("flags", 0))
                carrier = bool(flags & IFF_LOWER_UP) or bool(flags & IFF_RUNNING)
                snapshot = replace(before, present=True, up=bool(flags & IFF_UP),
                                   carrier=carrier, index=message.get("index"))
        elif event in ("RTM_NEWADDR", "RTM_DELADDR"):
            if message.get("family") != 2 or not self._is_ours(message):
                return
            local = message.get("local") or message.get("address")
            peer = message.get("address")
            address = IfAddress(local, peer if peer != local else None,
                                int(message.get("prefixlen", 32)))
            kept = tuple(a for a in before.addresses if a.local != address.local)
            added = (address,) if event == "RTM_NEWADDR" else ()
            snapshot = replace(before, addresses=kept + added)
        else:
            return
        if snapshot != before:
            self.snapshot = snapshot
            if notify:
                self.on_change(snapshot)

    def _is_ours(self, message: Any) -> bool:
        if self.snapshot.index is not None:
            return bool(message.get("index") == self.snapshot.index)
        return bool(message.get("label") == self.ifname)


async def set_ipv4_address(ifname: str, address: str, prefix_length: int) -> None:
    """Make `address` the interface's only IPv4 address (a DHCP lease; no routes here)."""
    async with AsyncIPRoute() as ipr:
        index = await _index(ipr, ifname)
        for current in [m async for m in await ipr.get_addr(family=2, index=index)]:
            if current.get("local") != address or current["prefixlen"] != prefix_length:
                await _delete(ipr, index, current)
        with contextlib.suppress(Exception):  # already there: idempotent
            await ipr.addr("add", index=index, address=address, prefixlen=prefix_length)


async def flush_ipv4(ifname: str) -> None:
    async with AsyncIPRoute() as ipr:
        index = await _index(ipr, ifname)
        for current in [m async for m in await ipr.get_addr(family=2, index=index)]:
            await _delete(ipr, index, current)


async def _delete(ipr: Any, index: int, message: Any) -> None:
    # A point-to-point address is (local, peer): both name it.
    await ipr.addr("del", index=index, local=message.get("local"),
                   address=message.get("address"), prefixlen=message["prefixlen"])


async def neighbour_mac(ifname: str, address: str) -> str | None:
    """The link-layer address the kernel has for `address` on `ifname`, if any."""
    async with AsyncIPRoute() as ipr:
        index = await _index(ipr, ifname)
        async for entry in await ipr.get_neighbours(family=2, ifindex=index):
            if entry.get("dst") == address and entry.get("lladdr"):
                return str(entry.get("lladdr"))
    return None


async def _index(ipr: Any, ifname: str) -> int:
    indices = await ipr.link_lookup(ifname=ifname)
    if not indices:
        raise LookupError(f"no interface {ifname}")
    return int(indices[0])


# -- nl80211 ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StationInfo:
    """nl80211 station info of our AP (what wpa_supplicant's SIGNAL_POLL does not give)."""

    bssid: str
    signal: int | None  # dBm, last frame
    signal_average: int | None
    tx_bitrate_kbps: int | None
    rx_bitrate_kbps: int | None
    tx_retries: int | None
    tx_failed: int | None
    inactive_ms: int | None


def _signed_dbm(value: Any) -> int | None:
    if value is None:
        return None
    number = int(value)
    return number - 256 if number > 127 else number


def _bitrate(rate: Any) -> int | None:
    if not rate:
        return None
    value = rate.get_attr("NL80211_RATE_INFO_BITRATE32") or rate.get_attr(
        "NL80211_RATE_INFO_BITRATE")
    return int(value) * 100 if value else None  # units of 100 kbit/s


def _station_info_blocking(ifname: str) -> list[StationInfo]:
    from pyroute2 import IW

    index = socket.if_nametoindex(ifname)
    with IW() as iw:
        stations = []
        for message in iw.get_stations(index):
            info = message.get_attr("NL80211_ATTR_STA_INFO")
            if info is None:
                continue
            stations.append(StationInfo(
                str(message.get_attr("NL80211_ATTR_MAC")),
                _signed_dbm(info.get_attr("NL80211_STA_INFO_SIGNAL")),
                _signed_dbm(info.get_attr("NL80211_STA_INFO_SIGNAL_AVG")),
                _bitrate(info.get_attr("NL80211_STA_INFO_TX_BITRATE")),
                _bitrate(info.get_attr("NL80211_STA_INFO_RX_BITRATE")),
                info.get_attr("NL80211_STA_INFO_TX_RETRIES"),
                info.get_attr("NL80211_STA_INFO_TX_FAILED"),
                info.get_attr("NL80211_STA_INFO_INACTIVE_TIME"),
            ))
        return stations


async def station_info(ifname: str) -> list[StationInfo]:
    """nl80211 GET_STATION on a managed interface: one entry, our AP, while associated.
    pyroute2's IW is synchronous: it runs in a worker thread (created in our namespace)."""
    return await asyncio.to_thread(_station_info_blocking, ifname)
