"""The home agent's binding logic (RFC 5944 §3.8, RFC 5177 §6, RFC 3519 §4.6), pure.

Theory of operation
-------------------
:class:`HomeAgentLogic` receives Registration Requests (``receive_datagram``),
decides, and queues signed Registration Replies (``datagrams_to_send``) and
binding events (``next_event``). Binding lifetimes run on the caller's clock:
``get_timer`` says when the next binding expires, ``handle_timer(now)`` expires
it. Nothing here touches the kernel: the daemon turns binding events into
tunnels and routes.

The checks, in the order RFC 5944 §3.8.2.1 implies (each drop is counted in
:attr:`counters` by reason, each denial replies with the code named):

1. Undecodable, not a Request, or carrying an unknown extension of type 0-127:
   silently discarded (§1.8 says "MUST be silently discarded" for the latter).
2. No Mobile-Home Authentication Extension, more than one, or one preceded by
   another authentication extension: discarded (§3.8.2.1 a, §3.2).
3. Home address with no Mobility Security Association: discarded (§3.8.2.1 a,
   we cannot even sign a reply). If the SPI belongs to exactly one configured
   mobile node and the request authenticates under it, the node exists but
   claims a home address we do not serve: **129** (§3.8.3.2).
4. Authenticator invalid (or SPI unknown for a known node): **131**, signed
   with the node's first SA (§3.8.2.1 a "likely to exist in the mobile node").
   Such a request changes no state at all: not the binding, not the replay
   window, not the nonce. This is what the router's "smoke-out" probe relies on.
5. A Foreign-Home Authentication Extension (we share no SA with any foreign
   agent): discarded (§3.8.2.1 d).
6. Duplicate of the accepted current registration (same home address, care-of
   address and Identification): the reply is repeated, with a Lifetime that does
   not extend the original grant (§3.8.2.2).
7. Identification (§5.7): stale/skewed timestamp or wrong nonce: **133** with
   the resynchronisation value in the Identification.
8. Home Agent field not our address: **136**, with our address (§3.8.3.2).
9. UDP Tunnel Request without the D bit: **134** (RFC 3519 §4.6.1); NAT seen
   (source address differs from care-of address) or F flag set but UDP
   tunnelling not permitted here: **129** (RFC 3519 §3.1.1, §4.6.1).
10. Lifetime 0: deregistration (§3.8.2.2): care-of address = home address
    removes the binding; otherwise only a binding with that care-of address.
    Mobile Network extensions are ignored (RFC 5177 §6.7).
11. NEMO (RFC 5177 §6.3): explicit mode checks each requested prefix against
    the node's allowed prefixes (a prefix equal to or inside an allowed one);
    prefix length 0 -> MOBNET_INVALID_PREFIX_LEN, not allowed ->
    MOBNET_UNAUTHORIZED; none accepted -> **147**; a node with no prefixes at
    all that asks for some -> **148**. Implicit mode acknowledges the node's
    configured prefixes with implicit-mode acknowledgements.
12. Accepted: Lifetime capped at ``max_lifetime`` (§3.8.3.2), code 0 (1 when
    the S bit asked for simultaneous bindings, which we do not keep, §3.8.3.2).

Reverse tunnelling (RFC 3024) is reported from the T bit; a home agent
configured without it denies T with 137.

Two readings of the RFC, chosen deliberately:

- Unknown non-skippable extensions are silently discarded (§1.8 "MUST be
  silently discarded"), not answered with 134.
- The r and x flag bits are ignored (§3.3 "ignored on reception"), although
  §3.8.2.3 says non-zero reserved fields draw 134: the specific text wins.
"""

from __future__ import annotations

import heapq
import math
import secrets
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network

