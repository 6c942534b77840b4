"""One fuzz target per parser that reads outside input, each asserting that parser's contract.

A target is ``check(data: bytes)``: it feeds ``data`` to the parser and raises
:class:`ContractViolation` if the parser

- raises anything but its documented error (``DecodeError``, ``AtParseError``,
  ``WpaParseError``, ``DhcpParseError``, ``HttpError``, ``ConfigError``; nothing at all for
  the receive paths, ``verify``, ``parse_leases`` and ``parse_sas``);
- logs at ERROR level (hostile input is not our error; DESIGN.md section 8);
- for a receive path (home agent, mobile node): drops a datagram without counting exactly one
  reason in ``.counters`` (a drop = no reply, no event, no change of state), lets a counter
  go down, or fails to leave any trace in the counters at all (home agent).

Inputs of targets with a *mode byte* (``data[0]``) use its bits to steer structure: re-sign
the mutated message with the right Mobility Security Association, patch the home address or
a fresh Identification in, fix the ICMP checksum, put the receiver in a given state first.
So a mutation of the body still passes authentication and reaches the state machines, and
every crashing input replays from its bytes alone.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import random
import shutil
import tempfile
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from router.config import ConfigError, load_home_agent_config, load_router_config
from router.lan.dnsmasq import Lease, parse_leases
from router.mip._wire import internet_checksum
from router.mip.advert import decode_icmp, encode_icmp
from router.mip.auth import AuthAlgorithm, SecurityAssociation, Verification, sign, verify
from router.mip.errors import DecodeError
from router.mip.homeagent import HomeAgentConfig, HomeAgentLogic, MobileNodeEntry
from router.mip.identification import ReplayMethod, ntp_seconds
from router.mip.messages import (
    RegistrationReply,
    RegistrationRequest,
    RequestFlags,
    decode,
    decode_with_offsets,
    encode,
)
from router.mip.mobilenode import MobileNodeConfig, RegistrationMachine
from router.uplink import at
from router.uplink.dhcp import DhcpParseError, parse_hook_line
from router.uplink.wlan import (
    WpaParseError,
    describe_disconnect,
    parse_event,
    parse_key_values,
    parse_list_networks,
    parse_scan_results,
    redact,
)
from router.vpn.strongswan import VpnError, VpnState, parse_sas
from router.web.api import WebApp
from router.web.server import (
    METHODS,
    REASONS,
    HttpError,
    Limits,
    error_response,
    read_body,
    read_head,
    render_response,
)
from router.web.source import FakeStatusSource
from tests import config_samples as samples
from tests.fuzz.mutate import mutated
from tests.unit import strategies_mip as smip


class ContractViolation(AssertionError):
    """The parser broke its contract on this input (the message says how)."""


def require(condition: object, message: str) -> None:
    if not condition:
        raise ContractViolation(message)


class _ErrorLog(logging.Handler):
    """Collects every record at ERROR or above, from any logger."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_ERROR_LOG = _ErrorLog()


def _install_error_log() -> None:
    root = logging.getLogger()
    if _ERROR_LOG not in root.handlers:
        root.addHandler(_ERROR_LOG)


@dataclass(frozen=True)
class Target:
    name: str
    parser: str  # what is fuzzed, for the report
    run: Callable[[bytes], None]
    valid: st.SearchStrategy[bytes]  # structure-aware: valid inputs (mode byte included)
    tokens: tuple[bytes, ...] = ()
    flags: st.SearchStrategy[int] | None = None  # the mode byte, when the target has one
    max_size: int = 600

    def check(self, data: bytes) -> None:
        """Run one input; raise :class:`ContractViolation` when the contract is broken."""
        _install_error_log()
        _ERROR_LOG.records.clear()
        try:
            self.run(data)
        except ContractViolation:
            raise
        except Exception as exc:
            raise ContractViolation(f"{self.name}: {type(exc).__name__} escaped: {exc}") from exc
        if _ERROR_LOG.records:
            record = _ERROR_LOG.records[0]
            raise ContractViolation(
                f"{self.name}: logged at {record.levelname} by {record.name}: {record.getMessage()}"
            )

    def inputs(self) -> st.SearchStrategy[bytes]:
        """Hypothesis: raw bytes, or valid encodings with structure-aware mutations."""
        body = mutated(self.valid if self.flags is None else self.valid.map(lambda b: b[1:]),
                       self.tokens)
        if self.flags is not None:
            body = st.builds(lambda flag, rest: bytes([flag]) + rest, self.flags, body)
        return st.one_of(st.binary(max_size=self.max_size), body, self.valid)


