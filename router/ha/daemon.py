"""The home agent daemon: composition root for ``python -m router.ha``.

Lifecycle (uvicorn-like): load and validate the config -> reconcile the kernel (a previous
run's tunnels and routes are removed: bindings do not survive a restart, the mobile routers
re-register when their renewal fails) -> answer registrations on UDP 434 -> on the first
SIGTERM/SIGINT remove what we added and exit; a second signal exits at once.

The binding logic is ``router.mip.homeagent`` (pure). Each binding event recomputes the whole
kernel plan from the binding list and hands it to the ``KernelAdapter``, which changes only
what differs (a moved care-of address is one tunnel change, not a teardown). With
``--control-only`` no kernel object is touched: for protocol conformance tests.

RFC 3519 (``udp_tunnelling = true`` in [home_agent], the default): the kernel cannot encapsulate
with the RFC 3519 header, so a ``HomeAgentTunnel`` (router.udptunnel: one TUN ``mip3519``) owns
UDP 434. Registrations reach the logic through it (``add_socket``), tunnel data goes to the TUN,
and after every binding event its peers are synced with the UDP-tunnelled bindings; the plan
routes those bindings' home address and mobile networks into the TUN.

Replay state across restarts (RFC 5944 §5.7.1: a timestamp is accepted only if "greater than"
every one accepted before), in ``<state_dir>/replay-<address>.json`` (atomic, fsynced, 0600):

- a clean stop writes the last accepted Identification of every mobile node ("clean": true),
  and the next start restores exactly that;
- while running, the file holds only a *lease*: "nothing was accepted after lease_until"
  (NTP seconds). Before a Reply that accepts a Request leaves, the lease is extended to
  now + LEASE_S when less than a second of it is left: at most one small fsynced write per
  second whatever the load and the number of nodes (writing every node per Request would
  make the home agent's capacity that of its disk);
- after a crash (the file is not clean) every node starts above lease_until + tolerance:
  nothing accepted before the crash can lie beyond it, so a replay draws 133; a node whose
  fresh Request falls below that floor is refused for at most LEASE_S + tolerance seconds.

An unreadable state file falls back to a floor of "now + tolerance" for every node. The
replay check follows the wall clock: a stepped clock (date -s, NTP step) is logged and the
check uses the new time of day at once.

SIGHUP re-reads the config: a valid one replaces the mobile-node table and keys (bindings of
nodes still configured stay; removed nodes' bindings go); an invalid one is logged with its
ConfigError line and the last good config keeps running. Settings of the listening socket and
data path (address, home network, port, home interface, udp tunnelling, state dir) need a
restart: a reload names them and keeps the running values.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, Protocol

from router.config import ConfigError, HomeAgentConfig, load_home_agent_config
from router.drive import MachineDriver, open_driver, udp_socket
from router.ha.plan import LINK_PREFIX, SYSCTLS, UDP_TUNNEL_DEVICE, home_agent_plan
from router.lifecycle import (
    StateError,
    load_config_or_last_good,
    read_state,
    reload_signal,
    remember_good_config,
    security_association,
    shutdown_event,
    write_state,
)
from router.mip import homeagent as ha
from router.mip.errors import LocalProtocolError
from router.mip.identification import NTP_UNIX_OFFSET, ntp_seconds
from router.net import KernelAdapter, Ownership, Plan, SettledVerify
from router.ratelog import RateLimitedLog
from router.udptunnel.datapath import HomeAgentTunnel
from router.udptunnel.peers import Peer
from router.udptunnel.tun import open_tun, tunnel_mtu

log = logging.getLogger("router.ha")

# Home agent objects are told apart from a router's in the same namespace (lab, tests).
HA_OWNERSHIP = Ownership(link_prefix=LINK_PREFIX, protocol=202, tables=range(100, 101), rule_priorities=range(1100, 1101))


# Inner MTU of the RFC 3519 TUN: the router's tunnels use 1400 too (router.dataplane), and
# 1400 + 32 bytes of outer headers pass a PPP or PPPoE uplink unfragmented.
UDP_TUNNEL_MTU = min(1400, tunnel_mtu(1500))


def logic_config(config: HomeAgentConfig, *, clock_offset: float, udp_tunnelling: bool | None = None) -> ha.HomeAgentConfig:
    """Map the file's config onto the pure logic's (the only place keys are handed over)."""
    nodes = tuple(
        ha.MobileNodeEntry(
            home_address=node.home_address,
            security_associations=(
                security_association(node.spi, node.algorithm, node.key.value, node.replay, float(config.replay_window)),
            ),
            mobile_networks=node.mobile_networks,
        )
        for node in config.mobile_nodes
    )
    return ha.HomeAgentConfig(
        address=config.address,
        home_network=config.home_network,
        mobile_nodes=nodes,
        max_lifetime=config.max_lifetime,
        # Assent to UDP tunnelling only when the data path for it runs (else refuse, 129,
        # rather than black-hole the node's traffic).
        udp_tunnelling=config.udp_tunnelling if udp_tunnelling is None else udp_tunnelling,
        udp_keepalive_interval=config.udp_keepalive_interval,
        clock_offset=clock_offset,
    )


def _reply_waits_for_kernel(event: ha.BindingEvent) -> bool:
    """Whether the Reply that caused `event` leaves only once the kernel applied it.

    A new binding or a new care-of address: the node will use it when the Reply arrives. A
    removal: until it is applied, the binding's host route sends the Reply for a node back
    home into the tunnel to its old care-of address (RFC 5944 §4.6 wants proxy ARP stopped,
    and the node reached on the home link, once the deregistration is accepted).
    """
    if isinstance(event, (ha.BindingAdded, ha.BindingRemoved)):
        return True
    return isinstance(event, ha.BindingRenewed) and event.previous_care_of_address != event.binding.care_of_address


def wall_clock_offset(monotonic: Callable[[], float] = time.monotonic) -> float:
    """``loop.time() + offset`` = NTP seconds (RFC 5944 §5.7.1 timestamps)."""
    return time.time() - monotonic() + NTP_UNIX_OFFSET


def describe(event: ha.BindingEvent) -> str:
    b = event.binding
    nets = ",".join(map(str, b.mobile_networks)) or "-"
    tail = f"coa {b.care_of_address} lifetime {b.lifetime} networks {nets}" + (" udp" if b.udp_tunnel else "")
    if isinstance(event, ha.BindingAdded):
        return f"binding {b.home_address} added: {tail}"
    if isinstance(event, ha.BindingRenewed):
        if event.previous_care_of_address != b.care_of_address:
            return f"binding {b.home_address} moved {event.previous_care_of_address} -> {b.care_of_address}: {tail}"
        return f"binding {b.home_address} renewed: {tail}"
    if isinstance(event, ha.BindingRemoved):
        return f"binding {b.home_address} removed ({event.reason}{', back home' if event.at_home else ''}): {tail}"
    return f"binding {b.home_address} expired: {tail}"


# Counters of the pure logic that deserve a log line each time they move: denials (with
# their RFC 5944 §3.4 code) and requests dropped without a reply.
DENIAL_TEXT = {
    128: "reason unspecified",
    129: "administratively prohibited",
    130: "insufficient resources",
    131: "mobile node failed authentication",
    133: "registration Identification mismatch",
    134: "poorly formed request",
    136: "unknown home agent address",
}
SILENT_DROPS = ("malformed", "not_a_request", "unknown_extension", "unknown_mobile_node", "foreign_home_auth")


class LoggingLogic:
    """The pure home agent logic, plus one log line per denial or dropped request.

    The logic reports denials as counters (a denial changes no binding, so it is not a
    binding event); this wrapper turns each counter step into a line naming the sender.
    """

    def __init__(
        self,
        logic: ha.HomeAgentLogic,
        persist: Callable[[], None] | None = None,
        clock_offset: Callable[[], float] | None = None,
    ) -> None:
        self.logic = logic
        self.limited = RateLimitedLog(log)  # a flood of forged requests: counted, not a line each
        #: Writes the replay state; called after a request moved it, before the reply leaves.
        self.persist = persist
        #: The wall clock's current offset (the replay check follows a stepped clock).
        self.clock_offset = clock_offset
        #: Events that make the replies wait for the kernel (None: never; control only).
        self.hold_for: Callable[[ha.BindingEvent], bool] | None = None
        #: Replies wait while True: a Reply for a new or moved binding leaves only once the
        #: kernel tunnels to and decapsulates from its care-of address, because the node
        #: moves its traffic when the Reply arrives (make-before-break); a Reply for a
        #: removal once the binding's routes are gone (a node back home is answered on the
        #: home link, not through the tunnel). ``release()`` ends it.
        self.holding = False
        self._held: list[tuple[bytes, tuple[str, int]]] = []
        self._events: list[ha.BindingEvent] = []

    def release(self) -> None:
        self.holding = False

    def _take_events(self) -> None:
        while (event := self.logic.next_event()) is not None:
            self._events.append(event)
            if self.hold_for is not None and self.hold_for(event):
                self.holding = True

    def receive_datagram(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        if self.clock_offset is not None:
            offset = self.clock_offset()
            step = offset - self.logic.config.clock_offset
            if abs(step) > 1.0:
                log.warning("wall clock stepped by %+.0f s: the replay check follows it", step)
                self.logic.set_clock_offset(offset, now)
        before = dict(self.logic.counters)
        version = self.logic.replay_version
        self.logic.receive_datagram(data, addr, now)
        if self.persist is not None and self.logic.replay_version != version:
            self.persist()
        self._take_events()
        for name, value in self.logic.counters.items():
            if value == before.get(name, 0):
                continue
            if name.startswith("denied_"):
                code = int(name.removeprefix("denied_"))
                self.limited.warning(
                    name, "denied %d (%s) to %s:%d (%d so far)", code, DENIAL_TEXT.get(code, "see RFC 5944 §3.4"),
                    addr[0], addr[1], value,
                )
            elif name in SILENT_DROPS:
                self.limited.warning(name, "dropped a request from %s:%d: %s (%d so far)", addr[0], addr[1],
                                     name.replace("_", " "), value)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, tuple[str, int]]]:
        self._held += self.logic.datagrams_to_send(now)
        if self.holding:
            return []
        out, self._held = self._held, []
        return out

    def get_timer(self) -> float | None:
        return self.logic.get_timer()

    def handle_timer(self, now: float) -> None:
        self.logic.handle_timer(now)
        self._take_events()

    def next_event(self) -> ha.BindingEvent | None:
        self._take_events()
        return self._events.pop(0) if self._events else None


class GratuitousArp(Protocol):
    """Broadcasts one gratuitous ARP for `address` on `ifname` (router.net.arp): with the
    interface's own hardware address, or `hardware_address` (a node back home)."""

    def __call__(self, ifname: str, address: IPv4Address, hardware_address: bytes | None = None) -> None: ...