from .auth import AuthFailure, SecurityAssociation, sign, verify
from .errors import LocalProtocolError
from .extensions import (
    Extension,
    ForeignHomeAuth,
    MobileNetworkAck,
    MobileNetworkAckCode,
    MobileNetworkRequest,
    UDPTunnelReply,
    UDPTunnelReplyCode,
    UDPTunnelRequest,
    UnknownExtension,
)
from .identification import HomeAgentReplayState, ReplayVerdict
from .messages import (
    Message,
    RegistrationReply,
    RegistrationRequest,
    ReplyCode,
    RequestFlags,
    encode,
)

__all__ = [
    "Binding",
    "BindingAdded",
    "BindingEvent",
    "BindingExpired",
    "BindingRemoved",
    "BindingRenewed",
    "HomeAgentConfig",
    "HomeAgentLogic",
    "MobileNodeEntry",
]

MIP_PORT = 434
INFINITE_LIFETIME = 0xFFFF
Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class MobileNodeEntry:
    """One mobile node (mobile router) we serve."""

    home_address: IPv4Address
    #: The first SA also signs replies to requests that failed authentication.
    security_associations: tuple[SecurityAssociation, ...]
    #: RFC 5177 Prefix Table entries for this node; empty = not a mobile router.
    mobile_networks: tuple[IPv4Network, ...] = ()
    #: Per-node cap; None = the home agent's ``max_lifetime``.
    max_lifetime: int | None = None

    def __post_init__(self) -> None:
        if not self.security_associations:
            raise LocalProtocolError(f"mobile node {self.home_address}: no security association")
        spis = [sa.spi for sa in self.security_associations]
        if len(set(spis)) != len(spis):
            raise LocalProtocolError(f"mobile node {self.home_address}: duplicate SPI")


@dataclass(frozen=True, slots=True)
class HomeAgentConfig:
    address: IPv4Address
    home_network: IPv4Network
    mobile_nodes: tuple[MobileNodeEntry, ...]
    max_lifetime: int = 1800
    reverse_tunnelling: bool = True
    udp_tunnelling: bool = True
    #: RFC 3519 §3.2 Keepalive Interval sent in assenting UDP Tunnel Replies (0 =
    #: "use your default").
    udp_keepalive_interval: int = 0
    #: ``now + clock_offset`` = NTP seconds (timestamp replay protection).
    clock_offset: float = 0.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_lifetime <= INFINITE_LIFETIME:
            raise LocalProtocolError(f"max_lifetime {self.max_lifetime} outside 1..65535")
        if self.address not in self.home_network:
            # §3.8.1: the home agent's address and its home network's prefix go together.
            raise LocalProtocolError(f"home agent {self.address} not in {self.home_network}")
        seen: set[IPv4Address] = set()
        for node in self.mobile_nodes:
            if node.home_address in seen:
                raise LocalProtocolError(f"mobile node {node.home_address} configured twice")
            seen.add(node.home_address)


@dataclass(frozen=True, slots=True)
class Binding:
    """One mobility binding (§3.8.1 plus RFC 5177 §6.2.1 prefixes)."""

    home_address: IPv4Address
    #: Where to tunnel: the request's care-of address, or its source address when
    #: UDP tunnelling was assented to (RFC 3519 §4.6).
    care_of_address: IPv4Address
    lifetime: int | None  # granted seconds; None = infinite
    expires_at: float | None
    mobile_networks: tuple[IPv4Network, ...]
    reverse_tunnel: bool
    udp_tunnel: bool
    source: Address  # where the request came from (NAT'ed address with UDP tunnelling)
    request_identification: int
    reply_identification: int
    registered_at: float
    #: The care-of address as written in the request (differs behind a NAT).
    requested_care_of_address: IPv4Address | None = None


@dataclass(frozen=True, slots=True)
class BindingAdded:
    binding: Binding


@dataclass(frozen=True, slots=True)
class BindingRenewed:
    """Renewed in place, or moved: ``previous_care_of_address`` says which."""

    binding: Binding
    previous_care_of_address: IPv4Address