def _with_flags(flags: st.SearchStrategy[int], bodies: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.builds(lambda flag, body: bytes([flag]) + body, flags, bodies)


def _biased_flags(*good: int) -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from(good), st.integers(0, 255))


# ---------------------------------------------------------------------------------------------
# Mobile IPv4: codec, authentication, agent discovery

SA_MD5 = SecurityAssociation(256, AuthAlgorithm.HMAC_MD5, b"fuzz-key-md5-16b")
SA_SHA = SecurityAssociation(300, AuthAlgorithm.HMAC_SHA256, b"fuzz-key-sha256" * 2,
                             replay=ReplayMethod.NONCES)
_SAS = {SA_MD5.spi: SA_MD5, SA_SHA.spi: SA_SHA}


def _decode_run(data: bytes) -> None:
    try:
        message, offsets = decode_with_offsets(data)
    except DecodeError as error:
        require(0 <= error.offset <= len(data), f"DecodeError offset {error.offset} outside the input")
        return
    extensions = getattr(message, "extensions", ())
    require(len(offsets) == len(extensions), "one offset per extension")
    require(all(0 <= o < len(data) for o in offsets), f"offsets {offsets} outside the input")
    require(list(offsets) == sorted(set(offsets)), f"offsets {offsets} not increasing")
    require(decode(data) == message, "decode and decode_with_offsets disagree")


def _verify_run(data: bytes) -> None:
    if not data:
        return
    body = data[1:]
    if data[0] & 1:
        body = sign(body, SA_SHA if data[0] & 2 else SA_MD5)
    result = verify(body, lambda _message, spi: _SAS.get(spi))
    require(isinstance(result, Verification), "verify returned no Verification")
    if result.ok:
        require(result.sa is not None and result.message is not None, "ok without SA or message")


def _fix_checksum(body: bytes) -> bytes:
    if len(body) < 4:
        return body
    zeroed = body[:2] + b"\x00\x00" + body[4:]
    return body[:2] + internet_checksum(zeroed).to_bytes(2, "big") + body[4:]


def _advert_run(data: bytes) -> None:
    if not data:
        return
    body = _fix_checksum(data[1:]) if data[0] & 1 else data[1:]
    try:
        decode_icmp(body)
    except DecodeError as error:
        require(0 <= error.offset <= len(body), f"DecodeError offset {error.offset} outside the input")


def _advert_datagram_run(data: bytes) -> None:
    """The listener's whole datagram path (IPv4 header + ICMP): exactly one outcome, never an
    exception; a datagram that yields nothing names its reason."""
    from router.uplink.adverts import parse_datagram

    if not data:
        return
    body = data[1:]
    if data[0] & 1 and len(body) >= 20:
        # A well-formed IPv4 header in front of the mutated ICMP part (mode bit 0).
        icmp = _fix_checksum(body[20:]) if data[0] & 2 else body[20:]
        body = bytes([0x45, 0]) + (20 + len(icmp)).to_bytes(2, "big") + b"\x00\x00\x00\x00\x01\x01\x00\x00" \
            + bytes([10, 30, 0, 1, 224, 0, 0, 1]) + icmp
    parsed = parse_datagram(body, 0.0)
    require((parsed.heard is None) != (parsed.drop is None), f"outcome not exactly one of heard/drop: {parsed}")


_MIP_TOKENS = (b"\x20\x04", b"\x20\x14", b"\x00", b"\x83", b"\x86\x00", b"\x90", b"\x2b\x06",
               b"\x91\x06", b"\x8c", b"\x84", b"\x85")

# ---------------------------------------------------------------------------------------------
# The home agent's receive path

NOW = 1000.0
CLOCK_OFFSET = 3_900_000_000.0 - NOW
HA_ADDRESS = IPv4Address("10.10.0.1")
NODE_TS = IPv4Address("10.10.0.50")  # timestamps, HMAC-MD5, a mobile router (NEMO)
NODE_NONCE = IPv4Address("10.10.0.51")  # nonces, HMAC-SHA-256, a plain mobile node
NAT_SOURCE = "198.51.100.7"


def _random_bytes() -> Callable[[int], bytes]:
    """Deterministic but never constant (a constant source would repeat nonces forever)."""
    return random.Random(0).randbytes