#: (interface, address) -> the link-layer address the kernel's neighbour table holds for it,
#: None if none (router.net.kernel.NeighbourTable.hardware_address); OSError on failure.
NeighbourLookup = Callable[[str, IPv4Address], bytes | None]


@dataclass
class HomeAgentDaemon:
    config: HomeAgentConfig
    adapter: KernelAdapter | None  # None = --control-only
    gratuitous_arp: GratuitousArp | None = None
    logic: ha.HomeAgentLogic = field(init=False)
    driver: MachineDriver | None = field(init=False, default=None)
    _plan_dirty: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _announce: list[IPv4Address] = field(init=False, default_factory=list)
    #: Home addresses whose node deregistered from home (§4.6): announced with its own MAC.
    _returned: list[IPv4Address] = field(init=False, default_factory=list)
    #: home address -> (care-of address it moved away from, until when it is still accepted)
    _previous: dict[IPv4Address, tuple[IPv4Address, float]] = field(init=False, default_factory=dict)
    move_grace: float = 3.0
    #: home address -> which of its two tunnel names carries the binding (flips on each move)
    _slots: dict[IPv4Address, int] = field(init=False, default_factory=dict)
    #: Replies wait for kernel plans: how many were asked for, how many are applied.
    _kernel_wanted: int = field(init=False, default=0)
    _kernel_done: int = field(init=False, default=0)
    _wrapper: LoggingLogic | None = field(init=False, default=None)
    #: At most this long does a Reply wait for the kernel (a stuck apply must not mute us).
    reply_hold_limit: float = 1.0
    #: Opens the RFC 3519 TUN (fd); None: no UDP data path (control only, or tests).
    open_udp_tun: Callable[[], int] | None = None
    #: Reads a node's own MAC off the home interface when it comes home (§4.6).
    neighbour_lookup: NeighbourLookup | None = None
    #: How long a node back home may take to appear in the neighbour table.
    neighbour_wait: float = 1.0
    tunnel: HomeAgentTunnel | None = field(init=False, default=None)

    _persist_failed: bool = field(init=False, default=False)
    _verify: SettledVerify | None = field(init=False, default=None)
    #: NTP seconds up to which the state file covers acceptances (None: nothing written yet).
    _lease_until: float | None = field(init=False, default=None)

    _arp_tasks: set[asyncio.Future[None]] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        udp = self.config.udp_tunnelling and (self.adapter is None or self.open_udp_tun is not None)
        self._new_logic(udp)

    # --- replay state (RFC 5944 §5.7) across restarts --------------------------------------

    @property
    def state_path(self) -> Path:
        return Path(self.config.state_dir) / f"replay-{self.config.address}.json"

    def _clock_offset(self) -> float:
        return wall_clock_offset(asyncio.get_running_loop().time)

    def _new_logic(self, udp_tunnelling: bool) -> None:
        self.logic = ha.HomeAgentLogic(
            logic_config(self.config, clock_offset=self._clock_offset(), udp_tunnelling=udp_tunnelling)
        )
        self._restore_replay_state()

    def _ntp_now(self) -> float:
        return asyncio.get_running_loop().time() + self.logic.config.clock_offset

    def _restore_replay_state(self) -> None:
        path = self.state_path
        try:
            data = read_state(path)
            state = parse_replay_state(data) if data is not None else {}
            lease = replay_lease(data) if data is not None else None
        except StateError as exc:
            # Nothing accepted before the restart can lie beyond now + tolerance (§5.7.1).
            now = asyncio.get_running_loop().time()
            floor = (ntp_seconds(now, self.logic.config.clock_offset) + self.config.replay_window) << 32
            log.error("replay state unreadable (%s): every node starts above now + %d s", exc, self.config.replay_window)
            self.logic.restore_replay_state({}, floor=floor)
            return
        if lease is not None:
            # Not a clean stop: anything up to the lease (+ tolerance) may have been accepted.
            floor = (int(lease) + 1 + self.config.replay_window) << 32
            log.warning("replay state: no clean stop before; every node starts above the lease "
                        "(%+.0f s from now) + %d s", lease - self._ntp_now(), self.config.replay_window)
            self.logic.restore_replay_state(state, floor=floor)
        else:
            self.logic.restore_replay_state(state)
        if state:
            log.info("replay state restored for %d mobile node(s) from %s", len(state), path)

    def extend_replay_lease(self) -> None:
        """Called after a Request was accepted, before its Reply leaves: keep the lease ahead."""
        now = self._ntp_now()
        if self._lease_until is not None and self._lease_until - now >= LEASE_RENEW_S:
            return
        self._write_state({"version": 2, "home_agent": str(self.config.address), "clean": False,
                           "lease_until": now + LEASE_S})
        self._lease_until = now + LEASE_S

    def persist_replay_state(self) -> None:
        """The clean-stop record: every node's last accepted Identification, exactly."""
        state = self.logic.replay_state()
        self._write_state({
            "version": 2,
            "home_agent": str(self.config.address),
            "clean": True,
            "nodes": [
                {"home_address": str(home), "spi": spi, "last_accepted": value}
                for (home, spi), value in sorted(state.items())
            ],
        })
        self._lease_until = None

    def _write_state(self, data: dict[str, object]) -> None:
        try:
            write_state(self.state_path, data)
        except OSError as exc:
            if not self._persist_failed:  # once: a read-only state dir must not flood the log
                log.error("cannot persist the replay state to %s: %s", self.state_path, exc)
            self._persist_failed = True
        else:
            self._persist_failed = False

    def _logging_logic(self) -> LoggingLogic:
        wrapper = LoggingLogic(self.logic, self.extend_replay_lease, self._clock_offset)
        if self.adapter is not None:
            wrapper.hold_for = _reply_waits_for_kernel
        self._wrapper = wrapper
        return wrapper

    def _release_replies(self) -> None:
        if self._wrapper is not None and self._wrapper.holding:
            self._wrapper.release()
            if self.driver is not None:
                self.driver.poke()

    # --- reload (SIGHUP) -------------------------------------------------------------------

    def reload(self, config: HomeAgentConfig) -> None:
        """Take a new, validated config; settings that need a restart keep their values."""
        old = self.config
        restart = [name for name in RESTART_SETTINGS if getattr(config, name) != getattr(old, name)]
        for name in restart:
            log.warning("reload: %s changed (%s -> %s): needs a restart, keeping %s",
                        name, getattr(old, name), getattr(config, name), getattr(old, name))
        merged = dataclasses.replace(config, **{name: getattr(old, name) for name in RESTART_SETTINGS})
        try:
            new_logic_config = logic_config(
                merged, clock_offset=self._clock_offset(), udp_tunnelling=self.logic.config.udp_tunnelling
            )
        except LocalProtocolError as exc:
            log.error("reload refused, keeping the last good config: %s", exc)
            return
        before = {node.home_address: node for node in old.mobile_nodes}
        after = {node.home_address: node for node in merged.mobile_nodes}
        added = sorted(str(h) for h in after.keys() - before.keys())
        removed = sorted(str(h) for h in before.keys() - after.keys())
        changed = sorted(str(h) for h in after.keys() & before.keys() if after[h] != before[h])
        self.config = merged
        self.logic.reconfigure(new_logic_config)
        log.info(
            "reload: %d mobile node(s); added %s; removed %s; changed %s; max_lifetime %d",
            len(merged.mobile_nodes), ",".join(added) or "-", ",".join(removed) or "-",
            ",".join(changed) or "-", merged.max_lifetime,
        )
        if self.driver is not None:
            self.driver.poke()  # deliver the removals (bindings of removed nodes) now
        self.persist_replay_state()

    def reload_from(self, path: str) -> bool:
        """SIGHUP: re-read ``path``; an invalid file is logged and changes nothing."""
        try:
            config = load_home_agent_config(path)
        except ConfigError as exc:
            log.error("reload refused, keeping the last good config: %s", exc)
            return False
        self.reload(config)
        remember_good_config(path, log)
        return True

    async def start(self) -> None:
        if self.adapter is not None:
            changed = await asyncio.to_thread(self.adapter.ensure_sysctls, SYSCTLS)
            changes = await asyncio.to_thread(self.adapter.reconcile, Plan())
            log.info("start: %d sysctl(s) set, %d leftover kernel object(s) removed", len(changed), len(changes))
        sock = udp_socket(str(self.config.address), self.config.port)
        fd: int | None = None
        if self.adapter is not None and self.config.udp_tunnelling and self.open_udp_tun is not None:
            try:
                fd = self.open_udp_tun()
            except OSError as exc:
                # No data path: refuse UDP tunnelling (129) rather than black-hole the node.
                log.warning("no RFC 3519 data path (%s): udp tunnelling refused", exc)
                self._new_logic(False)
                self.open_udp_tun = None
        if fd is not None:
            self.tunnel = HomeAgentTunnel(fd, home_agent=self.config.address, on_peer_silent=self._on_peer_silent)
            self.driver = MachineDriver(self._logging_logic(), self._on_event)
            self.driver.connection_made(self.tunnel.add_socket(sock, self.driver.datagram_received))
            log.info("udp tunnelling (RFC 3519) on: data path tun %s", UDP_TUNNEL_DEVICE)
        else:
            self.driver = await open_driver(self._logging_logic(), self._on_event, sock)
        log.info(
            "home agent %s listening on udp %d for %d mobile node(s)%s",
            self.config.address,
            self.config.port,
            len(self.config.mobile_nodes),
            " (control only)" if self.adapter is None else "",
        )

    def _on_peer_silent(self, peer: Peer) -> None:
        log.info("udp peer %s:%d (%s) silent: no tunnel data or keepalive", peer.source[0], peer.source[1], peer.home_address)

    def _on_event(self, event: ha.BindingEvent) -> None:
        log.info("%s", describe(event))
        if self.tunnel is not None:
            # The data path's peers are exactly the UDP-tunnelled bindings.
            self.tunnel.sync_bindings(self.logic.bindings().values())
        if isinstance(event, ha.BindingRenewed) and event.previous_care_of_address != event.binding.care_of_address:
            loop = asyncio.get_running_loop()
            home = event.binding.home_address
            self._previous[home] = (event.previous_care_of_address, loop.time() + self.move_grace)
            self._slots[home] = self._slots.get(home, 0) ^ 1  # the old tunnel keeps its name
            loop.call_later(self.move_grace + 0.05, self._plan_dirty.set)
        elif isinstance(event, (ha.BindingRemoved, ha.BindingExpired)):
            self._previous.pop(event.binding.home_address, None)
            self._slots.pop(event.binding.home_address, None)
        if isinstance(event, ha.BindingRemoved) and event.at_home:
            self._returned.append(event.binding.home_address)
        if self.adapter is not None and _reply_waits_for_kernel(event):
            self._kernel_wanted += 1
            asyncio.get_running_loop().call_later(self.reply_hold_limit, self._release_replies)
        if isinstance(event, ha.BindingAdded) or (
            isinstance(event, ha.BindingRenewed) and event.previous_care_of_address != event.binding.care_of_address
        ):
            self._announce.append(event.binding.home_address)
        self._plan_dirty.set()

    async def run_kernel_sync(self) -> None:
        """Apply the plan whenever bindings changed; coalesces bursts into one apply."""
        while True:
            await self._plan_dirty.wait()
            self._plan_dirty.clear()
            if self.adapter is None:
                self._announce.clear()
                self._returned.clear()
                continue
            # What this apply covers: events that arrive while it runs wait for the next one.
            announce, self._announce = self._announce, []
            returned, self._returned = self._returned, []
            now = asyncio.get_running_loop().time()
            self._previous = {home: (old, until) for home, (old, until) in self._previous.items() if until > now}
            previous = {home: old for home, (old, _) in self._previous.items()}
            bindings = list(self.logic.bindings().values())
            udp = UDP_TUNNEL_DEVICE if self.tunnel is not None else None
            # The moved binding's tunnel has the other of its two names (slots): the old one
            # keeps its ends, so adding the new one and moving the routes is one apply.
            plan = home_agent_plan(bindings, self.config.address, self.config.home_interface, previous, udp, self._slots)
            target = self._kernel_wanted
            try:
                # No kernel dump before the change (a moving node waits for it); the kernel is
                # read back and healed once changes have stopped for a moment.
                await asyncio.to_thread(self.adapter.apply_quick, plan)
                if self._verify is None:
                    self._verify = SettledVerify(self.adapter, self._settled_plan, delay=VERIFY_DELAY_S)
                self._verify.changed()
            except Exception as exc:  # kernel refused: log, retry on the next change or in 1 s
                log.error("kernel plan not applied: %s", exc)
                self._release_replies()  # the node retries; silence would not help it
                self._announce[:0], self._returned[:0] = announce, returned
                await asyncio.sleep(1.0)
                self._plan_dirty.set()
                continue
            self._kernel_done = max(self._kernel_done, target)
            if self._kernel_done >= self._kernel_wanted:
                self._release_replies()
            ifname = self.config.home_interface
            if self.gratuitous_arp is None or ifname is None:
                continue
            # In parallel with the Replies and the next applies (§4.6), not in their way.
            if announce:
                self._arp_task(self._announce_bindings(ifname, announce))
            for address in returned:  # proxy ARP for it is gone now (§4.6 order)
                self._arp_task(self._announce_return(ifname, address))

    def _arp_task(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._arp_tasks.add(task)
        task.add_done_callback(self._arp_tasks.discard)

    async def _announce_bindings(
        self, ifname: str, addresses: list[IPv4Address], hardware: bytes | None = None, *, bound: bool = True
    ) -> None:
        """RFC 5944 §4.6: broadcast a gratuitous ARP for each address, "retransmitted a small
        number of times" (``GRATUITOUS_ARP_COUNT``, ``GRATUITOUS_ARP_INTERVAL_S`` apart)
        because broadcasts on the link are not reliable: with our hardware address once
        proxying for a newly bound home address has started (``bound``), or with the node's
        own (``hardware``) for a node back home (not ``bound``). An address whose binding
        state changes meanwhile is no longer announced."""
        assert self.gratuitous_arp is not None
        pending = list(addresses)
        for attempt in range(GRATUITOUS_ARP_COUNT):
            if attempt:
                await asyncio.sleep(GRATUITOUS_ARP_INTERVAL_S)
            for address in list(pending):
                if (address in self.logic.bindings()) != bound:
                    pending.remove(address)  # bound, or gone, again: stop claiming it
                    continue
                try:
                    await asyncio.to_thread(self.gratuitous_arp, ifname, address, hardware)
                except OSError as exc:
                    log.warning("gratuitous ARP for %s failed: %s", address, exc)
                    pending.remove(address)

    async def _announce_return(self, ifname: str, address: IPv4Address) -> None:
        """RFC 5944 §4.6, a node back home: after accepting its deregistration the home agent
        "stops using proxy ARP ... and then performs a gratuitous ARP on behalf of the mobile
        node" whose sender hardware address is the node's own, retransmitted like the one for
        a new binding, in parallel with the Reply.

        The node's MAC comes from our neighbour table on the home interface: the node ARPs
        for us before sending its Request, and our Reply (now routed on the home link)
        makes the kernel resolve it. It is polled for up to ``neighbour_wait`` seconds; if it
        never appears, nothing is sent (any MAC we guessed could only be wrong).
        """
        assert self.gratuitous_arp is not None
        if self.neighbour_lookup is None:
            log.warning("node %s back home: no neighbour table to learn its link-layer address from; "
                        "no gratuitous ARP on its behalf (RFC 5944 §4.6)", address)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.neighbour_wait
        while True:
            if address in self.logic.bindings():
                return  # registered away again: we proxy for it again, nothing to announce
            try:
                hardware = await asyncio.to_thread(self.neighbour_lookup, ifname, address)
            except OSError as exc:
                log.warning("node %s back home: neighbour lookup on %s failed: %s; no gratuitous ARP",
                            address, ifname, exc)
                return
            if hardware is not None or loop.time() >= deadline:
                break
            await asyncio.sleep(NEIGHBOUR_POLL_S)
        if hardware is None:
            log.warning("node %s back home: no link-layer address for it on %s within %.1f s; "
                        "no gratuitous ARP on its behalf (RFC 5944 §4.6)", address, ifname, self.neighbour_wait)
            return
        mac = ":".join(f"{b:02x}" for b in hardware)
        log.info("node %s back home at %s on %s: gratuitous ARP x%d with its address (RFC 5944 §4.6)",
                 address, mac, ifname, GRATUITOUS_ARP_COUNT)
        await self._announce_bindings(ifname, [address], hardware, bound=False)

    def _settled_plan(self) -> Plan:
        """The kernel plan for the bindings now, for the read-back once changes settle."""
        now = asyncio.get_running_loop().time()
        previous = {home: old for home, (old, until) in self._previous.items() if until > now}
        udp = UDP_TUNNEL_DEVICE if self.tunnel is not None else None
        return home_agent_plan(list(self.logic.bindings().values()), self.config.address,
                               self.config.home_interface, previous, udp, self._slots)

    async def stop(self) -> None:
        if self._verify is not None:
            self._verify.cancel()
        for task in list(self._arp_tasks):
            task.cancel()
        if self.driver is not None:
            self.driver.close()
        self.persist_replay_state()  # a clean stop: the next start restores every node exactly
        if self.adapter is not None:
            changes = await asyncio.to_thread(self.adapter.teardown)
            log.info("stop: removed %d kernel object(s)", len(changes))
            await asyncio.to_thread(self.adapter.close)
        if self.tunnel is not None:
            self.tunnel.close()  # the TUN goes with its descriptor
            self.tunnel = None


# Settings bound to the socket, the kernel plan or the state file: a reload cannot change them.
RESTART_SETTINGS = ("address", "home_network", "port", "home_interface", "udp_tunnelling", "state_dir")


VERIFY_DELAY_S = 1.0  # quiet time before the kernel is read back after binding changes

#: RFC 5944 §4.6: the gratuitous ARP for a new binding, or for a node back home, "SHOULD be
#: retransmitted a small number of times": three, a fraction of a second apart (the router
#: announces itself the same way).
GRATUITOUS_ARP_COUNT = 3
GRATUITOUS_ARP_INTERVAL_S = 0.2
#: How often the neighbour table is read while waiting for a node back home to appear in it.
NEIGHBOUR_POLL_S = 0.05

#: Seconds of acceptances a lease write covers, and when it is renewed (time left).
LEASE_S = 2.0
LEASE_RENEW_S = 1.0


def replay_lease(data: dict[str, object]) -> float | None:
    """lease_until (NTP seconds) of a file a running home agent left (no clean stop); None
    after a clean stop; StateError when the file is not what this module writes."""
    if data.get("version") != 2 or not isinstance(data.get("clean"), bool):
        raise StateError("unknown replay state format")
    if data["clean"]:
        return None
    lease = data.get("lease_until")
    if not isinstance(lease, int | float) or isinstance(lease, bool):
        raise StateError("replay state lease without a time")
    return float(lease)


def parse_replay_state(data: dict[str, object]) -> dict[tuple[IPv4Address, int], int]:
    """The persisted replay state; StateError when it is not what persist_replay_state wrote."""
    nodes = data.get("nodes", [])
    if data.get("version") != 2 or not isinstance(nodes, list):
        raise StateError("unknown replay state format")
    state: dict[tuple[IPv4Address, int], int] = {}
    for entry in nodes:
        try:
            home = IPv4Address(entry["home_address"])
            spi, value = entry["spi"], entry["last_accepted"]
        except (TypeError, KeyError, ValueError):
            raise StateError(f"bad replay state entry {entry!r}") from None
        if not (isinstance(spi, int) and isinstance(value, int) and 0 <= value < 2**64):
            raise StateError(f"bad replay state entry {entry!r}")
        state[(home, spi)] = value
    return state


def open_udp_tunnel_device() -> int:
    return open_tun(UDP_TUNNEL_DEVICE, UDP_TUNNEL_MTU)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m router.ha", description="Mobile IPv4 home agent")
    parser.add_argument("--config", required=True, help="TOML file ([home_agent] and [[mobile_node]])")
    parser.add_argument("--control-only", action="store_true", help="answer registrations, never touch the kernel")
    parser.add_argument("--netns", help="program the kernel of this named network namespace")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--check", action="store_true", help="validate the config and exit")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace, config: HomeAgentConfig) -> None:
    adapter = None
    arp = None
    neighbours = None
    open_udp_tun: Callable[[], int] | None = None
    if not args.control_only:
        if args.netns is None:
            open_udp_tun = open_udp_tunnel_device
        elif config.udp_tunnelling:
            log.warning("--netns: no RFC 3519 data path (the TUN would live in our namespace); udp tunnelling refused")

        from router.net.arp import send_gratuitous_arp
        from router.net.kernel import NeighbourTable, Pyroute2Backend

        # pyroute2's synchronous IPRoute runs its own event loop: build and use it off ours.
        adapter = KernelAdapter(await asyncio.to_thread(Pyroute2Backend, HA_OWNERSHIP, args.netns))
        neighbours = await asyncio.to_thread(NeighbourTable, args.netns)

        def arp(ifname: str, address: IPv4Address, hardware_address: bytes | None = None) -> None:
            send_gratuitous_arp(ifname, address, hardware_address=hardware_address, netns=args.netns)

    daemon = HomeAgentDaemon(config, adapter, arp, open_udp_tun=open_udp_tun,
                             neighbour_lookup=neighbours.hardware_address if neighbours is not None else None)
    stop = shutdown_event(log)
    await daemon.start()
    reload_signal(log, lambda: daemon.reload_from(args.config))
    sync = asyncio.create_task(daemon.run_kernel_sync(), name="kernel-sync")
    try:
        await stop.wait()
    finally:
        sync.cancel()
        await asyncio.wait_for(daemon.stop(), 10)
        if neighbours is not None:
            await asyncio.to_thread(neighbours.close)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        if args.check:
            config = load_home_agent_config(args.config)
        else:  # a broken file falls back to the last good copy (logged with its line)
            config = load_config_or_last_good(args.config, load_home_agent_config, log)
    except ConfigError as exc:
        print(f"router.ha: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.config}: ok ({len(config.mobile_nodes)} mobile node(s))")
        return 0
    try:
        asyncio.run(serve(args, config))
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0