@dataclass(frozen=True, slots=True)
class BindingRemoved:
    """``at_home``: the node deregistered from its home network (§4.6: the home agent then
    stops proxy ARP and announces the node's own link-layer address); see ``_deregister``."""

    binding: Binding
    reason: str
    at_home: bool = False


@dataclass(frozen=True, slots=True)
class BindingExpired:
    binding: Binding


BindingEvent = BindingAdded | BindingRenewed | BindingRemoved | BindingExpired


@dataclass(slots=True)
class _Node:
    entry: MobileNodeEntry
    sa_by_spi: dict[int, SecurityAssociation]
    replay: dict[int, HomeAgentReplayState] = field(default_factory=dict)
    #: Prefix Table verdicts already computed (the table is fixed per node).
    prefix_codes: dict[IPv4Network, int] = field(default_factory=dict)


class HomeAgentLogic:
    """Registration processing and the mobility binding list. Pure and single-threaded."""

    def __init__(
        self,
        config: HomeAgentConfig,
        *,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self.config = config
        self.counters: dict[str, int] = {}
        self._random_bytes = random_bytes
        self._nodes: dict[IPv4Address, _Node] = {}
        self._spi_owners: dict[int, list[_Node]] = {}
        self._build_nodes(config)
        #: Moves whenever a timestamp Identification is consumed: the daemon persists
        #: ``replay_state()`` when it changed (RFC 5944 §5.7 across restarts).
        self.replay_version = 0
        self._bindings: dict[IPv4Address, Binding] = {}
        self._expiry_heap: list[tuple[float, int, IPv4Address]] = []
        self._heap_sequence = 0
        self._outbox: list[tuple[bytes, Address]] = []
        self._events: deque[BindingEvent] = deque()
        self._address_text = str(config.address)

    # -- public API -------------------------------------------------------

    def bindings(self) -> dict[IPv4Address, Binding]:
        """A snapshot of the mobility binding list, by home address."""
        return dict(self._bindings)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out, self._outbox = self._outbox, []
        return out

    def next_event(self) -> BindingEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        heap = self._expiry_heap
        while heap:
            expires_at, _, home = heap[0]
            binding = self._bindings.get(home)
            if binding is not None and binding.expires_at == expires_at:
                return expires_at
            heapq.heappop(heap)  # stale: renewed, moved or removed since
        return None

    def handle_timer(self, now: float) -> None:
        heap = self._expiry_heap
        while heap and heap[0][0] <= now:
            expires_at, _, home = heapq.heappop(heap)
            binding = self._bindings.get(home)
            if binding is None or binding.expires_at != expires_at:
                continue
            # §3.8.2.2: delete the entry when its Lifetime runs out; §3.8: no Reply.
            del self._bindings[home]
            self._events.append(BindingExpired(binding))
            self._count("expired")

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        """Process one UDP port 434 payload from ``addr``. Never raises on bad input."""
        result = verify(data, self._lookup)
        request = result.message
        if request is None:
            self._count("malformed")
            return
        if not isinstance(request, RegistrationRequest):
            self._count("not_a_request")
            return
        for extension in request.extensions:
            if isinstance(extension, UnknownExtension) and not extension.skippable:
                # RFC 5944 §1.8: unknown type 0-127 -> the message MUST be silently discarded.
                self._count("unknown_extension")
                return
        failure = result.failure
        if failure in (
            AuthFailure.NO_AUTH_EXTENSION,
            AuthFailure.MULTIPLE_AUTH_EXTENSIONS,
            AuthFailure.AUTH_EXTENSION_ORDER,
        ):
            assert failure is not None
            self._count(failure.value)
            return
        node = self._nodes.get(request.home_address)
        if node is None:
            if failure is None and result.sa is not None:
                # Authentic node, but not at this home address (§3.8.3.2).
                self._deny(
                    request, addr, result.sa, None, ReplyCode.HA_ADMINISTRATIVELY_PROHIBITED, now
                )
            else:
                self._count("unknown_mobile_node")
            return
        if failure is not None:
            # §3.8.2.1 a: reply 131 signed with an SA the node surely has; change nothing.
            self._count(failure.value)
            fallback = node.entry.security_associations[0]
            identification = node.replay[fallback.spi].unauthenticated_reply_identification(
                request.identification
            )
            self._count("denied_131")
            self._reply(
                request,
                addr,
                fallback,
                ReplyCode.HA_MOBILE_NODE_FAILED_AUTHENTICATION,
                0,
                identification,
                (),
            )
            return
        sa = result.sa
        assert sa is not None
        if any(isinstance(ext, ForeignHomeAuth) for ext in request.extensions):
            self._count("foreign_home_auth")  # §3.8.2.1 d: we share no SA with any FA
            return
        self._process(request, result.covered, node, sa, addr, now)

    # -- state kept across restarts and config reloads (the daemon does the I/O) --

    def replay_state(self) -> dict[tuple[IPv4Address, int], int]:
        """Last accepted timestamp Identification per (home address, SPI) (§5.7.1)."""
        return {
            (home, spi): replay.last_accepted
            for home, node in self._nodes.items()
            for spi, replay in node.replay.items()
            if replay.last_accepted >= 0
        }

    def restore_replay_state(
        self, state: Mapping[tuple[IPv4Address, int], int], *, floor: int | None = None
    ) -> None:
        """Seed the replay state a previous run persisted, so a Request accepted before a
        restart is refused after it (133). ``floor`` applies to every node: the fallback
        when the persisted state is unreadable (nothing accepted before can exceed it)."""
        for home, node in self._nodes.items():
            for spi, replay in node.replay.items():
                if (value := state.get((home, spi))) is not None:
                    replay.raise_floor(value)
                if floor is not None:
                    replay.raise_floor(floor)

    def set_clock_offset(self, clock_offset: float, now: float) -> None:
        """Follow a stepped wall clock (``now + clock_offset`` = NTP seconds).

        A step back caps every replay floor at our new time plus the tolerance: what was
        accepted in the stepped-forward era is out of tolerance now anyway (§5.7.1), and
        anything accepted before it lies below the cap, so no replay window opens, while the
        nodes are not locked out until the clock catches up.
        """
        stepped_back = clock_offset < self.config.clock_offset
        self.config = replace(self.config, clock_offset=clock_offset)
        for node in self._nodes.values():
            for replay in node.replay.values():
                replay.clock_offset = clock_offset
                if stepped_back:
                    seconds = math.ceil(now + clock_offset + replay.tolerance)
                    replay.cap_floor(seconds << 32)

    def reconfigure(self, config: HomeAgentConfig) -> None:
        """Take a new mobile-node table (a config reload) without a restart.

        Bindings of nodes still configured stay, unless their mobile networks are no
        longer all allowed; the others are removed (a ``BindingRemoved`` each). Replay
        state carries over for every (home address, SPI) kept with the same method.
        """
        old_nodes = self._nodes
        self.config = config
        self._nodes = {}
        self._spi_owners = {}
        self._build_nodes(config)
        for home, node in self._nodes.items():
            previous = old_nodes.get(home)
            if previous is None:
                continue
            for spi, replay in node.replay.items():
                old = previous.replay.get(spi)
                if old is not None and old.method is replay.method:
                    old.tolerance = replay.tolerance
                    old.clock_offset = config.clock_offset
                    node.replay[spi] = old
        for home, binding in list(self._bindings.items()):
            kept = self._nodes.get(home)
            if kept is None:
                reason = "no longer configured"
            elif any(
                self._prefix_code(net, kept.entry.mobile_networks) != 0
                for net in binding.mobile_networks
            ):
                reason = "mobile networks no longer allowed"
            else:
                continue
            del self._bindings[home]
            self._events.append(BindingRemoved(binding, reason))
            self._count("removed")

    # -- internals --------------------------------------------------------

    def _build_nodes(self, config: HomeAgentConfig) -> None:
        for entry in config.mobile_nodes:
            node = _Node(entry, {sa.spi: sa for sa in entry.security_associations})
            for sa in entry.security_associations:
                node.replay[sa.spi] = HomeAgentReplayState(
                    sa.replay,
                    tolerance=sa.timestamp_tolerance,
                    clock_offset=config.clock_offset,
                    random_bytes=self._random_bytes,
                )
                self._spi_owners.setdefault(sa.spi, []).append(node)
            self._nodes[entry.home_address] = node

    def _count(self, reason: str) -> None:
        self.counters[reason] = self.counters.get(reason, 0) + 1

    def _lookup(self, message: Message, spi: int) -> SecurityAssociation | None:
        if not isinstance(message, RegistrationRequest):
            return None
        node = self._nodes.get(message.home_address)
        if node is not None:
            return node.sa_by_spi.get(spi)
        owners = self._spi_owners.get(spi)
        if owners is not None and len(owners) == 1:
            # Only to tell a misconfigured node "129"; see the module docstring.
            return owners[0].sa_by_spi[spi]
        return None

    def _reply(
        self,
        request: RegistrationRequest,
        addr: Address,
        sa: SecurityAssociation,
        code: int,
        lifetime: int,
        identification: int,
        extensions: tuple[Extension, ...],
    ) -> None:
        # §3.8.3.2: the Home Agent field carries our unicast address; the Home
        # Address is copied from the request.
        reply = RegistrationReply(
            code=code,
            lifetime=lifetime,
            home_address=request.home_address,
            home_agent=self.config.address,
            identification=identification,
            extensions=extensions,
        )
        # §3.8.3.1: to the source address and port of the request.
        self._outbox.append((sign(encode(reply), sa), addr))
        self._count("replies_sent")

    def _deny(
        self,
        request: RegistrationRequest,
        addr: Address,
        sa: SecurityAssociation,
        node: _Node | None,
        code: int,
        now: float,
        identification: int | None = None,
        extensions: tuple[Extension, ...] = (),
    ) -> None:
        if identification is None:
            if node is not None:
                identification = node.replay[sa.spi].reply_identification(
                    request.identification, valid=True, now=now
                )
            else:
                identification = request.identification
        self._count(f"denied_{int(code)}")
        self._reply(request, addr, sa, code, 0, identification, extensions)

    def _process(
        self,
        request: RegistrationRequest,
        covered: tuple[Extension, ...],
        node: _Node,
        sa: SecurityAssociation,
        addr: Address,
        now: float,
    ) -> None:
        home = request.home_address
        current = self._bindings.get(home)
        replay = node.replay[sa.spi]
        if (
            current is not None
            and request.lifetime > 0
            and current.request_identification == request.identification
            and current.requested_care_of_address == request.care_of_address
        ):
            # §3.8.2.2 duplicate: same reply again, Lifetime not beyond the first grant.
            self._count("duplicate")
            remaining = (
                INFINITE_LIFETIME
                if current.expires_at is None
                else max(0, math.floor(current.expires_at - now))
            )
            self._reply(
                request,
                addr,
                sa,
                ReplyCode.REGISTRATION_ACCEPTED,
                remaining,
                current.reply_identification,
                self._acks_for(current, covered),
            )
            return
        verdict = replay.check(request.identification, now)
        if verdict is not ReplayVerdict.FRESH:
            self._count(f"replay_{verdict.name.lower()}")
            identification = replay.reply_identification(request.identification, False, now)
            self._deny(
                request,
                addr,
                sa,
                node,
                ReplyCode.HA_REGISTRATION_IDENTIFICATION_MISMATCH,
                now,
                identification,
            )
            return
        replay.consume(request.identification)
        self.replay_version += 1
        if request.home_agent != self.config.address:
            self._deny(request, addr, sa, node, ReplyCode.HA_UNKNOWN_HOME_AGENT_ADDRESS, now)
            return
        flags = request.flags
        reverse_tunnel = bool(flags & RequestFlags.T)
        if reverse_tunnel and not self.config.reverse_tunnelling:
            self._deny(
                request, addr, sa, node, ReplyCode.HA_REQUESTED_REVERSE_TUNNEL_UNAVAILABLE, now
            )
            return
        udp_request = next((e for e in covered if isinstance(e, UDPTunnelRequest)), None)
        if udp_request is not None and not flags & RequestFlags.D:
            # RFC 3519 §4.6.1: MN's UDP Tunnel Request without the D bit.
            self._deny(request, addr, sa, node, ReplyCode.HA_POORLY_FORMED_REQUEST, now)
            return
        if request.lifetime == 0:
            self._deregister(request, node, sa, addr, current, now)
            return
        care_of_address = request.care_of_address
        udp_tunnel = False
        extensions: list[Extension] = []
        if udp_request is not None:
            behind_nat = str(care_of_address) != str(addr[0])
            if behind_nat or udp_request.force:
                if not self.config.udp_tunnelling:
                    # RFC 3519 §3.1.1 / §4.6.1: NAT seen or forced, but not permitted.
                    self._deny(
                        request, addr, sa, node, ReplyCode.HA_ADMINISTRATIVELY_PROHIBITED, now
                    )
                    return
                try:
                    # RFC 3519 §4.6: tunnel to the request's source address.
                    care_of_address = IPv4Address(addr[0])
                except ValueError:
                    self._count("bad_source_address")  # not IPv4: the caller's socket is odd
                    return
                udp_tunnel = True
                extensions.append(
                    UDPTunnelReply(
                        UDPTunnelReplyCode.WILL_DO_TUNNELLING,
                        forced=udp_request.force,
                        keepalive_interval=self.config.udp_keepalive_interval,
                    )
                )
            else:
                # RFC 3519 §4.6: no NAT, not forced -> a declining reply.
                extensions.append(
                    UDPTunnelReply(UDPTunnelReplyCode.TUNNELLING_DECLINED_REASON_UNSPECIFIED)
                )
        networks, acks, nemo_code = self._mobile_networks(node, covered)
        if nemo_code is not None:
            self._deny(request, addr, sa, node, nemo_code, now, extensions=tuple(acks))
            return
        extensions[:0] = acks  # acknowledgements first, as RFC 5177 lists them
        cap = node.entry.max_lifetime or self.config.max_lifetime
        granted = min(request.lifetime, cap)  # §3.8.2.2: never increase; cap
        infinite = granted == INFINITE_LIFETIME
        code = (
            ReplyCode.REGISTRATION_ACCEPTED_NO_SIMULTANEOUS_BINDINGS
            if flags & RequestFlags.S
            else ReplyCode.REGISTRATION_ACCEPTED
        )
        identification = replay.reply_identification(request.identification, True, now)
        binding = Binding(
            home_address=home,
            care_of_address=care_of_address,
            lifetime=None if infinite else granted,
            expires_at=None if infinite else now + granted,
            mobile_networks=networks,
            reverse_tunnel=reverse_tunnel,
            udp_tunnel=udp_tunnel,
            source=(str(addr[0]), int(addr[1])),
            request_identification=request.identification,
            reply_identification=identification,
            registered_at=now,
            requested_care_of_address=request.care_of_address,
        )
        self._bindings[home] = binding
        if binding.expires_at is not None:
            heapq.heappush(self._expiry_heap, (binding.expires_at, self._sequence(), home))
        if current is None:
            self._events.append(BindingAdded(binding))
            self._count("added")
        else:
            self._events.append(BindingRenewed(binding, current.care_of_address))
            self._count("renewed")
        self._reply(request, addr, sa, code, granted, identification, tuple(extensions))

    def _sequence(self) -> int:
        # Tie-breaker so heap entries never compare IPv4Address values.
        self._heap_sequence += 1
        return self._heap_sequence

    def _deregister(
        self,
        request: RegistrationRequest,
        node: _Node,
        sa: SecurityAssociation,
        addr: Address,
        current: Binding | None,
        now: float,
    ) -> None:
        # §3.8.2.2: CoA = home address -> all bindings; else only the one with that CoA.
        if current is not None and (
            request.care_of_address == request.home_address
            or request.care_of_address
            in (current.care_of_address, current.requested_care_of_address)
        ):
            del self._bindings[request.home_address]
            # Back home (§3.6.1.2 "deregister all care-of addresses ... upon returning home"):
            # the Care-of Address is the home address and, with no co-located care-of address
            # to send from, the IP source is the home address too (§3.6.1.1). From elsewhere
            # the same deregistration comes from a care-of (or foreign agent's) address.
            at_home = (
                request.care_of_address == request.home_address
                and addr[0] == str(request.home_address)
            )
            self._events.append(BindingRemoved(current, "deregistered", at_home))
            self._count("removed")
        self._count("deregistrations")
        identification = node.replay[sa.spi].reply_identification(request.identification, True, now)
        self._reply(request, addr, sa, ReplyCode.REGISTRATION_ACCEPTED, 0, identification, ())

    def _mobile_networks(
        self, node: _Node, covered: tuple[Extension, ...]
    ) -> tuple[tuple[IPv4Network, ...], list[Extension], int | None]:
        """(accepted prefixes, acknowledgement extensions, denial code or None)."""
        allowed = node.entry.mobile_networks
        requested = [e.prefix for e in covered if isinstance(e, MobileNetworkRequest)]
        if not requested:
            # Implicit mode (RFC 5177 §6.3): use the Prefix Table, acknowledge implicitly.
            acks: list[Extension] = [
                MobileNetworkAck(MobileNetworkAckCode.SUCCESS, prefix, implicit=True)
                for prefix in allowed
            ]
            return allowed, acks, None
        if not allowed:
            # RFC 5177 §6.1: not permitted to act as a mobile router.
            return (), [], ReplyCode.HA_MOBNET_DISALLOWED
        accepted: list[IPv4Network] = []
        acks = []
        for prefix in requested:
            code = node.prefix_codes.get(prefix, -1)
            if code < 0:
                code = self._prefix_code(prefix, allowed)
                if len(node.prefix_codes) < 64:  # bounded: only authenticated input gets here
                    node.prefix_codes[prefix] = code
            if code == MobileNetworkAckCode.SUCCESS and prefix not in accepted:
                accepted.append(prefix)
            acks.append(MobileNetworkAck(code, prefix, implicit=False))
        if not accepted:
            return (), acks, ReplyCode.HA_MOBNET_ERROR
        return tuple(accepted), acks, None

    @staticmethod
    def _prefix_code(prefix: IPv4Network, allowed: tuple[IPv4Network, ...]) -> int:
        if prefix.prefixlen == 0:
            return MobileNetworkAckCode.MOBNET_INVALID_PREFIX_LEN  # RFC 5177 §6.6
        if any(prefix.subnet_of(entry) for entry in allowed):
            # RFC 5177 §6.3 pairs home address and prefix; we also accept a prefix
            # inside an allowed one, so a router may announce a smaller part.
            return MobileNetworkAckCode.SUCCESS
        return MobileNetworkAckCode.MOBNET_UNAUTHORIZED

    def _acks_for(self, binding: Binding, covered: tuple[Extension, ...]) -> tuple[Extension, ...]:
        """Acknowledgements for a duplicate request: recomputed, so identical to the first."""
        node = self._nodes[binding.home_address]
        _, acks, _ = self._mobile_networks(node, covered)
        out: list[Extension] = list(acks)
        if binding.udp_tunnel:
            out.append(
                UDPTunnelReply(
                    UDPTunnelReplyCode.WILL_DO_TUNNELLING,
                    keepalive_interval=self.config.udp_keepalive_interval,
                )
            )
        return tuple(out)