def _ha_config(alternate: bool) -> HomeAgentConfig:
    return HomeAgentConfig(
        address=HA_ADDRESS,
        home_network=IPv4Network("10.10.0.0/24"),
        mobile_nodes=(
            MobileNodeEntry(NODE_TS, (SA_MD5,), (IPv4Network("10.1.1.0/24"),)),
            MobileNodeEntry(NODE_NONCE, (SA_SHA,), (), max_lifetime=300),
        ),
        max_lifetime=1800,
        reverse_tunnelling=not alternate,
        udp_tunnelling=not alternate,
        clock_offset=CLOCK_OFFSET,
    )


HA_CONFIGS = (_ha_config(False), _ha_config(True))


def _timestamp(now: float, low: int = 0) -> int:
    return (ntp_seconds(now, CLOCK_OFFSET) << 32) | low


def _valid_request(home: IPv4Address, sa: SecurityAssociation, now: float) -> bytes:
    request = RegistrationRequest(
        RequestFlags.D | RequestFlags.T, 600, home, HA_ADDRESS, IPv4Address("203.0.113.5"),
        _timestamp(now, 7), ()
    )
    return sign(encode(request), sa)


def _drain(machine: Any) -> list[Any]:
    events = []
    while (event := machine.next_event()) is not None:
        events.append(event)
    return events


def _counted(before: dict[str, int], after: dict[str, int], what: str) -> int:
    for reason, count in before.items():
        require(after.get(reason, 0) >= count, f"{what}: counter {reason} went down")
    return sum(after.values()) - sum(before.values())


def _ha_run(data: bytes) -> None:
    """Mode byte: 1 node with nonces; 2 patch home address and home agent; 4 fresh timestamp;
    8 sign; 16 register first; 32 sent from the care-of address (no NAT); 64 the home agent
    without reverse/UDP tunnelling; 128 deliver the datagram twice."""
    if not data:
        return
    mode, body = data[0], bytearray(data[1:])
    node, sa = (NODE_NONCE, SA_SHA) if mode & 1 else (NODE_TS, SA_MD5)
    if mode & 2 and len(body) >= 12:
        body[4:8] = node.packed
        body[8:12] = HA_ADDRESS.packed
    if mode & 4 and len(body) >= 24:
        low = int.from_bytes(body[20:24], "big")
        body[16:24] = _timestamp(NOW, low).to_bytes(8, "big")
    datagram = sign(bytes(body), sa) if mode & 8 else bytes(body)
    source = str(IPv4Address(bytes(body[12:16]))) if mode & 32 and len(body) >= 16 else NAT_SOURCE
    ha = HomeAgentLogic(HA_CONFIGS[1 if mode & 64 else 0], random_bytes=_random_bytes())
    if mode & 16:
        ha.receive_datagram(_valid_request(node, sa, NOW - 10), ("203.0.113.5", 434), NOW - 10)
        ha.datagrams_to_send(NOW - 10)
        _drain(ha)
    address = (source, 434)
    for _ in range(2 if mode & 128 else 1):
        before, bindings = dict(ha.counters), ha.bindings()
        ha.receive_datagram(datagram, address, NOW)
        sent = ha.datagrams_to_send(NOW)
        events = _drain(ha)
        grown = _counted(before, ha.counters, "home agent")
        require(grown >= 1, "home agent: a datagram left no trace in the counters")
        if not sent and not events and ha.bindings() == bindings:
            diff = {k: v - before.get(k, 0) for k, v in ha.counters.items() if v != before.get(k, 0)}
            require(grown == 1, f"home agent: one drop counted {grown} times: {diff}")
        for reply, destination in sent:
            require(destination == address, f"home agent: reply to {destination}, not {address}")
            require(verify(reply, lambda _m, spi: _SAS.get(spi)).ok, "home agent: own reply fails to verify")
    timer = ha.get_timer()
    if timer is not None:
        ha.handle_timer(timer + 1)
        _drain(ha)


# ---------------------------------------------------------------------------------------------
# The mobile node's receive path


def _mn_config(alternate: bool) -> MobileNodeConfig:
    if alternate:
        return MobileNodeConfig(NODE_NONCE, HA_ADDRESS, SA_SHA, udp_tunnel=True, nai="mr@example.net",
                                explicit_mode=False, clock_offset=CLOCK_OFFSET)
    return MobileNodeConfig(NODE_TS, HA_ADDRESS, SA_MD5, mobile_networks=(IPv4Network("10.1.1.0/24"),),
                            clock_offset=CLOCK_OFFSET)


MN_CONFIGS = (_mn_config(False), _mn_config(True))
COA = IPv4Address("203.0.113.5")


