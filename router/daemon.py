"""The mobile router daemon: the one composition root (``python -m router --config FILE``).

Theory of operation
-------------------
Everything that decides is pure and lives below: health tracking and uplink choice
(router.policy.health / uplink), the dual-system coordinator (router.policy.coordinator),
the registration machines (router.mip.mobilenode), the data plane (router.dataplane).
This module builds the drivers, feeds the pure parts their observations as events, and
executes what they ask for:

    uplink drivers --events--> health trackers --snapshots--> UplinkPolicy --SwitchUplink-->
    UplinkChanged --> Coordinator --intents--> MobilitySystem (inner/outer), StrongSwanVpn,
    KernelAdapter (router.dataplane plan) --outcomes--> Coordinator ...

Without ``[outer]``/``[vpn]`` the router runs one system (the inner one) directly over the
active uplink: each uplink change re-registers with the new care-of address, and the LAN
is moved onto the tunnel only after the home agent acknowledged the binding.

RFC 3519 (single system): unless ``udp_tunnel = "never"``, the inner system's sockets belong to
a ``MobileTunnel`` (router.udptunnel, TUN ``mip3519``), so registrations and tunnel data share
the care-of address's source port. "auto" asks for UDP tunnelling without the F flag (the home
agent assents only when it sees a NAT), "always" with it. A Registered event with UDP assented
attaches the tunnel to the socket and the LAN table's default goes into the TUN; a plain
registration, a deregistration or an expiry detaches it. When the home agent stops answering
keepalives (§4.10) the router re-registers: the NAT mapping may be gone.

RFC 3519 (dual system): the outer system does the same with its own ``MobileTunnel`` (TUN
``mip3519-out``) unless ``[outer] udp_tunnel = "never"``: with UDP assented, T's default
(IKE and ESP to the VPN gateway) goes into that TUN instead of ``mip-out-<i>``, so the nesting
crosses a NAT on the uplink (a 3G operator's, a hotspot's) as UDP 434. A plain outer
registration, the deregistration (inside, or at the outer home network) or an expiry detaches
it. The inner system never requests UDP tunnelling in the dual system (``[inner] udp_tunnel``
is not used there): outside it rides the VPN, inside it needs no NAT traversal.

Lifecycle: start (reconcile the kernel: leftovers of a crash are removed, our rules and fail-
closed routes installed before any uplink comes up) -> run -> first SIGTERM/SIGINT: deregister,
stop drivers, tear down what we own; a second signal exits at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from router.config import (
    ConfigError,
    MobilitySystemConfig,
    RouterConfig,
    UplinkConfig,
    load_router_config,
)
from router.dataplane import (
    INNER_TUNNEL_MTU,
    OUTER_UDP_TUNNEL_DEVICE,
    OUTER_UDP_TUNNEL_MTU,
    ROUTER_OWNERSHIP,
    UDP_TUNNEL_DEVICE,
    DataPlane,
    Tunnel,
    UplinkRoute,
    router_plan,
)
from router.lifecycle import (
    ReloadPlan,
    load_config_or_last_good,
    plan_router_reload,
    reload_signal,
    remember_good_config,
    security_association,
    shutdown_event,
)
from router.mip import mobilenode as mn
from router.mip.errors import LocalProtocolError
from router.mip.identification import NTP_UNIX_OFFSET
from router.net import KernelAdapter, Plan, SettledVerify
from router.policy import coordinator as co
from router.policy.domain import DomainParams, SmokeOutOutcome
from router.policy.health import HealthConfig, HealthTracker
from router.policy.uplink import (
    NoUplink,
    PolicyConfigError,
    StandbyWanted,
    SwitchUplink,
    UplinkPolicy,
    UplinkProfile,
)
from router.system import MobilitySystem, SystemEvent
from router.uplink import events as ue

log = logging.getLogger("router")


ROUTER_SYSCTLS = {
    "net/ipv4/ip_forward": "1",
    # Tunnelled and VPN paths are asymmetric by design.
    "net/ipv4/conf/all/rp_filter": "0",
    "net/ipv4/conf/default/rp_filter": "0",
}


def node_config(
    system: MobilitySystemConfig, config: RouterConfig, *, clock_offset: float, nemo: bool, udp_tunnel: str = "never"
) -> mn.MobileNodeConfig:
    """``udp_tunnel``: never -> no UDP Tunnel Request; auto -> request without F (the home
    agent tunnels in UDP only if it sees a NAT); always -> request with F (RFC 3519 §3.1)."""
    return mn.MobileNodeConfig(
        udp_tunnel=udp_tunnel != "never",
        udp_tunnel_force=udp_tunnel == "always",
        home_address=system.home_address,
        home_agent=system.home_agent,
        security_association=security_association(system.spi, system.algorithm, system.key.value, system.replay),
        lifetime=system.lifetime,
        mobile_networks=config.mobile_networks if nemo else (),
        reverse_tunnel=system.reverse_tunnel,
        clock_offset=clock_offset,
        home_agent_port=system.port,
    )


@dataclass
class UplinkInfo:
    config: UplinkConfig
    index: int
    up: bool = False
    address: IPv4Address | None = None
    gateway: IPv4Address | None = None
    dns: tuple[str, ...] = ()
    server_mac: str | None = None
    bssid: str | None = None
    ssid: str | None = None
    signal_dbm: int | None = None
    since: float = 0.0

    def route(self) -> UplinkRoute | None:
        if not self.up or self.address is None:
            return None
        return UplinkRoute(self.index, self.config.interface, self.address, self.gateway)


@dataclass
class Situation:
    name: str = "unknown"
    since: float = 0.0
    reason: str = "starting"


@dataclass
class RouterDaemon:
    config: RouterConfig
    adapter: KernelAdapter | None
    vpn: Any = None  # router.vpn.strongswan.StrongSwanVpn
    store: Any = None  # router.store.history.HistoryStore
    uplink_drivers: dict[str, Any] = field(default_factory=dict)
    probe_factory: Callable[[UplinkInfo, Callable[[int], None]], Any] | None = None
    #: router.udptunnel.MobileTunnel for RFC 3519 (single system only); None: never request it.
    udp_tunnel: Any = None
    #: The outer system's MobileTunnel (dual system only); None: the outer never requests it.
    outer_udp_tunnel: Any = None
    #: (uplink, callback) -> router.uplink.adverts.AdvertListener; None: no advertisement hints.
    advert_factory: Callable[[UplinkInfo, Callable[[Any], None]], Any] | None = None

    def __post_init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.started_at = self.loop.time()
        offset = time.time() - self.loop.time() + NTP_UNIX_OFFSET
        if self.config.outer is not None:
            self.udp_tunnel = None  # the dual system's inner system has no UDP data path
        else:
            self.outer_udp_tunnel = None
        udp_mode = self.config.inner.udp_tunnel if self.udp_tunnel is not None else "never"
        self.inner = MobilitySystem(
            "inner",
            node_config(self.config.inner, self.config, clock_offset=offset, nemo=True, udp_tunnel=udp_mode),
            self._on_system_event,
            tunnel=self.udp_tunnel,
            state_path=Path(self.config.state_dir) / "identification-inner.json",  # RFC 5944 §5.7.1 across restarts
        )
        if self.udp_tunnel is not None:
            self.udp_tunnel.on_peer_state = self._on_udp_peer_state
        self._single_udp = False  # the acknowledged binding is UDP-tunnelled (RFC 3519)
        self._outer_udp = False  # the acknowledged outer binding is UDP-tunnelled (RFC 3519)
        self.outer: MobilitySystem | None = None
        self.coordinator: co.Coordinator | None = None
        if self.config.outer is not None:
            outer_udp = self.config.outer.udp_tunnel if self.outer_udp_tunnel is not None else "never"
            self.outer = MobilitySystem(
                "outer",
                node_config(self.config.outer, self.config, clock_offset=offset, nemo=False, udp_tunnel=outer_udp),
                self._on_system_event,
                tunnel=self.outer_udp_tunnel,
                state_path=Path(self.config.state_dir) / "identification-outer.json",  # RFC 5944 §5.7.1
            )
            if self.outer_udp_tunnel is not None:
                self.outer_udp_tunnel.on_peer_state = self._on_outer_udp_peer_state
            domain = DomainParams(
                inner_home_agent=self.config.inner.home_agent,
                outer_home_agent=self.config.outer.home_agent,
                inside_prefixes=self.config.inner.inside_prefixes,
                outer_home_network=self.config.outer.home_network,
            )
            self.coordinator = co.Coordinator(
                co.CoordinatorParams(domain=domain, outer_home_address=self.config.outer.home_address), self.loop.time()
            )
        for system in (self.inner, self.outer):
            if system is not None:
                system.on_request = self._registration_sent
        self.uplinks = {u.name: UplinkInfo(u, i) for i, u in enumerate(self.config.uplinks)}
        self.health = {name: HealthTracker(name, self.loop.time(), HealthConfig()) for name in self.uplinks}
        self.policy = UplinkPolicy(
            [
                UplinkProfile(
                    name=u.name, kind=u.kind, priority=u.priority, metered=u.metered, min_signal_dbm=u.min_signal_dbm
                )
                for u in self.config.uplinks
            ]
        )
        self.active: str | None = None
        self.situation = Situation()
        self.counters: dict[str, int] = {}
        self.handovers: list[dict[str, Any]] = []
        # data plane inputs the intents move
        self.lan_route = co.LanRoute.HOLD
        self.outer_tunnel_coa: IPv4Address | None = None
        self.vpn_wanted = False
        self.virtual_ip: IPv4Address | None = None
        self.at_outer_home = False
        self._plan_lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._probers: dict[str, Any] = {}
        self._probe_tasks: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._single_pending: IPv4Address | None = None
        self._single_coa: IPv4Address | None = None  # acknowledged care-of address (single system)
        self._single_previous: IPv4Address | None = None  # the one acknowledged before it
        # outer system, make-before-break: the care-of address being registered and the one
        # acknowledged before outer_tunnel_coa (their tunnels decapsulate, unrouted)
        self._outer_pending: IPv4Address | None = None
        self._outer_previous: IPv4Address | None = None
        self._stopping = False
        self._verify = (
            SettledVerify(self.adapter, lambda: router_plan(self.dataplane()), delay=self.VERIFY_DELAY,
                          lock=self._plan_lock, stopped=lambda: self._stopping)
            if self.adapter is not None else None
        )
        self._last_handover_logged = 0  # coordinator handover numbers already in self.handovers
        self._adverts: dict[str, Any] = {}  # uplink -> AdvertListener
        self._heard: dict[str, dict[tuple[Any, ...], Any]] = {}  # uplink -> distinct sightings

    # --- helpers -------------------------------------------------------------------------

    def now(self) -> float:
        return self.loop.time()

    def count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def spawn(self, coroutine: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coroutine)
        task.set_name(name)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("%s failed: %r", name, t.exception())

        task.add_done_callback(done)

    # --- kernel ----------------------------------------------------------------------------

    def dataplane(self) -> DataPlane:
        routes = tuple(r for info in self.uplinks.values() if (r := info.route()) is not None)
        live = {r.address for r in routes}
        active = self.uplinks[self.active].route() if self.active else None
        inner: Tunnel | None = None
        inner_standby: tuple[Tunnel, ...] = ()
        if self.coordinator is None:
            # Single system: the LAN stays in the tunnel on the care-of address the home agent
            # acknowledged until a binding for the new one is acknowledged (make-before-break);
            # it goes only when that address's uplink is gone (fail closed). The tunnels on the
            # address being registered and on the one just left exist beside it, unrouted.
            home_agent = self.config.inner.home_agent
            if self.lan_route == co.LanRoute.DIRECT and self._single_coa is not None and self._single_coa in live:
                inner = Tunnel(self._single_coa, home_agent)
            inner_standby = tuple(
                Tunnel(address, home_agent)
                for address in (self._single_pending, self._single_previous)
                if address is not None and address in live and address != self._single_coa
            )
        elif self.lan_route == co.LanRoute.DIRECT and active is not None:
            inner = Tunnel(active.address, self.config.inner.home_agent)
        elif self.lan_route == co.LanRoute.VPN and self.virtual_ip is not None:
            inner = Tunnel(self.virtual_ip, self.config.inner.home_agent)
        outer = None
        outer_standby: tuple[Tunnel, ...] = ()
        t = None
        if self.config.outer is not None:
            outer_ha = self.config.outer.home_agent
            if self.vpn_wanted or self.virtual_ip is not None or self.at_outer_home:
                t = self.config.outer.home_address
            if self.outer_tunnel_coa is not None and not self.at_outer_home:
                # T's default goes into the tunnel on the acknowledged outer care-of address only.
                outer = Tunnel(self.outer_tunnel_coa, outer_ha)
            outer_standby = tuple(
                Tunnel(address, outer_ha)
                for address in (self._outer_pending, self._outer_previous)
                if address is not None and address in live and address != self.outer_tunnel_coa
            )
            if outer is not None or outer_standby:
                t = self.config.outer.home_address
        return DataPlane(
            lan_interface=self.config.lan_interface,
            mobile_networks=self.config.mobile_networks,
            inner_home_address=self.config.inner.home_address,
            uplinks=routes,
            inner=inner,
            outer=outer,
            outer_home_address=t,
            virtual_ip=self.virtual_ip if t is not None else None,
            home_uplink=active if self.at_outer_home else None,
            lan_address=self.config.lan_address,
            inner_standby=inner_standby,
            outer_standby=outer_standby,
            inner_in_place=self.coordinator is not None,
            outer_home_network=self.config.outer.home_network if self.config.outer else None,
            inner_udp=self.coordinator is None and self._single_udp,
            outer_udp=self._outer_udp,
        )

    async def sync_kernel(self) -> None:
        if self.adapter is None or self._stopping:
            return
        async with self._plan_lock:
            if self._stopping:
                return
            plan = router_plan(self.dataplane())
            # The quick path: no kernel dump before the change (a handover waits for it);
            # a verification follows once the changes have stopped for a moment.
            changes = await asyncio.to_thread(self.adapter.apply_quick, plan)
            if changes:
                log.debug("kernel: %d change(s)", len(changes))
                if self._verify is not None:
                    self._verify.changed()  # read back once the changes have settled

    VERIFY_DELAY = 1.0  # seconds without kernel changes before the kernel is read back

    # --- start / stop ------------------------------------------------------------------------

    async def start(self) -> None:
        if self.adapter is not None:
            await asyncio.to_thread(self.adapter.ensure_sysctls, ROUTER_SYSCTLS)
            changes = await asyncio.to_thread(self.adapter.reconcile, router_plan(self.dataplane()))
            log.info("start: kernel reconciled (%d change(s)); LAN fails closed until registered", len(changes))
        if self.vpn is not None:
            self.vpn.on_event = self._on_vpn_event
            self.vpn.start_listener(self.loop)
            with contextlib.suppress(Exception):
                # A VPN left up by a crashed run would keep V busy; start from a clean slate.
                await self.vpn.down()
        for name, driver in self.uplink_drivers.items():
            log.info("uplink %s: starting %s driver on %s", name, self.uplinks[name].config.kind, self.uplinks[name].config.interface)
            await driver.start()
        self._arm_timer()

    async def stop(self) -> None:
        log.info("stop: deregistering and removing kernel state")
        if self.coordinator is None:
            await self._deregister_single()
        self._stopping = True  # no kernel sync may start now; one in flight is awaited below
        if self._verify is not None:
            self._verify.cancel()
        for task in list(self._probe_tasks.values()) + list(self._tasks):
            task.cancel()
        for prober in self._probers.values():
            prober.close()
        for name in list(self._adverts):
            self._stop_adverts(name)
        if self._timer is not None:
            self._timer.cancel()
        for driver in self.uplink_drivers.values():
            with contextlib.suppress(Exception):
                await driver.stop()
        if self.vpn is not None:
            with contextlib.suppress(Exception):
                await self.vpn.down()
            self.vpn.stop_listener()
        self.inner.close()
        if self.outer is not None:
            self.outer.close()
        if self.adapter is not None:
            async with self._plan_lock:
                await asyncio.to_thread(self.adapter.apply, Plan())
                await asyncio.to_thread(self.adapter.close)
        for tunnel in (self.udp_tunnel, self.outer_udp_tunnel):
            if tunnel is not None:
                tunnel.close()  # after the routes into it are gone; the TUN goes with its fd
        if self.store is not None:
            self.store.close()

    async def _deregister_single(self, timeout: float = 1.5) -> None:
        """Graceful stop: tell the home agent to drop our binding (RFC 5944 §3.6.1.2), so
        it stops tunnelling to us; bounded, since the home agent may be unreachable."""
        info = self.uplinks.get(self.active) if self.active else None
        if self.inner.machine.binding is None or info is None or info.address is None:
            return
        try:
            await self.inner.deregister(info.address, info.address)
            deadline = self.now() + timeout
            while self.inner.machine.binding is not None and self.now() < deadline:
                await asyncio.sleep(0.05)
        except (OSError, LocalProtocolError) as exc:
            log.info("stop: no deregistration: %s", exc)

    # --- reload (SIGHUP) ------------------------------------------------------------------------

    def reload(self, config: RouterConfig) -> ReloadPlan:
        """Apply a new, valid config: uplink priority/metered/min signal (policy profiles) and
        each system's security association and lifetime (a new machine re-registers at once);
        everything else is logged as needing a restart and keeps its running value."""
        plan = plan_router_reload(self.config, config)
        try:
            profiles = [
                UplinkProfile(
                    name=u.name, kind=u.kind, priority=u.priority, metered=u.metered, min_signal_dbm=u.min_signal_dbm
                )
                for u in plan.config.uplinks
                if u.name in plan.uplinks
            ]
        except PolicyConfigError as exc:
            log.error("reload refused, keeping the last good config: %s", exc)
            return plan
        self.config = plan.config
        for change in plan.applied:
            log.info("reload: applied %s", change)
        if plan.needs_restart:
            log.warning("reload: needs a restart (running with the old values): %s", ", ".join(plan.needs_restart))
        if not plan.applied and not plan.needs_restart:
            log.info("reload: no change")
        for uplink in plan.config.uplinks:
            self.uplinks[uplink.name].config = uplink
        for profile in profiles:
            self.policy.update_profile(profile)
        offset = time.time() - self.loop.time() + NTP_UNIX_OFFSET
        for name in plan.systems:
            system = self.inner if name == "inner" else self.outer
            system_config = plan.config.inner if name == "inner" else plan.config.outer
            if system is None or system_config is None:
                continue
            binding = system.machine.binding
            tunnel = self.udp_tunnel if name == "inner" else self.outer_udp_tunnel
            udp_mode = system_config.udp_tunnel if tunnel is not None else "never"
            system.reconfigure(
                node_config(system_config, plan.config, clock_offset=offset, nemo=name == "inner", udp_tunnel=udp_mode)
            )
            if binding is not None and not self._stopping:
                log.info("reload: %s re-registers with the new settings (coa %s)", name, binding.care_of_address)
                self.spawn(
                    system.register(binding.care_of_address, attempt=system.attempt, via_vpn=system.via_vpn),
                    f"{name}-register",
                )
        self._after_input()
        return plan

    # --- timers ------------------------------------------------------------------------------

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        deadlines = [t for t in (tracker.get_timer() for tracker in self.health.values()) if t is not None]
        if (t := self.policy.get_timer()) is not None:
            deadlines.append(t)
        if self.coordinator is not None and (t := self.coordinator.get_timer()) is not None:
            deadlines.append(t)
        if deadlines:
            self._timer = self.loop.call_at(min(deadlines), self._on_timer)

    def _on_timer(self) -> None:
        now = self.now()
        for tracker in self.health.values():
            tracker.handle_timer(now)
        if self.coordinator is not None:
            self.coordinator.handle_timer(now)
        self._after_input()

    def _after_input(self) -> None:
        """Pull every pure component's output after any input, then re-arm the timer."""
        now = self.now()
        for name, tracker in self.health.items():
            while (change := tracker.next_event()) is not None:
                log.info("%s", change)
            self.policy.observe(tracker.snapshot(), self._available(name), now)
        for decision in self.policy.evaluate(now):
            self._on_policy_decision(decision)
        self._pump_coordinator()
        self._arm_timer()

    def _available(self, name: str) -> bool:
        info = self.uplinks[name]
        return info.up and info.address is not None

    # --- uplinks -----------------------------------------------------------------------------

    def on_uplink_event(self, event: ue.UplinkEvent) -> None:
        info = self.uplinks.get(event.name)
        if info is None:
            return
        now = self.now()
        tracker = self.health[event.name]
        if isinstance(event, ue.LinkUp):
            changed = (info.address, info.gateway) != (IPv4Address(event.address), IPv4Address(event.gateway) if event.gateway else None)
            info.up, info.address = True, IPv4Address(event.address)
            info.gateway = IPv4Address(event.gateway) if event.gateway else None
            info.dns, info.server_mac, info.since = event.dns, event.server_mac, now
            log.info("uplink %s up: %s gw %s on %s", event.name, info.address, info.gateway, event.ifname)
            tracker.carrier(True, now)
            if self.adapter is not None:
                self.adapter.forget_device(event.ifname)  # a re-created ppp0 lost its routes
            self._start_prober(info)
            self._start_adverts(info)
            self.spawn(self.sync_kernel(), "kernel-sync")
            if changed and self.active == event.name:
                self._active_uplink_changed("new address on the active uplink")
        elif isinstance(event, (ue.LinkDown, ue.Disassociated)):
            if isinstance(event, ue.LinkDown) or info.config.kind == "wlan":
                was_up = info.up
                info.up = False
                if isinstance(event, ue.LinkDown):
                    info.address = None
                tracker.carrier(False, now)
                if self.adapter is not None and isinstance(event, ue.LinkDown):
                    self.adapter.forget_device(info.config.interface)
                self._stop_prober(event.name)
                self._stop_adverts(event.name)
                if was_up:
                    log.info("uplink %s down: %s", event.name, event.reason)
        elif isinstance(event, ue.SignalReport):
            info.signal_dbm = event.dbm
            tracker.signal(event.dbm, now)
        elif isinstance(event, ue.Associated):
            info.bssid, info.ssid, info.signal_dbm = event.bssid, event.ssid, event.signal
            tracker.signal(event.signal, now)
        elif isinstance(event, ue.ModemState):
            info.signal_dbm = event.signal_dbm
            tracker.signal(event.signal_dbm, now)
            if event.problem:
                log.warning("uplink %s modem: %s", event.name, event.problem)
        self._after_input()

    def _start_prober(self, info: UplinkInfo) -> None:
        name = info.config.name
        self._stop_prober(name)
        if self.probe_factory is None or info.address is None:
            return
        tracker = self.health[name]

        def answered(key: int) -> None:
            tracker.probe_answered((name, key), self.now())
            self._after_input()

        try:
            prober = self.probe_factory(info, answered)
            prober.open()
        except OSError as exc:
            log.warning("uplink %s: no health probes (%s)", name, exc)
            return
        self._probers[name] = prober
        self._probe_tasks[name] = asyncio.ensure_future(self._probe_loop(name, prober))

    def _stop_prober(self, name: str) -> None:
        task = self._probe_tasks.pop(name, None)
        if task is not None:
            task.cancel()
        prober = self._probers.pop(name, None)
        if prober is not None:
            prober.close()

    async def _probe_loop(self, name: str, prober: Any) -> None:
        tracker = self.health[name]
        while True:
            due = tracker.next_probe_at()
            if due is None:
                await asyncio.sleep(0.5)
                continue
            await asyncio.sleep(max(0.0, due - self.now()))
            key = prober.send()
            tracker.probe_sent((name, key), self.now())
            self._arm_timer()

    # --- domain hints: agent advertisements and history (conjectures only choose what to try
    # first; only an authenticated direct reply from the inner home agent proves "inside") ----

    MAX_SIGHTINGS = 4  # distinct advertisers per attachment (a flood of forged ones adds nothing)

    def _start_adverts(self, info: UplinkInfo) -> None:
        name = info.config.name
        self._stop_adverts(name)
        self._heard[name] = {}
        if self.advert_factory is None or self.coordinator is None:
            return
        try:
            listener = self.advert_factory(info, functools.partial(self._on_advert, name))
            listener.open()
        except OSError as exc:
            log.warning("uplink %s: no agent advertisement hints (%s)", name, exc)
            self.count("adverts_open_failed")
            return
        self._adverts[name] = listener
        listener.new_link()
        listener.solicit()  # RFC 5944 §2.4: an agent answers now instead of at its next advert

    def _stop_adverts(self, name: str) -> None:
        listener = self._adverts.pop(name, None)
        if listener is not None:
            listener.close()

    def _on_advert(self, name: str, heard: Any) -> None:
        from router.policy.domain import conjecture_from_advertisements

        sightings = self._heard.setdefault(name, {})
        key = (heard.source, heard.home_agent, heard.foreign_agent)
        if key in sightings or len(sightings) >= self.MAX_SIGHTINGS:
            return  # the agent's periodic repeat (or one forger too many): nothing new
        sightings[key] = heard
        self.count("adverts_heard")
        info = self.uplinks[name]
        if self.coordinator is None or self.active != name:
            return
        conjecture = conjecture_from_advertisements([heard], self.coordinator.params.domain)
        log.info("uplink %s: agent advertisement from %s -> hint %s", name, heard.source, conjecture)
        self.coordinator.handle_event(co.ConjectureFormed(name, info.address, conjecture), self.now())
        self._after_input()

    def _hints(self, info: UplinkInfo | None) -> tuple[Any, ...]:
        """Conjectures known at attach time: network context history and adverts already heard."""
        if info is None or self.coordinator is None:
            return ()
        from router.policy.domain import conjecture_from_advertisements, conjecture_from_history

        params = self.coordinator.params.domain
        hints = []
        if self.store is not None:
            try:
                records = self.store.recall_contexts([("gateway", info.server_mac), ("bssid", info.bssid)])
            except Exception as exc:  # a broken history must never stop a handover
                log.warning("history recall failed: %s", exc)
                records = []
            if records:
                hints.append(conjecture_from_history(records, time.time(), params))
        heard = self._heard.get(info.config.name)
        if heard:
            hints.append(conjecture_from_advertisements(heard.values(), params))
        for hint in hints:
            log.info("uplink %s: hint %s", info.config.name, hint)
        return tuple(hints)

    def _on_policy_decision(self, decision: Any) -> None:
        if isinstance(decision, SwitchUplink):
            log.info("%s", decision.reason)
            previous = self.active
            self.active = decision.to_uplink
            self.count("uplink_switches_planned" if decision.planned else "uplink_switches_unplanned")
            self._active_uplink_changed(decision.reason, previous=previous, planned=decision.planned)
        elif isinstance(decision, NoUplink):
            log.warning("%s", decision.reason)
            self.active = None
            self._active_uplink_changed(decision.reason)
        elif isinstance(decision, StandbyWanted):
            log.debug("%s", decision.reason)

    def _active_uplink_changed(self, reason: str, *, previous: str | None = None, planned: bool = False) -> None:
        info = self.uplinks[self.active] if self.active else None
        now = self.now()
        self.handovers.append(
            {"at": time.time(), "kind": "uplink", "from": previous, "to": self.active, "reason": reason, "planned": planned, "phases": []}
        )
        del self.handovers[:-200]
        if self.coordinator is not None:
            self.coordinator.handle_event(
                co.UplinkChanged(
                    name=self.active or "",
                    care_of_address=info.address if info else None,
                    gateway=info.gateway if info else None,
                    kind=info.config.kind if info else "",
                    hints=self._hints(info),
                ),
                now,
            )
            self._pump_coordinator()
        else:
            self._single_system_move(info)

    # --- single system (no [outer]/[vpn]) ------------------------------------------------------

    def _single_system_move(self, info: UplinkInfo | None) -> None:
        if info is None or info.address is None:
            self.lan_route = co.LanRoute.HOLD
            self.spawn(self.sync_kernel(), "kernel-sync")
            return
        self._single_pending = info.address
        # A tunnel that decapsulates on the new address must exist when the home agent moves
        # the binding (it does so on the Request, before we have its Reply). While the old
        # path still carries the LAN (a planned switch), build it first, then register; when
        # the old path is gone, every millisecond counts: both at once.
        old_path_works = self.lan_route == co.LanRoute.DIRECT and any(
            uplink.address == self._single_coa for uplink in self.uplinks.values() if uplink.up
        )
        if old_path_works and self._single_coa != info.address:
            self.spawn(self._prepare_then_register(info.address), "inner-register")
        else:
            self.spawn(self.inner.register(info.address), "inner-register")
            self.spawn(self.sync_kernel(), "kernel-sync")

    async def _prepare_then_register(self, care_of_address: IPv4Address) -> None:
        await self.sync_kernel()
        if self._single_pending == care_of_address:
            await self.inner.register(care_of_address)

    # --- coordinator --------------------------------------------------------------------------

    def _pump_coordinator(self) -> None:
        if self.coordinator is None:
            return
        while (intent := self.coordinator.next_intent()) is not None:
            log.info("intent %s: %s", type(intent).__name__, getattr(intent, "reason", ""))
            self.spawn(self._execute(intent), type(intent).__name__)
        self._update_situation()

    def _feed(self, event: co.Event) -> None:
        if self.coordinator is None:
            return
        self.coordinator.handle_event(event, self.now())
        self._after_input()

    async def _execute(self, intent: co.Intent) -> None:
        if isinstance(intent, co.RegisterInner):
            await self.inner.register(intent.care_of_address, attempt=intent.attempt, via_vpn=intent.via_vpn)
        elif isinstance(intent, co.RegisterOuter):
            assert self.outer is not None
            self.at_outer_home = False
            # Make-before-break: T keeps riding the tunnel on the acknowledged care-of address
            # (while its uplink lives); the tunnel on the new one is built first, so it
            # decapsulates as soon as the home agent moves the binding (on the Request). T's
            # route moves on the Reply (_on_system_event), one route replace.
            self._outer_pending = intent.care_of_address
            await self.sync_kernel()
            await self.outer.register(intent.care_of_address)
        elif isinstance(intent, co.DeregisterOuter):
            assert self.outer is not None and self.config.outer is not None
            # At the outer home network the home agent tunnels to the old care-of address
            # until it processed the deregistration: that tunnel stays, unrouted. Inside, the
            # outer system is not in use at all.
            self._outer_previous = self.outer_tunnel_coa if intent.at_home and not self._outer_udp else None
            self._outer_pending = None
            self.outer_tunnel_coa = None
            self.at_outer_home = intent.at_home
            self._outer_udp_detach()
            await self.sync_kernel()
            info = self.uplinks[self.active] if self.active else None
            if info is None or info.address is None:
                self._feed(co.OuterDenied(None))
                return
            if intent.at_home:
                # §4.6: back home, announce T with our own MAC so the home link (the VPN
                # gateway among them) stops sending T's packets to the home agent's proxy:
                # "before transmitting the (de)Registration Request"; the retransmissions
                # "SHOULD proceed in parallel" with it (a task: cancelled on stop).
                home, ifname = self.config.outer.home_address, info.config.interface
                if await self._announce_home(ifname, home):
                    self.spawn(self._announce_home(ifname, home, count=2, wait_first=True), "announce-home")
                # RFC 5944 §3.6.1.2: at home, care-of address = home address, sent from it.
                await self.outer.deregister(home, home)
            else:
                await self.outer.deregister(info.address)
        elif isinstance(intent, co.BringVpnUp):
            await self._vpn_up()
        elif isinstance(intent, co.TearVpnDown):
            await self._vpn_down(intent.reason)
        elif isinstance(intent, co.SwitchLanRoute):
            self.lan_route = intent.to
            await self.sync_kernel()
            self._feed(co.RoutesSwitched(intent.to))
        elif isinstance(intent, co.SmokeOut):
            answer = await self.inner.smoke_out(intent.care_of_address, 0.7)
            if answer is None:
                self._feed(co.SmokeOutResult(intent.care_of_address, SmokeOutOutcome.TIMEOUT))
            else:
                self._feed(
                    co.SmokeOutResult(
                        intent.care_of_address,
                        SmokeOutOutcome.REPLIED,
                        code=answer.code,
                        responder=IPv4Address(answer.responder),
                        authenticated=answer.authenticated,
                    )
                )
        elif isinstance(intent, co.RecordContext):
            self._record_context(intent)

    async def _announce_home(self, ifname: str, address: IPv4Address, count: int = 1, wait_first: bool = False) -> bool:
        """`count` gratuitous ARPs for `address` with our own MAC, 0.1 s apart (and 0.1 s
        before the first with `wait_first`); False when one could not be sent."""
        if self.adapter is None:
            return False
        from router.net.arp import send_gratuitous_arp

        for attempt in range(count):
            if attempt or wait_first:
                await asyncio.sleep(0.1)
            try:
                await asyncio.to_thread(send_gratuitous_arp, ifname, address)
            except OSError as exc:
                log.warning("gratuitous ARP for %s on %s: %s", address, ifname, exc)
                return False
        return True

    async def _vpn_up(self) -> None:
        if self.vpn is None:
            self._feed(co.VpnFailed("no [vpn] configured"))
            return
        self.vpn_wanted = True
        await self.sync_kernel()  # T on mip-home and its table before IKE leaves from T
        try:
            state = await self.vpn.up()
        except Exception as exc:
            log.warning("vpn up failed: %s", exc)
            self.vpn_wanted = False
            await self.sync_kernel()
            self._feed(co.VpnFailed(str(exc)))
            return
        self.virtual_ip = state.virtual_ip
        await self.sync_kernel()
        self._feed(co.VpnUp(state.virtual_ip))

    async def _vpn_down(self, reason: str) -> None:
        if self.vpn is not None:
            try:
                await self.vpn.down()
            except Exception as exc:
                log.warning("vpn down: %s", exc)
        self.vpn_wanted = False
        self.virtual_ip = None
        await self.sync_kernel()
        self._feed(co.VpnDown(reason))

    def _on_vpn_event(self, event: Any) -> None:
        if event.kind == "down" and self.virtual_ip is not None:
            log.warning("vpn went down: %s", event.reason)
            self.virtual_ip = None
            self.spawn(self.sync_kernel(), "kernel-sync")
            self._feed(co.VpnDown(event.reason))

    def _record_context(self, intent: co.RecordContext) -> None:
        info = self.uplinks.get(intent.uplink)
        if self.store is None or info is None:
            return
        verdict = str(intent.verdict).lower()
        for kind, mac in (("gateway", info.server_mac), ("bssid", info.bssid)):
            if mac:
                with contextlib.suppress(ValueError):
                    self.store.remember_context(kind, mac, verdict, time.time(), proven=intent.proven)

    # --- registration outcomes -----------------------------------------------------------------

    def _on_system_event(self, tagged: SystemEvent) -> None:
        event = tagged.event
        now = self.now()
        self.count(f"{tagged.system}.{type(event).__name__}")
        self._registration_outcome(tagged.system, event)
        if self.coordinator is None:
            self._single_system_outcome(event)
            return
        if tagged.system == "inner":
            if isinstance(event, mn.Registered):
                self.coordinator.handle_event(
                    co.InnerRegistered(event.care_of_address, direct=not tagged.via_vpn, attempt=tagged.attempt), now
                )
            elif isinstance(event, mn.RegistrationDenied):
                self.coordinator.handle_event(co.InnerDenied(event.code, tagged.attempt), now)
            elif isinstance(event, (mn.RegistrationTimeout, mn.BindingExpired)):
                self.coordinator.handle_event(co.InnerLost(tagged.attempt, type(event).__name__), now)
        else:
            if isinstance(event, mn.Registered):
                self._outer_udp_update(event)
                self._outer_acknowledged(event.care_of_address)
                self.coordinator.handle_event(co.OuterRegistered(event.care_of_address), now)
            elif isinstance(event, mn.Deregistered):
                self._outer_udp_detach()
                self.coordinator.handle_event(co.OuterDeregistered(), now)
            elif isinstance(event, mn.RegistrationDenied):
                self.coordinator.handle_event(co.OuterDenied(event.code), now)
            elif isinstance(event, (mn.RegistrationTimeout, mn.BindingExpired)):
                if isinstance(event, mn.BindingExpired) and self._outer_udp_detach():
                    self.spawn(self.sync_kernel(), "kernel-sync")
                self.coordinator.handle_event(co.OuterDenied(None), now)
        self._after_input()

    def _outer_acknowledged(self, care_of_address: IPv4Address) -> None:
        """The outer home agent acknowledged ``care_of_address``: T's default moves into its
        tunnel (built when the registration left) by one route replace; the tunnel on the
        care-of address before stays, unrouted, until its uplink goes or the next move."""
        if care_of_address != self._outer_pending:
            return  # a renewal, or a late answer to a request superseded since
        self._outer_pending = None
        if self.at_outer_home or care_of_address == self.outer_tunnel_coa:
            return
        if self.outer_tunnel_coa is not None:
            self._outer_previous = self.outer_tunnel_coa
        self.outer_tunnel_coa = care_of_address
        log.info("outer route -> tunnel from %s (binding acknowledged%s)", care_of_address,
                 ", udp tunnelling behind nat" if self._outer_udp else "")
        self.spawn(self.sync_kernel(), "kernel-sync")

    # --- RFC 3519 for the outer system (dual system) -----------------------------------------

    def _outer_udp_update(self, event: mn.Registered) -> None:
        """Every acknowledged outer registration (a move or a renewal) says whether the home
        agent tunnels in UDP (RFC 3519 §3.2): attach the data path to the socket the request
        left from (§4.4: data and keepalives share its port), or detach it. T's default follows
        at the next kernel sync; a renewal that changes the mode syncs at once."""
        tunnel, outer = self.outer_udp_tunnel, self.config.outer
        sock = self.outer.socket if self.outer is not None else None
        was = self._outer_udp
        if tunnel is None or sock is None or outer is None or not event.udp_tunnel:
            self._outer_udp_detach()
        else:
            tunnel.attach(sock, (str(outer.home_agent), outer.port), event.udp_keepalive_interval)
            self._outer_udp = True
        if self._outer_udp != was and event.care_of_address == self.outer_tunnel_coa:
            log.info("outer route -> %s (renewal, coa %s)", "udp tunnel" if self._outer_udp else "ip-in-ip tunnel",
                     event.care_of_address)
            self.spawn(self.sync_kernel(), "kernel-sync")

    def _outer_udp_detach(self) -> bool:
        """Back to IP-in-IP (or no outer tunnel at all); True when it was UDP-tunnelled."""
        was, self._outer_udp = self._outer_udp, False
        if self.outer_udp_tunnel is not None and self.outer_udp_tunnel.attached:
            self.outer_udp_tunnel.detach()
        if was:
            log.info("outer: udp tunnel detached")
        return was

    def _on_outer_udp_peer_state(self, alive: bool) -> None:
        """§4.10: the outer home agent stopped answering keepalives; the NAT mapping may be
        gone, so re-register the acknowledged care-of address (a renewal for the coordinator)."""
        if alive:
            log.info("outer home agent answers udp keepalives again")
            return
        log.warning("outer home agent silent on the udp tunnel (RFC 3519 §4.10): re-registering")
        self.count("outer_udp_peer_silent")
        coa = self.outer_tunnel_coa
        if self.outer is not None and coa is not None and self._outer_pending is None and not self._stopping \
                and self._uplink_of(coa) is not None:
            self.spawn(self.outer.register(coa), "outer-register")

    # --- registrations as free health probes (issue 6: they cost nothing extra) -------------

    REGISTRATION_PROBE_TIMEOUT = 5.0  # a registration may cross the home agent's kernel apply

    def _uplink_of(self, address: IPv4Address) -> str | None:
        return next((name for name, info in self.uplinks.items() if info.up and info.address == address), None)

    def _registration_sent(self, system: str, care_of_address: IPv4Address) -> None:
        """A registration left from an uplink's own address (not V over the VPN): a probe."""
        uplink = self._uplink_of(care_of_address)
        if uplink is not None:
            self.health[uplink].probe_sent(("registration", system), self.now(), self.REGISTRATION_PROBE_TIMEOUT)

    def _registration_outcome(self, system: str, event: mn.Event) -> None:
        if isinstance(event, (mn.Registered, mn.Deregistered)):
            uplink = self._uplink_of(event.care_of_address) if event.care_of_address else None
            if uplink is not None:
                self.health[uplink].probe_answered(("registration", system), self.now())
                self.count("registration_round_trips")
        elif isinstance(event, mn.RegistrationTimeout):
            uplink = self._uplink_of(event.care_of_address) if event.care_of_address else None
            if uplink is not None:
                self.health[uplink].probe_lost(("registration", system), self.now())

    def _single_system_outcome(self, event: mn.Event) -> None:
        if isinstance(event, mn.Registered) and self.active:
            info = self.uplinks[self.active]
            if info.address == event.care_of_address:
                was_udp = self._single_udp
                udp = self._udp_attach(event)
                moved = self._single_coa != event.care_of_address or self.lan_route != co.LanRoute.DIRECT or udp != was_udp
                self._single_udp = udp
                if self._single_coa is not None and self._single_coa != event.care_of_address:
                    # Its tunnel stays (unrouted) for what the home agent sent before the move.
                    self._single_previous = self._single_coa
                self._single_coa = event.care_of_address
                if self._single_pending == event.care_of_address:
                    self._single_pending = None
                self.lan_route = co.LanRoute.DIRECT
                self._set_situation("single", f"registered with {self.config.inner.home_agent} via {self.active}")
                if moved:
                    log.info(
                        "lan route -> tunnel from %s via %s (binding acknowledged%s)",
                        event.care_of_address,
                        self.active,
                        ", udp tunnelling behind nat" if udp else "",
                    )
                self.spawn(self.sync_kernel(), "kernel-sync")
        elif isinstance(event, mn.BindingExpired):
            log.warning("lan route held: binding with %s expired", self.config.inner.home_agent)
            self.lan_route = co.LanRoute.HOLD
            self._single_coa = None
            self._udp_detach()
            self.spawn(self.sync_kernel(), "kernel-sync")
        elif isinstance(event, mn.Deregistered):
            self._udp_detach()
        self._after_input()

    def _udp_attach(self, event: mn.Registered) -> bool:
        """Attach the RFC 3519 data path when the home agent assented; else detach it."""
        tunnel, sock = self.udp_tunnel, self.inner.socket
        if tunnel is None or sock is None or not event.udp_tunnel:
            self._udp_detach()
            return False
        tunnel.attach(sock, (str(self.config.inner.home_agent), self.config.inner.port), event.udp_keepalive_interval)
        return True

    def _udp_detach(self) -> None:
        self._single_udp = False
        if self.udp_tunnel is not None and self.udp_tunnel.attached:
            self.udp_tunnel.detach()
            log.info("udp tunnel detached")

    def _on_udp_peer_state(self, alive: bool) -> None:
        if alive:
            log.info("home agent answers udp keepalives again")
            return
        info = self.uplinks.get(self.active) if self.active else None
        log.warning("home agent silent on the udp tunnel (RFC 3519 §4.10): re-registering")
        self.count("udp_peer_silent")
        if info is not None and info.address is not None and not self._stopping:
            self.spawn(self.inner.register(info.address), "inner-register")

    # --- status --------------------------------------------------------------------------------

    def _set_situation(self, name: str, reason: str) -> None:
        if name != self.situation.name:
            log.info("situation %s -> %s: %s", self.situation.name, name, reason)
            self.situation = Situation(name, time.time(), reason)

    def _update_situation(self) -> None:
        if self.coordinator is None:
            return
        state = str(self.coordinator.state)
        # ROAMING is "outside, only the outer registration follows the uplink".
        name = {"inside": "inside", "outside": "outside", "roaming": "outside", "outer_home": "outer_home"}.get(state)
        if name is not None:
            decisions = self.coordinator.decisions()
            # "<loop time> from -> to: trigger: why": the page shows the why, not our clock.
            reason = decisions[-1].split(" ", 1)[-1] if decisions else state
            self._set_situation(name, reason)
        finished = [r for r in self.coordinator.handover_log() if r.to_state is not None]
        for record in finished:
            if record.number <= self._last_handover_logged:
                continue
            self._last_handover_logged = record.number
            entry = situation_entry(record, time.time() - self.now())
            log.info("handover %d %s -> %s via %s: %s", record.number, entry["from"], entry["to"], record.uplink,
                     ", ".join(f"{p['name']} +{p['at_ms']:.0f}ms" for p in entry["phases"]))
            self.handovers.append(entry)
            del self.handovers[:-200]
            if self.store is not None:
                self.store.append_handover(time.time(), entry)

    def _interface_counters(self, interface: str) -> Any:
        """Byte counters of ``interface`` (router.observe; cached for a second), or None."""
        from router.observe import CounterCache

        cache = getattr(self, "_counter_cache", None)
        if cache is None:
            cache = self._counter_cache = CounterCache()
        return cache.get(interface)

    def _registration_status(self, system: MobilitySystem, now: float) -> dict[str, Any]:
        """The system's registration object; ``last_message`` is the meaning of ``last_code``
        (RFC 5944 §3.4) when the last event was a reply, else what happened (a timeout, ...)."""
        entry = system.status(now)
        code, event = system.last_code, system.last_event
        if code is not None and isinstance(event, (mn.Registered, mn.RegistrationDenied)):
            text = mn.REPLY_CODE_TEXT.get(code, f"code {code}")
            entry["last_message"] = text.removeprefix("registration ") if code < 64 else f"denied: {text}"
        return entry

    def _vpn_status(self, unix_now: float) -> dict[str, Any]:
        """The VPN object. SA age and bytes come from the driver's cached list-sas reading
        (refreshed in a worker thread, never on this call's time); null while unknown."""
        state = "up" if self.virtual_ip else ("connecting" if self.vpn_wanted else "down")
        fields: dict[str, Any] = {"sa_age_s": None, "established_at": None, "tx_bytes": None, "rx_bytes": None}
        stats = getattr(self.vpn, "stats", None)
        if state != "down" and callable(stats):
            reading = stats()
            if reading is not None:
                fields = reading.status_fields(unix_now)
        return {
            "state": state,
            "virtual_ip": str(self.virtual_ip) if self.virtual_ip else None,
            "gateway": str(self.config.vpn.gateway) if self.config.vpn else None,
            **fields,
        }

    def _lan_clients(self, unix_now: float) -> list[dict[str, Any]]:
        """The mobile network's DHCP clients: the leases of our dnsmasq (router.lan.dnsmasq),
        without those already expired."""
        from router.lan.dnsmasq import read_leases, state_run_dir

        leases = read_leases(state_run_dir(self.config.state_dir) / "leases")
        return [lease.as_status() for lease in leases if lease.expires == 0 or lease.expires > unix_now]

    @staticmethod
    def _handover_status(entry: dict[str, Any]) -> dict[str, Any]:
        """A handover log entry in the schema's shape (router/web/SCHEMA.md ``handovers[]``):
        both kinds are stored that way (situation entries by ``situation_entry``); fields an
        entry lacks get their null values. The daemon does not see the LAN's traffic, so
        ``gap_ms`` stays null unless an entry has one."""
        out = dict(entry)
        out.setdefault("at", 0.0)
        out.setdefault("from", None)
        out.setdefault("to", None)
        out.setdefault("reason", "")
        out.setdefault("gap_ms", None)
        out.setdefault("phases", [])
        return out

    def _situation_status(self) -> dict[str, Any]:
        name = self.situation.name if self.situation.name in ("inside", "outside", "outer_home", "single") else "unknown"
        reason = self.situation.reason
        if self.coordinator is None and name == "single":
            # The one system's state now, not the words of the first registration.
            via = next((n for n, u in self.uplinks.items() if u.up and u.address == self._single_coa), None)
            if self.lan_route == co.LanRoute.DIRECT and via is not None:
                reason = f"registered with {self.config.inner.home_agent} via {via} (care-of address {self._single_coa})"
            else:
                reason = f"not registered with {self.config.inner.home_agent}: the LAN is held (fails closed)"
        return {
            "name": name,
            "since": self.situation.since or None,
            "reason": reason,
            "phase": str(self.coordinator.state) if self.coordinator is not None else name,
        }

    def status(self) -> dict[str, Any]:
        from router import __version__

        now = self.now()
        unix_now = time.time()
        uplinks = []
        for name, info in self.uplinks.items():
            snap = self.health[name].snapshot()
            counters = self._interface_counters(info.config.interface)
            uplinks.append(
                {
                    "name": name,
                    "kind": info.config.kind,
                    "interface": info.config.interface,
                    "state": str(snap.state).lower(),
                    "active": name == self.active,
                    "standby": name == self.policy.standby,
                    "signal_dbm": info.signal_dbm,
                    "rtt_ms": round(snap.srtt * 1000, 1) if snap.srtt is not None else None,
                    "loss_pct": round(snap.loss * 100, 1),
                    "score": snap.score,
                    "score_max": snap.score_max,
                    "metered": info.config.metered,
                    "address": str(info.address) if info.address else None,
                    "ssid": info.ssid,
                    "tx_bytes": counters.tx_bytes if counters is not None else None,
                    "rx_bytes": counters.rx_bytes if counters is not None else None,
                }
            )
        registrations = {"inner": self._registration_status(self.inner, now)}
        if self.outer is not None:
            registrations["outer"] = self._registration_status(self.outer, now)
        return {
            "version": __version__,
            "now": unix_now,
            "situation": self._situation_status(),
            "uplinks": uplinks,
            "registrations": registrations,
            "vpn": self._vpn_status(unix_now),
            "lan_route": str(self.lan_route),
            "mobile_network": {
                "prefixes": [str(n) for n in self.config.mobile_networks],
                "lan_address": str(self.config.lan_address.ip),
                "clients": self._lan_clients(unix_now),
            },
            # newest first, as the schema promises every consumer
            "handovers": sorted(
                (self._handover_status(h) for h in self.handovers[-50:]), key=lambda h: h["at"], reverse=True
            ),
            "counters": dict(self.counters),
            "uptime_s": round(now - self.started_at),
        }


