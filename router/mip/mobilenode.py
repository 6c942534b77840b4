"""The mobile node's registration machine for one home agent (RFC 5944 §3.6, RFC 5177 §5).

Theory of operation
-------------------
One :class:`RegistrationMachine` talks to one home agent through one Mobility
Security Association. The router runs two (inner and outer system), so nothing
here is global. The machine is pure, in the style of aioquic's connection:

- inputs: :meth:`register`, :meth:`deregister`, :meth:`cancel`,
  :meth:`receive_datagram` and :meth:`handle_timer`, each given ``now``
  (monotonic float seconds);
- outputs, pulled by the caller: :meth:`datagrams_to_send` (payload and
  ``(host, port)``), :meth:`next_event`, and :meth:`get_timer` (when to call
  :meth:`handle_timer` next).

The state names the outstanding request; whether the home agent holds a binding
for us (our *belief*) is data beside it (:attr:`binding`), because a binding can
outlive a denied renewal and a registration to a new care-of address runs while
the old binding is still in force.

    ========================  =====================================================
    IDLE                      no request outstanding, no binding believed
    REGISTERING               a request with non-zero Lifetime is outstanding
    REGISTERED                binding believed, renewal timer running
    DEREGISTERING             a request with Lifetime 0 is outstanding
    HELD_DOWN                 denied; waiting out a back-off before trying again
    ========================  =====================================================

Every change of state goes through :data:`TRANSITIONS` (print it with
``python3 -m router.mip.mobilenode``); anything else raises
:class:`IllegalTransition`.

Rules implemented, with their source:

- Retransmission (§3.6.3): first timeout ``initial_retransmit`` (>= 1 s, the
  RFC's floor), doubling, capped by ``max_retransmit`` and by the requested
  Lifetime. With timestamps each retransmission gets a new Identification;
  with nonces the request is resent unchanged. After ``max_retransmissions``
  unanswered retransmissions a :class:`RegistrationTimeout` event is raised once
  and the machine keeps trying at the capped interval.
- Reply validity (§3.6.2.1): from the home agent's address and port 434,
  authenticated by exactly one Mobile-Home Authentication Extension, low 32
  bits of Identification equal to those of the most recent request, our home
  address. Anything else is dropped and counted in :attr:`counters` by reason;
  hostile input never raises.
- Lifetime (§3.4, §3.6.2.2): a granted Lifetime above the requested one is
  replaced by the requested one; the binding is timed from the moment the
  matching request was first sent; renewal at ``renew_fraction`` of it.
- Denials (§3.6.2.3): 133 (and 136) resynchronise the Identification; a 133 is
  retried at once, but only once per attempt. Every other denial, and a second
  133, raises :class:`RegistrationDenied` and holds down for a back-off that
  doubles per consecutive denial (no flooding a home agent that says no).
  RFC 5177 §5.1: after 148 (HA_MOBNET_DISALLOWED) no more Mobile Network Request
  extensions go to this home agent; after 147 (HA_MOBNET_ERROR) the prefixes
  named in the acknowledgements are not requested again. 69 lowers the Lifetime.
- NEMO (RFC 5177 §5): explicit mode sends one Mobile Network Request per prefix
  in every registration (never in a deregistration); implicit mode sends none.
  Acknowledged prefixes come back in :class:`Registered`.
- UDP tunnelling (RFC 3519 §4.4): optional UDP Tunnel Request (D bit set, as
  §3.1.5 requires); the tunnel is in use only if the reply assents.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv4Address, IPv4Network

from .auth import SecurityAssociation, sign, verify
from .errors import LocalProtocolError
from .extensions import (
    Extension,
    MobileNetworkAck,
    MobileNetworkRequest,
    MobileNodeNAI,
    UDPTunnelReply,
    UDPTunnelRequest,
    UnknownExtension,
)
from .identification import IdentificationGenerator, ReplayMethod, low32
from .messages import RegistrationReply, RegistrationRequest, RequestFlags, encode

__all__ = [
    "REPLY_CODE_TEXT",
    "TRANSITIONS",
    "BindingExpired",
    "BindingState",
    "Deregistered",
    "Event",
    "IllegalTransition",
    "Input",
    "MobileNodeConfig",
    "Registered",
    "RegistrationDenied",
    "RegistrationMachine",
    "RegistrationTimeout",
    "SmokeOutAnswer",
    "SmokeOutProbe",
    "State",
    "format_transitions",
]

MIP_PORT = 434
INFINITE_LIFETIME = 0xFFFF
Address = tuple[str, int]

#: Reply codes with the RFC's words, for events and logs (RFC 5944 §3.4, RFC 3024 §3.4,
#: RFC 2794 §5, RFC 4721 §10, RFC 5177 §11, RFC 3519 §3.5 / IANA): every ReplyCode.
REPLY_CODE_TEXT: dict[int, str] = {
    0: "registration accepted",
    1: "registration accepted, but simultaneous mobility bindings unsupported",
    64: "reason unspecified (foreign agent)",
    65: "administratively prohibited (foreign agent)",
    66: "insufficient resources (foreign agent)",
    67: "mobile node failed authentication (foreign agent)",
    68: "home agent failed authentication (foreign agent)",
    69: "requested Lifetime too long (foreign agent)",
    70: "poorly formed Request (foreign agent)",
    71: "poorly formed Reply (foreign agent)",
    72: "requested encapsulation unavailable (foreign agent)",
    73: "reserved and unavailable (foreign agent)",
    74: "requested reverse tunnel unavailable (foreign agent)",  # RFC 3024 §3.4
    75: "reverse tunnel is mandatory and 'T' bit not set (foreign agent)",  # RFC 3024
    76: "mobile node too distant (foreign agent)",  # RFC 3024
    77: "invalid care-of address (foreign agent)",
    78: "registration timeout (foreign agent)",
    79: "delivery style not supported (foreign agent)",  # RFC 3024
    80: "home network unreachable (ICMP error received)",
    81: "home agent host unreachable (ICMP error received)",
    82: "home agent port unreachable (ICMP error received)",
    88: "home agent unreachable (other ICMP error received)",
    96: "non-zero Home Address required (NONZERO_HOMEADDR_REQD)",  # RFC 2794 §5
    97: "missing NAI (MISSING_NAI)",
    98: "missing Home Agent (MISSING_HOME_AGENT)",
    99: "missing Home Address (MISSING_HOMEADDR)",
    104: "unknown challenge (foreign agent)",  # RFC 4721 §10
    105: "missing challenge (foreign agent)",
    106: "stale challenge (foreign agent)",
    108: "foreign agent failed AAA authentication",
    109: "home agent: wrong challenge",
    128: "reason unspecified",
    129: "administratively prohibited",
    130: "insufficient resources",
    131: "mobile node failed authentication",
    132: "foreign agent failed authentication",
    133: "registration Identification mismatch",
    134: "poorly formed Request",
    135: "too many simultaneous mobility bindings",
    136: "unknown home agent address",
    137: "requested reverse tunnel unavailable",  # RFC 3024
    138: "reverse tunnel is mandatory and 'T' bit not set",  # RFC 3024
    139: "requested encapsulation unavailable",  # RFC 3024
    142: "requested UDP tunnel encapsulation unavailable (ERROR_HA_UDP_ENCAP_UNAVAIL)",
    144: "home agent failed AAA authentication",  # RFC 4721 §10
    147: "Mobile Network Prefix operation error (HA_MOBNET_ERROR)",
    148: "Mobile Router operation is not permitted (HA_MOBNET_DISALLOWED)",
    194: "Invalid Home Agent Address (foreign agent)",
}

_IDENTIFICATION_MISMATCH = 133
_UNKNOWN_HOME_AGENT = 136
_LIFETIME_TOO_LONG = 69
_HA_MOBNET_ERROR = 147
_HA_MOBNET_DISALLOWED = 148


def reply_code_text(code: int) -> str:
    return REPLY_CODE_TEXT.get(code, f"code {code}")


# ---------------------------------------------------------------------------
# States and the transition table


class State(IntEnum):
    IDLE = 0
    REGISTERING = 1
    REGISTERED = 2
    DEREGISTERING = 3
    HELD_DOWN = 4


class Input(IntEnum):
    REGISTER = 0  # register() called
    DEREGISTER = 1  # deregister() called, or a held-down deregistration retried
    CANCEL = 2  # cancel(): forget everything, send nothing
    ACCEPTED = 3  # valid reply, code 0 or 1
    DENIED = 4  # valid reply, any other code (after at most one 133 retry)
    RESYNC = 5  # valid 133: identification resynchronised, retried at once
    RETRANSMIT = 6  # retransmission timer fired
    RENEW = 7  # renewal timer fired
    HOLD_DOWN_OVER = 8  # back-off after a denial ended: try the registration again
    BINDING_EXPIRED = 9  # believed binding reached its end


#: The whole machine. ``(state, input) -> next state``; missing pairs are illegal.
TRANSITIONS: dict[tuple[State, Input], State] = {
    (State.IDLE, Input.REGISTER): State.REGISTERING,
    (State.IDLE, Input.DEREGISTER): State.DEREGISTERING,
    (State.IDLE, Input.CANCEL): State.IDLE,
    (State.REGISTERING, Input.REGISTER): State.REGISTERING,
    (State.REGISTERING, Input.DEREGISTER): State.DEREGISTERING,
    (State.REGISTERING, Input.CANCEL): State.IDLE,
    (State.REGISTERING, Input.ACCEPTED): State.REGISTERED,
    (State.REGISTERING, Input.DENIED): State.HELD_DOWN,
    (State.REGISTERING, Input.RESYNC): State.REGISTERING,
    (State.REGISTERING, Input.RETRANSMIT): State.REGISTERING,
    (State.REGISTERING, Input.BINDING_EXPIRED): State.REGISTERING,
    (State.REGISTERED, Input.REGISTER): State.REGISTERING,
    (State.REGISTERED, Input.DEREGISTER): State.DEREGISTERING,
    (State.REGISTERED, Input.CANCEL): State.IDLE,
    (State.REGISTERED, Input.RENEW): State.REGISTERING,
    (State.REGISTERED, Input.BINDING_EXPIRED): State.REGISTERING,
    (State.DEREGISTERING, Input.REGISTER): State.REGISTERING,
    (State.DEREGISTERING, Input.DEREGISTER): State.DEREGISTERING,
    (State.DEREGISTERING, Input.CANCEL): State.IDLE,
    (State.DEREGISTERING, Input.ACCEPTED): State.IDLE,
    (State.DEREGISTERING, Input.DENIED): State.HELD_DOWN,
    (State.DEREGISTERING, Input.RESYNC): State.DEREGISTERING,
    (State.DEREGISTERING, Input.RETRANSMIT): State.DEREGISTERING,
    (State.DEREGISTERING, Input.BINDING_EXPIRED): State.DEREGISTERING,
    (State.HELD_DOWN, Input.REGISTER): State.HELD_DOWN,
    (State.HELD_DOWN, Input.DEREGISTER): State.DEREGISTERING,
    (State.HELD_DOWN, Input.CANCEL): State.IDLE,
    (State.HELD_DOWN, Input.HOLD_DOWN_OVER): State.REGISTERING,
    (State.HELD_DOWN, Input.BINDING_EXPIRED): State.HELD_DOWN,
}


class IllegalTransition(LocalProtocolError):
    """An input that the current state does not accept (a bug in the caller or in us)."""

    def __init__(self, state: State, event: Input) -> None:
        self.state = state
        self.input = event
        super().__init__(f"no transition from {state.name} on {event.name}")


def format_transitions() -> str:
    """The transition table as aligned text, one row per (state, input)."""
    rows = [("state", "input", "next state")]
    rows += [(s.name, i.name, n.name) for (s, i), n in TRANSITIONS.items()]
    widths = [max(len(row[c]) for row in rows) for c in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


# ---------------------------------------------------------------------------
# Events


@dataclass(frozen=True, slots=True)
class Registered:
    """The home agent accepted a registration (new, moved or renewed)."""

    care_of_address: IPv4Address
    #: Granted Lifetime in seconds (never more than requested); None = infinite.
    lifetime: int | None
    mobile_networks_acked: tuple[IPv4Network, ...]
    round_trip: float
    code: int = 0
    #: (prefix, RFC 5177 acknowledgement code) for prefixes the home agent refused.
    mobile_networks_rejected: tuple[tuple[IPv4Network, int], ...] = ()
    #: True only if the home agent sent no Mobile Network Acknowledgement at all
    #: although we asked (RFC 5177 §5.1: it does not support mobile networks).
    mobile_networks_unsupported: bool = False
    udp_tunnel: bool = False
    udp_keepalive_interval: int = 0
    renewal: bool = False


@dataclass(frozen=True, slots=True)
class Deregistered:
    """The home agent accepted our deregistration (Lifetime 0)."""

    care_of_address: IPv4Address
    round_trip: float


@dataclass(frozen=True, slots=True)
class RegistrationDenied:
    """The home agent (or a foreign agent) said no. ``retry_at``: when we try again."""

    code: int
    reason: str
    care_of_address: IPv4Address
    deregistration: bool
    retry_at: float


@dataclass(frozen=True, slots=True)
class RegistrationTimeout:
    """``attempts`` requests went unanswered; the machine keeps retrying at the capped interval."""

    care_of_address: IPv4Address
    attempts: int
    deregistration: bool


@dataclass(frozen=True, slots=True)
class BindingExpired:
    """The binding we believed in ran out before a renewal was accepted."""

    care_of_address: IPv4Address


Event = Registered | Deregistered | RegistrationDenied | RegistrationTimeout | BindingExpired


# ---------------------------------------------------------------------------
# Configuration and belief


@dataclass(frozen=True, slots=True)
class MobileNodeConfig:
    home_address: IPv4Address
    home_agent: IPv4Address
    security_association: SecurityAssociation
    lifetime: int = 600
    #: RFC 5177 Mobile Network Prefixes served behind us.
    mobile_networks: tuple[IPv4Network, ...] = ()
    #: Explicit mode sends the prefixes in every request; implicit mode sends none
    #: and lets the home agent use its own configuration (RFC 5177 §5).
    explicit_mode: bool = True
    reverse_tunnel: bool = True  # T bit; RFC 5177 §5: a mobile router SHOULD set it
    simultaneous_bindings: bool = False  # S bit
    colocated_care_of_address: bool = True  # D bit (we decapsulate ourselves)
    gre_encapsulation: bool = False  # G bit
    udp_tunnel: bool = False  # RFC 3519 UDP Tunnel Request
    udp_tunnel_force: bool = False  # its F flag
    nai: str | None = None  # RFC 2794 Mobile Node NAI
    home_agent_port: int = MIP_PORT
    initial_retransmit: float = 1.0
    max_retransmit: float = 32.0
    max_retransmissions: int = 4
    renew_fraction: float = 0.8
    denial_backoff: float = 10.0
    max_denial_backoff: float = 600.0
    #: ``now + clock_offset`` = NTP seconds (timestamp replay protection only).
    clock_offset: float = 0.0

    def __post_init__(self) -> None:
        if not 1 <= self.lifetime <= INFINITE_LIFETIME:
            raise LocalProtocolError(f"lifetime {self.lifetime} outside 1..65535")
        # §3.6.3: "The minimum time between Registration Requests MUST NOT be less
        # than 1 second."
        if self.initial_retransmit < 1.0:
            raise LocalProtocolError("initial_retransmit must be >= 1 s (RFC 5944 §3.6.3)")
        if self.max_retransmit < self.initial_retransmit:
            raise LocalProtocolError("max_retransmit must be >= initial_retransmit")
        if not 0.1 <= self.renew_fraction < 1.0:
            raise LocalProtocolError("renew_fraction must be in [0.1, 1)")
        if self.denial_backoff < 1.0 or self.max_denial_backoff < self.denial_backoff:
            raise LocalProtocolError("denial back-off must be >= 1 s and <= its maximum")
        if self.udp_tunnel and not self.colocated_care_of_address:
            # RFC 3519 §3.1.5: "the 'D' bit ... MUST be set".
            raise LocalProtocolError("UDP tunnelling needs a co-located care-of address")


@dataclass(frozen=True, slots=True)
class BindingState:
    """What we believe the home agent holds for us."""

    care_of_address: IPv4Address
    lifetime: int | None  # None = infinite
    expires_at: float | None
    mobile_networks: tuple[IPv4Network, ...]
    udp_tunnel: bool
    registered_at: float


@dataclass(slots=True)
class _Pending:
    """The outstanding request (§3.6: what a mobile node keeps per pending registration)."""

    care_of_address: IPv4Address
    lifetime: int
    identification: int
    datagram: bytes
    first_sent: float  # first transmission of this Identification (lifetime timing)
    last_sent: float
    attempts: int = 1  # transmissions of this registration attempt
    interval: float = 1.0
    retransmit_at: float = 0.0
    resynced: bool = False  # one immediate retry after 133 per attempt
    timeout_reported: bool = False
    requested_networks: tuple[IPv4Network, ...] = ()
    udp_requested: bool = False


@dataclass(slots=True)
class _Intent:
    """What the caller asked for last, kept across denials and hold-downs."""

    deregister: bool
    care_of_address: IPv4Address


# ---------------------------------------------------------------------------


class RegistrationMachine:
    """Registration with one home agent. See the module docstring for the rules."""

    def __init__(
        self,
        config: MobileNodeConfig,
        *,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
        last_identification: int = 0,
    ) -> None:
        """``last_identification``: the last one a previous run sent (the daemon persists
        it), so timestamps stay strictly increasing across a restart (RFC 5944 §5.7.1)."""
        self.config = config
        self.state = State.IDLE
        self.binding: BindingState | None = None
        #: Drops and notable happenings by reason (e.g. ``bad_authenticator``).
        self.counters: dict[str, int] = {}
        self._sa = config.security_association
        self._identification = IdentificationGenerator(
            self._sa.replay,
            clock_offset=config.clock_offset,
            random_bytes=random_bytes,
            last=last_identification,
        )
        self._home_agent_host = str(config.home_agent)
        self._lifetime = config.lifetime
        self._networks: tuple[IPv4Network, ...] = (
            config.mobile_networks if config.explicit_mode else ()
        )
        self._pending: _Pending | None = None
        self._intent: _Intent | None = None
        self._hold_down_until: float | None = None
        self._denials_in_a_row = 0
        self._renew_at: float | None = None
        self._outbox: list[tuple[bytes, Address]] = []
        self._events: deque[Event] = deque()

    # -- public API -------------------------------------------------------

    @property
    def registered(self) -> bool:
        return self.binding is not None

    @property
    def last_identification(self) -> int:
        """The last timestamp Identification sent or reserved (0: none); persist it."""
        return self._identification.last_identification

    @property
    def clock_correction(self) -> float:
        """Seconds added to our clock after the last 133 (§5.7.1 resynchronisation)."""
        return self._identification.clock_correction

    @property
    def mobile_networks_requested(self) -> tuple[IPv4Network, ...]:
        """Prefixes still sent in explicit mode (RFC 5177 §5.1 may have removed some)."""
        return self._networks

    def register(self, care_of_address: IPv4Address, now: float) -> None:
        """Register ``care_of_address`` (first registration, move or forced renewal)."""
        previous = self._intent
        self._intent = _Intent(deregister=False, care_of_address=care_of_address)
        if self.state is State.HELD_DOWN:
            self._transition(Input.REGISTER)
            moved = previous is None or previous.care_of_address != care_of_address
            if self._hold_down_until is not None and moved:
                # A new point of attachment is new circumstances: wait only the
                # RFC's one-second floor rather than the whole denial back-off.
                self._hold_down_until = min(self._hold_down_until, now + 1.0)
            return
        self._transition(Input.REGISTER)
        pending = self._pending
        if (
            pending is not None
            and pending.lifetime > 0
            and pending.care_of_address == care_of_address
        ):
            # Already asking for exactly this: let the retransmission timer carry on
            # rather than restarting it (repeated calls must not flood, §3.6).
            self._count("register_coalesced")
            return
        self._send_new_request(care_of_address, self._lifetime, now)

    def deregister(self, now: float, care_of_address: IPv4Address | None = None) -> None:
        """Send a deregistration (Lifetime 0).

        Without ``care_of_address`` all bindings go: §3.6.1.2 says to put the home
        address in the Care-of Address field ("deregister all care-of addresses",
        what a node returning home does, Appendix C.3).
        """
        target = self.config.home_address if care_of_address is None else care_of_address
        self._intent = _Intent(deregister=True, care_of_address=target)
        self._transition(Input.DEREGISTER)
        self._hold_down_until = None
        pending = self._pending
        if pending is not None and pending.lifetime == 0 and pending.care_of_address == target:
            self._count("deregister_coalesced")
            return
        self._send_new_request(target, 0, now)

    def cancel(self) -> None:
        """Forget the outstanding request and our belief; send nothing (e.g. shutdown)."""
        self._transition(Input.CANCEL)
        self._pending = None
        self._intent = None
        self._hold_down_until = None
        self._renew_at = None
        self.binding = None

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out, self._outbox = self._outbox, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        candidates: list[float] = []
        if self._pending is not None:
            candidates.append(self._pending.retransmit_at)
        if self.state is State.HELD_DOWN and self._hold_down_until is not None:
            candidates.append(self._hold_down_until)
        if self.state is State.REGISTERED and self._renew_at is not None:
            candidates.append(self._renew_at)
        if self.binding is not None and self.binding.expires_at is not None:
            candidates.append(self.binding.expires_at)
        return min(candidates) if candidates else None

    def handle_timer(self, now: float) -> None:
        # Order matters when a long pause let several deadlines pass: renewal first
        # (it starts a request), then expiry (belief goes), then retransmission.
        if self.state is State.REGISTERED and self._renew_at is not None and now >= self._renew_at:
            assert self.binding is not None
            self._transition(Input.RENEW)
            self._renew_at = None
            self._send_new_request(self.binding.care_of_address, self._lifetime, now)
        if (
            self.binding is not None
            and self.binding.expires_at is not None
            and now >= self.binding.expires_at
        ):
            expired = self.binding
            self.binding = None
            self._renew_at = None
            self._transition(Input.BINDING_EXPIRED)
            self._events.append(BindingExpired(expired.care_of_address))
            self._count("binding_expired")
            if self._pending is None and self.state is State.REGISTERING:
                # REGISTERED -> REGISTERING on expiry: ask again straight away.
                self._send_new_request(expired.care_of_address, self._lifetime, now)
        hold_down_until = self._hold_down_until
        if self.state is State.HELD_DOWN and hold_down_until is not None and now >= hold_down_until:
            self._hold_down_until = None
            intent = self._intent
            assert intent is not None
            if intent.deregister:
                self._transition(Input.DEREGISTER)
                self._send_new_request(intent.care_of_address, 0, now)
            else:
                self._transition(Input.HOLD_DOWN_OVER)
                self._send_new_request(intent.care_of_address, self._lifetime, now)
        pending = self._pending
        if pending is not None and now >= pending.retransmit_at:
            self._transition(Input.RETRANSMIT)
            self._retransmit(pending, now)

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        """Process a datagram from UDP port 434. Invalid input is counted, never raised."""
        host, port = addr[0], addr[1]
        if str(host) != self._home_agent_host or port != self.config.home_agent_port:
            self._count("unexpected_source")
            return
        sa = self._sa
        result = verify(data, lambda _message, spi: sa if spi == sa.spi else None)
        reply = result.message
        if result.failure is not None:
            if reply is not None and not isinstance(reply, RegistrationReply):
                self._count("not_a_reply")
            else:
                self._count(result.failure.value)
            return
        if not isinstance(reply, RegistrationReply):
            self._count("not_a_reply")
            return
        for extension in reply.extensions:
            # RFC 5944 §1.8: an unrecognised extension 0-127 discards the message.
            if isinstance(extension, UnknownExtension) and not extension.skippable:
                self._count("unknown_extension")
                return
        pending = self._pending
        if pending is None:
            self._count("unsolicited")
            return
        if reply.home_address != self.config.home_address:
            self._count("wrong_home_address")
            return
        if low32(reply.identification) != low32(pending.identification):
            # §3.6.2.1: compare with the most recent request only.
            self._count("identification_mismatch")
            return
        self._identification.accept_reply(reply.identification)
        self._handle_reply(reply, result.covered, pending, now)

    # -- internals --------------------------------------------------------

    def _transition(self, event: Input) -> None:
        try:
            self.state = TRANSITIONS[(self.state, event)]
        except KeyError:
            raise IllegalTransition(self.state, event) from None

    def _count(self, reason: str) -> None:
        self.counters[reason] = self.counters.get(reason, 0) + 1

    def _flags(self, udp: bool) -> RequestFlags:
        config = self.config
        flags = RequestFlags(0)
        if config.simultaneous_bindings:
            flags |= RequestFlags.S
        if config.colocated_care_of_address or udp:
            flags |= RequestFlags.D
        if config.gre_encapsulation:
            flags |= RequestFlags.G
        if config.reverse_tunnel or udp:
            # RFC 3519 §3.1.5: the T bit SHOULD accompany a UDP tunnel request.
            flags |= RequestFlags.T
        return flags

    def _build(
        self, care_of_address: IPv4Address, lifetime: int, identification: int
    ) -> tuple[bytes, tuple[IPv4Network, ...], bool]:
        config = self.config
        extensions: list[Extension] = []
        networks: tuple[IPv4Network, ...] = ()
        udp = False
        if lifetime > 0:
            # RFC 5177 §5: prefixes in every registration, none in a deregistration;
            # all before the authentication extension so they are covered (§10).
            networks = self._networks
            extensions.extend(MobileNetworkRequest(prefix) for prefix in networks)
            if config.udp_tunnel:
                udp = True
                extensions.append(UDPTunnelRequest(force=config.udp_tunnel_force))
        if config.nai is not None:
            extensions.append(MobileNodeNAI(config.nai))
        request = RegistrationRequest(
            flags=self._flags(udp),
            lifetime=lifetime,
            home_address=config.home_address,
            home_agent=config.home_agent,
            care_of_address=care_of_address,
            identification=identification,
            extensions=tuple(extensions),
        )
        return sign(encode(request), self._sa), networks, udp

    def _send_new_request(self, care_of_address: IPv4Address, lifetime: int, now: float) -> None:
        identification = self._identification.next_identification(now)
        datagram, networks, udp = self._build(care_of_address, lifetime, identification)
        interval = self.config.initial_retransmit
        self._pending = _Pending(
            care_of_address=care_of_address,
            lifetime=lifetime,
            identification=identification,
            datagram=datagram,
            first_sent=now,
            last_sent=now,
            interval=interval,
            retransmit_at=now + interval,
            requested_networks=networks,
            udp_requested=udp,
        )
        self._renew_at = None
        self._emit(datagram)
        self._count("requests_sent")

    def _emit(self, datagram: bytes) -> None:
        self._outbox.append((datagram, (self._home_agent_host, self.config.home_agent_port)))

    def _retransmit_cap(self, lifetime: int) -> float:
        cap = self.config.max_retransmit
        if lifetime > 0:
            # §3.6.3: the maximum "SHOULD be no greater than the requested Lifetime".
            cap = min(cap, float(lifetime))
        return max(cap, self.config.initial_retransmit)

    def _retransmit(self, pending: _Pending, now: float) -> None:
        config = self.config
        unanswered = pending.attempts
        if not pending.timeout_reported and unanswered > config.max_retransmissions:
            # The first request and all ``max_retransmissions`` retransmissions went
            # unanswered: say so once, then carry on at the capped interval.
            pending.timeout_reported = True
            self._events.append(
                RegistrationTimeout(pending.care_of_address, unanswered, pending.lifetime == 0)
            )
            self._count("timeouts")
        pending.interval = min(pending.interval * 2, self._retransmit_cap(pending.lifetime))
        pending.attempts += 1
        pending.last_sent = now
        pending.retransmit_at = now + pending.interval
        if self._sa.replay is ReplayMethod.TIMESTAMPS:
            # §3.6.3: with timestamps each retransmission is a new registration.
            pending.identification = self._identification.next_identification(now)
            pending.datagram, pending.requested_networks, pending.udp_requested = self._build(
                pending.care_of_address, pending.lifetime, pending.identification
            )
            pending.first_sent = now
        # With nonces the unanswered request goes out unchanged (§3.6.3); its
        # lifetime is timed from its first transmission.
        self._emit(pending.datagram)
        self._count("retransmissions")

    def _handle_reply(
        self,
        reply: RegistrationReply,
        covered: tuple[Extension, ...],
        pending: _Pending,
        now: float,
    ) -> None:
        code = int(reply.code)
        round_trip = now - pending.last_sent
        if code in (0, 1):
            self._accepted(reply, covered, pending, now, round_trip)
            return
        if code in (_IDENTIFICATION_MISMATCH, _UNKNOWN_HOME_AGENT):
            # §3.6.2.3: adjust the Identification parameters from the reply.
            self._identification.resynchronise(reply.identification, now)
            self._count("resynchronised")
            if code == _IDENTIFICATION_MISMATCH and not pending.resynced:
                self._transition(Input.RESYNC)
                self._send_new_request(pending.care_of_address, pending.lifetime, now)
                assert self._pending is not None
                self._pending.resynced = True
                return
        if code == _LIFETIME_TOO_LONG and 0 < reply.lifetime < self._lifetime:
            # §3.6.2.3 code 69: the reply carries the longest lifetime allowed.
            self._lifetime = int(reply.lifetime)
        if code == _HA_MOBNET_DISALLOWED:
            # RFC 5177 §5.1: stop sending Mobile Network Request extensions to this HA.
            self._networks = ()
        if code == _HA_MOBNET_ERROR:
            # RFC 5177 §5.1: stop requesting the prefixes named in the acknowledgements.
            refused = {ext.prefix for ext in covered if isinstance(ext, MobileNetworkAck)}
            self._networks = tuple(p for p in self._networks if p not in refused)
        self._denied(code, pending, now)

    def _denied(self, code: int, pending: _Pending, now: float) -> None:
        self._pending = None
        self._denials_in_a_row += 1
        backoff = min(
            self.config.denial_backoff * 2 ** (self._denials_in_a_row - 1),
            self.config.max_denial_backoff,
        )
        self._hold_down_until = now + backoff
        # A denied renewal leaves the old binding in force at the home agent (a
        # denial changes nothing there), so our belief and its expiry stay.
        self._renew_at = None
        self._transition(Input.DENIED)
        self._events.append(
            RegistrationDenied(
                code=code,
                reason=reply_code_text(code),
                care_of_address=pending.care_of_address,
                deregistration=pending.lifetime == 0,
                retry_at=now + backoff,
            )
        )
        self._count(f"denied_{code}")

    def _accepted(
        self,
        reply: RegistrationReply,
        covered: tuple[Extension, ...],
        pending: _Pending,
        now: float,
        round_trip: float,
    ) -> None:
        if pending.lifetime == 0:
            self._pending = None
            self._denials_in_a_row = 0
            self.binding = None
            self._renew_at = None
            self._transition(Input.ACCEPTED)
            self._events.append(Deregistered(pending.care_of_address, round_trip))
            return
        granted = min(int(reply.lifetime), pending.lifetime)  # §3.4: never above the request
        if granted == 0:
            # Accepted with no lifetime is useless and would loop; treat as a denial.
            self._count("zero_lifetime_granted")
            self._denied(int(reply.code), pending, now)
            return
        acks = [ext for ext in covered if isinstance(ext, MobileNetworkAck)]
        acked = tuple(ack.prefix for ack in acks if ack.success)
        rejected = tuple((ack.prefix, int(ack.code)) for ack in acks if not ack.success)
        udp_reply = next((ext for ext in covered if isinstance(ext, UDPTunnelReply)), None)
        udp = pending.udp_requested and udp_reply is not None and udp_reply.accepted
        infinite = granted == INFINITE_LIFETIME
        start = pending.first_sent  # §3.6.2.2: timed from when the request was sent
        previous = self.binding
        self.binding = BindingState(
            care_of_address=pending.care_of_address,
            lifetime=None if infinite else granted,
            expires_at=None if infinite else start + granted,
            mobile_networks=acked,
            udp_tunnel=udp,
            registered_at=now,
        )
        self._renew_at = (
            None if infinite else max(start + granted * self.config.renew_fraction, now + 1.0)
        )
        if self._renew_at is not None and self.binding.expires_at is not None:
            self._renew_at = min(self._renew_at, self.binding.expires_at)
        self._pending = None
        self._denials_in_a_row = 0
        self._transition(Input.ACCEPTED)
        self._events.append(
            Registered(
                care_of_address=pending.care_of_address,
                lifetime=None if infinite else granted,
                mobile_networks_acked=acked,
                round_trip=round_trip,
                code=int(reply.code),
                mobile_networks_rejected=rejected,
                mobile_networks_unsupported=bool(pending.requested_networks) and not acks,
                udp_tunnel=udp,
                udp_keepalive_interval=udp_reply.keepalive_interval if udp_reply else 0,
                renewal=previous is not None
                and previous.care_of_address == pending.care_of_address,
            )
        )


# ---------------------------------------------------------------------------
# Smoke-out probe (DESIGN.md §2: a quick conjecture about the domain, never proof)


@dataclass(frozen=True, slots=True)
class SmokeOutProbe:
    """A deliberately unauthenticated Registration Request and how to read its answer.

    The request carries our real SPI but an authenticator made with a throwaway
    random key. Our home agent recognises the node, finds the authenticator
    invalid and answers 131 without changing any state (RFC 5944 §3.8.2.1 a; our
    :mod:`router.mip.homeagent` guarantees no binding, no replay-window move). It
    signs that 131 with an SA the node has, so :meth:`classify` can tell a reply
    from *our* home agent from anyone else's. Lifetime 0 and a random
    Identification keep the probe harmless even to a home agent that got it wrong,
    and leave the real machine's Identification sequence untouched.
    """

    datagram: bytes
    identification: int
    destination: Address

    @classmethod
    def build(
        cls,
        config: MobileNodeConfig,
        care_of_address: IPv4Address,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> SmokeOutProbe:
        sa = config.security_association
        throwaway = SecurityAssociation(sa.spi, sa.algorithm, random_bytes(32), sa.replay)
        identification = int.from_bytes(random_bytes(8), "big")
        request = RegistrationRequest(
            flags=RequestFlags.D if config.colocated_care_of_address else RequestFlags(0),
            lifetime=0,
            home_address=config.home_address,
            home_agent=config.home_agent,
            care_of_address=care_of_address,
            identification=identification,
        )
        return cls(
            sign(encode(request), throwaway),
            identification,
            (str(config.home_agent), config.home_agent_port),
        )

    def classify(
        self, config: MobileNodeConfig, data: bytes, addr: Address
    ) -> SmokeOutAnswer | None:
        """The answer, or None if ``data`` is not a reply to this probe (drop it)."""
        sa = config.security_association
        result = verify(data, lambda _message, spi: sa if spi == sa.spi else None)
        reply = result.message
        if not isinstance(reply, RegistrationReply):
            return None
        if low32(reply.identification) != low32(self.identification):
            return None
        if reply.home_address != config.home_address:
            return None
        return SmokeOutAnswer(
            code=int(reply.code),
            authenticated=result.ok and str(addr[0]) == str(config.home_agent),
            responder=str(addr[0]),
        )


@dataclass(frozen=True, slots=True)
class SmokeOutAnswer:
    """``authenticated``: the reply verified under our real SA and came from our HA."""

    code: int
    authenticated: bool
    responder: str


def _main() -> None:
    print("RegistrationMachine transitions (RFC 5944 section 3.6)\n")
    print(format_transitions())


if __name__ == "__main__":
    _main()