def _pending_identification(machine: RegistrationMachine) -> int | None:
    sent = machine.datagrams_to_send(NOW)
    if not sent:
        return None
    message = decode(sent[-1][0])
    return message.identification if isinstance(message, RegistrationRequest) else None


def _mn_run(data: bytes) -> None:
    """Mode byte: 1 nonce/UDP/NAI configuration; 2 a registration outstanding; 4 registered
    first (then a renewal outstanding); 8 a deregistration outstanding instead; 16 patch the
    Identification to the outstanding one; 32 patch home address and home agent; 64 sign;
    128 from a wrong source."""
    if not data:
        return
    mode, body = data[0], bytearray(data[1:])
    config = MN_CONFIGS[mode & 1]
    machine = RegistrationMachine(config, random_bytes=_random_bytes())
    identification = None
    if mode & 6:
        machine.register(COA, NOW - 20)
        identification = _pending_identification(machine)
    if mode & 4 and identification is not None:
        accept = RegistrationReply(0, 600, config.home_address, HA_ADDRESS, identification, ())
        machine.receive_datagram(sign(encode(accept), config.security_association),
                                 (str(HA_ADDRESS), 434), NOW - 19)
        _drain(machine)
        if mode & 8:
            machine.deregister(NOW - 5)
        else:
            machine.register(COA, NOW - 5)
        identification = _pending_identification(machine)
    _drain(machine)
    if mode & 16 and identification is not None and len(body) >= 20:
        body[16:20] = (identification & 0xFFFF_FFFF).to_bytes(4, "big")
    if mode & 32 and len(body) >= 12:
        body[4:8] = config.home_address.packed
        body[8:12] = HA_ADDRESS.packed
    datagram = sign(bytes(body), config.security_association) if mode & 64 else bytes(body)
    source = ("10.10.0.2", 434) if mode & 128 else (str(HA_ADDRESS), 434)
    before = dict(machine.counters)
    snapshot = (machine.state, machine.binding, machine.get_timer())
    machine.receive_datagram(datagram, source, NOW)
    sent = machine.datagrams_to_send(NOW)
    events = _drain(machine)
    grown = _counted(before, machine.counters, "mobile node")
    if not sent and not events and (machine.state, machine.binding, machine.get_timer()) == snapshot:
        diff = {k: v - before.get(k, 0) for k, v in machine.counters.items() if v != before.get(k, 0)}
        require(grown == 1, f"mobile node: one drop counted {grown} times: {diff}")
    # Whatever the reply did, the machine must keep running on its own clock.
    for _ in range(3):
        timer = machine.get_timer()
        if timer is None:
            break
        machine.handle_timer(timer)
        machine.datagrams_to_send(timer)
        _drain(machine)


# ---------------------------------------------------------------------------------------------
# Text protocols: AT, wpa_supplicant, udhcpc, dnsmasq

AT_COMMANDS = (None, "AT+CSQ", "AT+CREG?", "AT+CGREG?", "AT+CEREG?", "AT+COPS?", "AT+CPIN?",
               "AT+CGDCONT?", "ATD*99#", "ATI", "AT^SYSINFO")
_AT_PREFIXES = ("+CSQ:", "+CREG:", "+COPS:", "+CPIN:", "+CGDCONT:", "^RSSI:")


def _at_line(line: str) -> None:
    at.parse_final(line)
    at.is_unsolicited_line(line)
    for parse in (at.parse_csq, at.parse_huawei_rssi, at.parse_registration, at.parse_cpin,
                  at.parse_cops):
        with contextlib.suppress(at.AtParseError):
            parse(line)
    with contextlib.suppress(at.AtParseError):
        at.parse_cgdcont([line])


def _at_run(data: bytes) -> None:
    """Mode byte: the outstanding command (index into AT_COMMANDS) and where to split the
    bytes in two reads. The rest: what the modem sends."""
    if not data:
        return
    mode, body = data[0], data[1:]
    channel = at.AtChannel()
    command = AT_COMMANDS[mode % len(AT_COMMANDS)]
    if command is not None:
        channel.send(command)
    cut = (mode * 7) % (len(body) + 1)
    events = channel.receive(body[:cut]) + channel.receive(body[cut:])
    for event in events:
        if isinstance(event, at.AtResponse):
            event.final.describe()
            event.final.error_code  # noqa: B018 - a property that parses
            for line in event.lines:
                _at_line(line)
            for prefix in _AT_PREFIXES:
                with contextlib.suppress(at.AtParseError):
                    event.line_with(prefix)
            with contextlib.suppress(at.AtParseError):
                at.parse_cgdcont(event.lines)
        else:
            _at_line(event.line)
    if channel.data_mode:
        channel.leave_data_mode()
    for raw in body.replace(b"\r", b"\n").split(b"\n"):
        _at_line(raw.decode("latin-1").strip())