def situation_entry(record: co.HandoverRecord, unix_offset: float) -> dict[str, Any]:
    """A finished coordinator handover as a handover-log entry: when it began (Unix time),
    its phases as milliseconds after the first one (detect), and its total duration."""
    entry: dict[str, Any] = {"kind": "situation", **record.as_dict()}
    first = record.phases[0][1] if record.phases else 0.0
    entry["at"] = first + unix_offset
    # router/web/SCHEMA.md: phases as {name, at_ms} after `at`; the LAN gap is not ours to see.
    entry["phases"] = [{"name": str(phase), "at_ms": round((t - first) * 1000, 1)} for phase, t in record.phases]
    entry["gap_ms"] = None
    entry["duration_ms"] = None if record.duration is None else round(record.duration * 1000, 1)
    return entry


# --- composition ----------------------------------------------------------------------------


def build_uplink_driver(config: UplinkConfig, emit: Callable[[ue.UplinkEvent], None], netns: str | None) -> Any:
    """The one place uplink drivers are constructed (kind -> driver)."""
    from router.uplink import factory

    return factory.build(config, emit, netns=netns)


def open_udp_tunnel(device: str, mtu: int, system: MobilitySystemConfig) -> Any:
    """The RFC 3519 data path of one system (router.udptunnel.MobileTunnel on TUN ``device``),
    or None when no TUN can be opened (the system then never requests UDP tunnelling)."""
    from router.udptunnel.datapath import MobileTunnel
    from router.udptunnel.tun import open_tun

    tunnel = None
    try:
        tun_fd = open_tun(device, mtu)
    except OSError as exc:
        log.warning("no RFC 3519 data path on %s (%s): udp tunnelling not requested", device, exc)
    else:
        tunnel = MobileTunnel(tun_fd, home_address=system.home_address, home_agent=system.home_agent)
    # Decapsulated packets from the correspondent arrive on the TUN with a source the main
    # table has no route back to (no default route there): loose reverse-path filtering.
    with contextlib.suppress(OSError):
        Path(f"/proc/sys/net/ipv4/conf/{device}/rp_filter").write_text("0")
    return tunnel