def _wlan_run(data: bytes) -> None:
    text = data.decode(errors="replace")  # as WpaControl decodes replies and events
    for parse in (parse_key_values, parse_scan_results, parse_list_networks):
        with contextlib.suppress(WpaParseError):
            parse(text)
    redact(text)
    for message in (text, *text.splitlines()):
        try:
            event = parse_event(message)
        except WpaParseError:
            continue
        describe_disconnect(event)


def _dhcp_run(data: bytes) -> None:
    text = data.decode(errors="replace")  # as DhcpClient decodes udhcpc's stdout
    for line in (text, *text.splitlines()):
        try:
            report = parse_hook_line(line.rstrip())
        except DhcpParseError:
            continue
        if report is not None and report.lease is not None:
            require(0 <= report.lease.prefix_length <= 32, "prefix length outside 0..32")


def _leases_run(data: bytes) -> None:
    for lease in parse_leases(data.decode(errors="replace")):
        require(isinstance(lease, Lease) and isinstance(lease.expires, int), "ill-typed lease")
        require(isinstance(lease.address, IPv4Address), "lease address is not IPv4")


# ---------------------------------------------------------------------------------------------
# VICI (strongSwan list-sas answers), decoded by the vici package as the daemon does


def _vici_run(data: bytes) -> None:
    from vici.protocol import FiniteStream, Message

    try:
        message = Message.deserialize(FiniteStream(data))
    except Exception:
        return  # not a VICI message: the vici package's business, not parse_sas's
    for connection in ("corp", "other"):
        try:
            state = parse_sas(iter([message, message]), connection)
        except VpnError:
            continue
        require(isinstance(state, VpnState), "parse_sas returned no VpnState")


def _vici_encode(message: dict[str, Any]) -> bytes:
    from vici.protocol import Message

    return bytes(Message.serialize(message))


def _vici_messages() -> st.SearchStrategy[bytes]:
    """list-sas answers as charon sends them (odd values come from the mutations)."""
    number = st.integers(0, 2**40).map(lambda n: str(n).encode())
    state = st.sampled_from([b"ESTABLISHED", b"INSTALLED", b"CONNECTING", b"REKEYING", b"DELETING"])
    vip = st.sampled_from([b"10.9.0.7", b"fd00::7", b"192.0.2.50"])
    child = st.fixed_dictionaries({"state": state, "bytes-in": number, "bytes-out": number})
    ike = st.fixed_dictionaries(
        {"state": state, "local-host": vip, "remote-host": vip, "established": number,
         "local-vips": st.lists(vip, max_size=3),
         "child-sas": st.dictionaries(st.sampled_from(["corp-1", "corp-2"]), child, max_size=2)})
    return st.builds(lambda name, value: _vici_encode({name: value}),
                     st.sampled_from(["corp", "other"]), ike)


# ---------------------------------------------------------------------------------------------
# HTTP requests to the status page

WEB_TOKEN = "fuzz-operator-token-7Qx"
WEB_LIMITS = Limits(max_body=4096)
_WEB_READER_LIMIT = max(WEB_LIMITS.max_request_line, WEB_LIMITS.max_header_bytes) + 2
_web_state: dict[str, Any] = {}


def _web_loop() -> tuple[asyncio.AbstractEventLoop, WebApp, FakeStatusSource]:
    if "loop" not in _web_state:
        source = FakeStatusSource(clock=lambda: 1_700_000_000.0)
        _web_state["loop"] = asyncio.new_event_loop()
        _web_state["source"] = source
        _web_state["app"] = WebApp(source, token=WEB_TOKEN, allowed_hosts=("10.1.1.1", "router.lan"))
    return _web_state["loop"], _web_state["app"], _web_state["source"]


async def _web_once(app: WebApp, data: bytes) -> None:
    reader = asyncio.StreamReader(limit=_WEB_READER_LIMIT)
    reader.feed_data(data)
    reader.feed_eof()
    try:
        request = await read_head(reader, WEB_LIMITS, "10.1.1.23")
        if request is None or request.method not in METHODS:
            return
        request.body = await read_body(reader, request, WEB_LIMITS)
    except HttpError as error:
        require(error.status in REASONS, f"HttpError with unknown status {error.status}")
        render_response(error_response(error.status, error.message, error.headers))
        return
    try:
        response = await app(request)
    except HttpError as error:
        require(error.status in REASONS, f"HttpError with unknown status {error.status}")
        response = error_response(error.status, error.message, error.headers)
    render_response(response, head_only=request.method == "HEAD")


def _web_run(data: bytes) -> None:
    loop, app, source = _web_loop()
    try:
        loop.run_until_complete(_web_once(app, data))
    finally:
        source.actions.clear()


_HTTP_TOKENS = (
    b"GET", b"HEAD", b"POST", b"PUT", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"/api/action/reconnect",
    b"/api/action/uplink_prefer", b"/api/status", b"/metrics", b"/?x=%00", b"Host: 10.1.1.1",
    b"Host: evil.example", b"Content-Length: 4097", b"Content-Length: -1", b"Content-Length: 00",
    b"Transfer-Encoding: chunked", b"Origin: http://evil.example", b"Sec-Fetch-Site: cross-site",
    b"Authorization: Bearer " + WEB_TOKEN.encode(), b"Authorization: bearer", b"Content-Type: application/json",
    b'{"name": "wlan"}', b"[]", b"{", b"\xff\xfe", b"\x00",
)


def _http_requests() -> st.SearchStrategy[bytes]:
    headers = st.lists(st.sampled_from([
        b"Host: 10.1.1.1", b"Host: router.lan:80", b"Origin: http://10.1.1.1",
        b"Sec-Fetch-Site: same-origin", b"Authorization: Bearer " + WEB_TOKEN.encode(),
        b"Content-Type: application/json; charset=utf-8", b"Accept: */*", b"User-Agent: fuzz",
        b"X-Repeat: a", b"X-Repeat: b",
    ]), max_size=7, unique=True)
    bodies = st.sampled_from([b"", b"{}", b'{"name": "wlan"}', b'{"name": "nope"}', b"[1]", b"\xff"])

    def build(method: bytes, target: bytes, version: bytes, lines: list[bytes], body: bytes) -> bytes:
        head = [method + b" " + target + b" " + version, *lines]
        if body:
            head.append(b"Content-Length: " + str(len(body)).encode())
        return b"\r\n".join(head) + b"\r\n\r\n" + body

    return st.builds(
        build, st.sampled_from([b"GET", b"HEAD", b"POST"]),
        st.sampled_from([b"/", b"/api/status", b"/api/series", b"/metrics", b"/healthz",
                         b"/fragment/main", b"/api/action/reconnect", b"/api/action/uplink_prefer",
                         b"/favicon.ico", b"/nope?x=1"]),
        st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]), headers, bodies)


# ---------------------------------------------------------------------------------------------
# The config files

_config_dir: list[Path] = []


def _config_base() -> Path:
    if not _config_dir:
        fixed = os.environ.get("ROUTER_FUZZ_CONFIG_DIR")  # the atheris worker's own directory
        if fixed:
            base = Path(fixed)
            base.mkdir(parents=True, exist_ok=True)
        else:
            parent = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
            base = Path(tempfile.mkdtemp(prefix="router-fuzz-config-", dir=parent))
            atexit.register(shutil.rmtree, base, True)
        for name, mode in (("outer.key", 0o600), ("inner.key", 0o600), ("open.key", 0o644)):
            (base / name).write_text("hex:ffeeddccbbaa99887766554433221100\n")
            os.chmod(base / name, mode)
        (base / "keydir").mkdir(exist_ok=True)
        _config_dir.append(base)
    return _config_dir[0]


def _key_files(value: Any) -> Iterable[Any]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "key_file":
                yield item
            yield from _key_files(item)
    elif isinstance(value, list):
        for item in value:
            yield from _key_files(item)