async def serve(args: argparse.Namespace, config: RouterConfig) -> int:
    from router.net.kernel import Pyroute2Backend
    from router.store.history import HistoryStore
    from router.uplink.probe import IcmpProber
    from router.vpn.strongswan import StrongSwanVpn

    # pyroute2's synchronous IPRoute runs its own event loop: build and use it off ours.
    adapter = KernelAdapter(await asyncio.to_thread(Pyroute2Backend, ROUTER_OWNERSHIP))
    store = HistoryStore(config.history_db)
    vpn = StrongSwanVpn(config.vpn.vici_socket, config.vpn.connection) if config.vpn else None

    def probe_factory(info: UplinkInfo, answered: Callable[[int], None]) -> IcmpProber:
        target = info.config.probe_targets[0] if info.config.probe_targets else info.gateway
        if target is None:
            raise OSError("no probe target (no gateway and no probe_targets)")
        return IcmpProber(info.config.interface, str(info.address), str(target), answered)

    udp_tunnel = outer_udp_tunnel = None
    if config.outer is None and config.inner.udp_tunnel != "never":
        udp_tunnel = open_udp_tunnel(UDP_TUNNEL_DEVICE, INNER_TUNNEL_MTU, config.inner)
    if config.outer is not None and config.outer.udp_tunnel != "never":
        outer_udp_tunnel = open_udp_tunnel(OUTER_UDP_TUNNEL_DEVICE, OUTER_UDP_TUNNEL_MTU, config.outer)

    def advert_factory(info: UplinkInfo, on_advert: Callable[[Any], None]) -> Any:
        from router.uplink.adverts import AdvertListener

        return AdvertListener(info.config.interface, on_advert)

    daemon = RouterDaemon(
        config, adapter, vpn=vpn, store=store, probe_factory=probe_factory, udp_tunnel=udp_tunnel,
        outer_udp_tunnel=outer_udp_tunnel, advert_factory=advert_factory,
    )
    for uplink in config.uplinks:
        daemon.uplink_drivers[uplink.name] = build_uplink_driver(uplink, daemon.on_uplink_event, None)
    lan = None
    if not args.no_lan_services:
        from router.lan.dnsmasq import DnsmasqService, LanSettings

        lan = DnsmasqService(
            LanSettings.default_pool(config.lan_interface, config.lan_address, Path(config.state_dir) / "dnsmasq")
        )
    web = None
    stop = shutdown_event(log)
    await daemon.start()

    def on_sighup() -> None:  # SIGHUP: re-read the config; a bad file keeps the last good one
        try:
            daemon.reload(load_router_config(args.config))
        except ConfigError as exc:
            log.error("reload refused, keeping the last good config: %s", exc)
        else:
            remember_good_config(args.config, log)

    reload_signal(log, on_sighup)
    if lan is not None:
        await lan.start()
    with contextlib.suppress(ImportError):
        from router.web.wiring import start_web  # the status page and control socket

        web = await start_web(daemon, config)
    log.info("router running: %d uplink(s), %s", len(config.uplinks), "dual system" if daemon.coordinator else "single system")
    try:
        await stop.wait()
    finally:
        if web is not None:
            await web.close()
        if lan is not None:
            await lan.stop()
        await asyncio.wait_for(daemon.stop(), 15)
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m router", description="Mobile router daemon")
    parser.add_argument("--config", required=True)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--check", action="store_true", help="validate the config and exit")
    parser.add_argument("--no-lan-services", action="store_true", help="do not run dnsmasq on the LAN")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        if args.check:
            config = load_router_config(args.config)
        else:  # a broken file falls back to the last good copy (logged with its line)
            config = load_config_or_last_good(args.config, load_router_config, log)
    except ConfigError as exc:
        print(f"router: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.config}: ok ({len(config.uplinks)} uplink(s))")
        return 0
    try:
        return asyncio.run(serve(args, config))
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1