def _secrets(value: Any) -> Iterable[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "key" and not isinstance(item, dict | list):
                yield str(item)
            yield from _secrets(item)
    elif isinstance(value, list):
        for item in value:
            yield from _secrets(item)


def _config_run(loader: Callable[[str], Any], data: bytes) -> None:
    base = _config_base()
    try:
        parsed = tomllib.loads(data.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        parsed = {}
    for name in _key_files(parsed):
        # Keep the fuzzer inside its directory: no /proc/kmsg, no FIFOs, no /dev/zero.
        if not isinstance(name, str) or name.startswith(("/", "~")) or ".." in name or "\x00" in name:
            return
    path = base / "fuzz.toml"
    path.write_bytes(data)
    try:
        loader(str(path))
    except ConfigError as error:
        # DESIGN.md section 8: the config never echoes keys, not even in its errors.
        for secret in _secrets(parsed):
            if len(secret) >= 8:
                require(secret not in str(error), f"ConfigError echoes a key: {error}")


ROUTER_TOML = samples.ROUTER_TOML.encode()
HA_TOML = samples.HA_TOML.encode()

_TOML_TOKENS = (
    b'"10.1.1.1"', b'"0.0.0.0"', b'"::1"', b'"10.1.1.0/33"', b'"10.1.1.1/24"', b"-1", b"0", b"65536",
    b"4294967296", b"true", b"1.5", b"1e400", b"inf", b"nan", b"[]", b"{}", b'["x", 1]', b'"hex:zz"',
    b'"hex:"', b'"open.key"', b'"keydir"', b'"missing.key"', b"0x00112233445566778899aabbccddeeff",
    b"1979-05-27T07:32:00Z", b'"\\u0000"', b'"\\uD800"', b"\xff", b"[outer]", b"[[uplink]]",
    b"[router.x]", b"key_file", b"key", b"=", b"#",
)


def _config_lines(text: bytes) -> st.SearchStrategy[bytes]:
    """The valid file, with one value replaced by a value of another type or range."""
    lines = text.split(b"\n")
    value_lines = [i for i, line in enumerate(lines) if b" = " in line]

    def replace(index: int, token: bytes) -> bytes:
        out = list(lines)
        key = out[index].split(b" = ", 1)[0]
        out[index] = key + b" = " + token
        return b"\n".join(out)

    return st.one_of(st.just(text), st.builds(replace, st.sampled_from(value_lines), st.sampled_from(_TOML_TOKENS)))


# ---------------------------------------------------------------------------------------------
# The registry

_AT_SEEDS = [
    b"AT+CSQ\r\r\n+CSQ: 17,99\r\n\r\nOK\r\n", b"\r\n+CREG: 2,1,\"1A2B\",\"01C3D4E5\",7\r\nOK\r\n",
    b"+CEREG: 1,\"00FF\",\"0001ABCD\",7\r\n", b"\r\n+COPS: 0,0,\"Operator, Ltd\",2\r\n\r\nOK\r\n",
    b"+CPIN: SIM PIN\r\nOK\r\n", b"+CGDCONT: 1,\"IP\",\"internet\",\"0.0.0.0\",0,0\r\nOK\r\n",
    b"\r\n+CME ERROR: 10\r\n", b"+CME ERROR: SIM not inserted\r\n", b"CONNECT 150000000\r\n~\x7d\x23",
    b"^RSSI:14\r\nRING\r\n+CGREG: 5\r\nNO CARRIER\r\n", b"Manufacturer: X\rModel: Y\nOK\n",
]
_WLAN_SEEDS = [
    b"bssid / frequency / signal level / flags / ssid\n02:00:00:00:01:00\t2412\t-44\t[WPA2-PSK-CCMP][ESS]\tlab\n",
    b"network id / ssid / bssid / flags\n0\tlab\tany\t[CURRENT]\n1\tcafe\tany\t[DISABLED]\n",
    b"bssid=02:00:00:00:01:00\nfreq=2412\nssid=lab\nwpa_state=COMPLETED\nip_address=10.30.0.23\n",
    b"RSSI=-44\nLINKSPEED=54\nNOISE=9999\nFREQUENCY=2412\n",
    b"<3>CTRL-EVENT-CONNECTED - Connection to 02:00:00:00:01:00 completed [id=0 id_str=]",
    b"<3>IFNAME=wlan0 CTRL-EVENT-DISCONNECTED bssid=02:00:00:00:01:00 reason=3 locally_generated=1",
    b"<2>CTRL-EVENT-SCAN-RESULTS ",
]
_DHCP_SEEDS = [
    b"@@router-dhcp bound ip=10.30.0.23 mask=255.255.255.0 router=10.30.0.1 dns=10.30.0.1 9.9.9.9 "
    b"serverid=10.30.0.1 lease=3600\n",
    b"@@router-dhcp renew ip=10.30.0.23 mask=24 router=10.30.0.1 10.30.0.2 dns= serverid= lease=\n",
    b"@@router-dhcp deconfig ip= mask= router= dns= serverid= lease=\n",
    b"udhcpc: sending discover\n@@router-dhcp leasefail ip= mask=\n",
]
_LEASE_SEEDS = [
    b"1700003600 02:00:00:00:aa:01 10.1.1.23 laptop 01:02:00:00:00:aa:01\n"
    b"1700003700 02:00:00:00:aa:02 10.1.1.24 * *\n",
]
_TEXT_TOKENS = (b"\t", b"\n", b"=", b"[", b"]", b"\xc2\xb2", b"\xef\xbc\x91", b"99999999999", b"-",
                b"reason=", b"bssid=", b"<3>", b"CTRL-EVENT-DISCONNECTED", b"mask=", b"ip=", b"lease=",
                b"+CSQ:", b"+CREG:", b"+CME ERROR:", b"CONNECT", b"OK", b'"', b",")


def _seeds(values: Sequence[bytes], flags: st.SearchStrategy[int] | None = None) -> st.SearchStrategy[bytes]:
    base = st.sampled_from(list(values))
    return base if flags is None else _with_flags(flags, base)


_HA_FLAGS = _biased_flags(0b0000_1110, 0b0000_1111, 0b0001_1110, 0b0011_1110, 0b1001_1110,
                          0b0101_1110, 0b0010_1110, 0b0000_0110)
_MN_FLAGS = _biased_flags(0b0111_0010, 0b0111_0110, 0b0111_1110, 0b0111_0011, 0b0111_0111,
                          0b0110_0010, 0b1111_0010, 0b0011_0010)
_AT_FLAGS = st.integers(0, 255)
_ONE_FLAGS = _biased_flags(1, 3)


def _requests_without_auth() -> st.SearchStrategy[bytes]:
    return smip.registration_requests.map(encode)


TARGETS: dict[str, Target] = {
    target.name: target
    for target in (
        Target("mip_decode", "router.mip.messages.decode_with_offsets / decode (DecodeError)",
               _decode_run, smip.messages.map(encode), _MIP_TOKENS),
        Target("mip_verify", "router.mip.auth.verify (never raises)", _verify_run,
               _with_flags(_ONE_FLAGS, smip.messages.map(encode)), _MIP_TOKENS, _ONE_FLAGS),
        Target("mip_advert", "router.mip.advert.decode_icmp (DecodeError)", _advert_run,
               _with_flags(_ONE_FLAGS, smip.icmp_messages.map(encode_icmp)), _MIP_TOKENS, _ONE_FLAGS),
        Target("advert_datagram", "router.uplink.adverts.parse_datagram (never raises; one outcome)",
               _advert_datagram_run, _with_flags(_biased_flags(3, 3), smip.icmp_messages.map(
                   lambda m: b"\x45" + bytes(19) + encode_icmp(m))), _MIP_TOKENS, _biased_flags(3, 3)),
        Target("mip_homeagent", "HomeAgentLogic.receive_datagram (never raises; drops counted)",
               _ha_run, _with_flags(_HA_FLAGS, _requests_without_auth()), _MIP_TOKENS, _HA_FLAGS),
        Target("mip_mobilenode", "RegistrationMachine.receive_datagram (never raises; drops counted)",
               _mn_run, _with_flags(_MN_FLAGS, smip.registration_replies.map(encode)), _MIP_TOKENS,
               _MN_FLAGS),
        Target("at", "router.uplink.at AtChannel.receive + parse_* (AtParseError)", _at_run,
               _seeds(_AT_SEEDS, _AT_FLAGS), _TEXT_TOKENS, _AT_FLAGS),
        Target("wlan", "router.uplink.wlan parse_* / describe_disconnect (WpaParseError)", _wlan_run,
               _seeds(_WLAN_SEEDS), _TEXT_TOKENS),
        Target("dhcp", "router.uplink.dhcp.parse_hook_line (DhcpParseError)", _dhcp_run,
               _seeds(_DHCP_SEEDS), _TEXT_TOKENS),
        Target("vici", "router.vpn.strongswan.parse_sas on vici-decoded list-sas (VpnError)",
               _vici_run, _vici_messages()),
        Target("web", "router.web.server read_head/read_body + WebApp (HttpError)", _web_run,
               _http_requests(), _HTTP_TOKENS, max_size=1200),
        Target("config_router", "router.config.load_router_config (ConfigError)",
               lambda data: _config_run(load_router_config, data), _config_lines(ROUTER_TOML),
               _TOML_TOKENS, max_size=1500),
        Target("config_home_agent", "router.config.load_home_agent_config (ConfigError)",
               lambda data: _config_run(load_home_agent_config, data), _config_lines(HA_TOML),
               _TOML_TOKENS),
        Target("dnsmasq_leases", "router.lan.dnsmasq.parse_leases (never raises)", _leases_run,
               _seeds(_LEASE_SEEDS), _TEXT_TOKENS),
    )
}
