"""Typed configuration for the router daemon and the home agent (TOML, validated at start).

Theory of operation: ``tomllib`` gives us plain dicts; a small ``_Table`` reader pulls each
key with its expected type and turns every problem into one ``ConfigError`` that names the
file, the line, the key and what was expected. Keys (shared secrets) are read from the file
or from ``key_file`` here, wrapped in ``Secret`` whose repr never shows the bytes, so a
config object can be logged or printed without leaking them (DESIGN.md section 8).

Only the composition roots (``router.daemon``, ``router.ha``) call the loaders.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, ip_address, ip_network
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ALGORITHMS = ("hmac-md5", "keyed-md5", "hmac-sha256")
REPLAY_METHODS = ("timestamp", "nonce")
UPLINK_KINDS = ("wlan", "3g", "ethernet")


class ConfigError(ValueError):
    """A configuration problem, located as precisely as we can: ``file:line: key: message``."""

    def __init__(self, source: str, line: int | None, key: str, message: str) -> None:
        self.source = source
        self.line = line
        self.key = key
        self.message = message
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


@dataclass(frozen=True, slots=True)
class Secret:
    """Key material. Never printed: repr and str say only how long it is."""

    value: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"Secret(<{len(self.value)} bytes>)"

    __str__ = __repr__


# --- locating keys in the text, for line-precise errors -----------------------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-]+)\s*\]\]?")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=")


def _key_lines(text: str) -> dict[str, int]:
    """Map ``table.key`` paths (arrays of tables as ``name[i]``) to 1-based line numbers."""
    lines: dict[str, int] = {}
    table = ""
    counters: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(raw)
        if header:
            name = header.group(2)
            if header.group(1) == "[[":
                index = counters.get(name, 0)
                counters[name] = index + 1
                table = f"{name}[{index}]"
            else:
                table = name
            lines.setdefault(table, number)
            continue
        key = _KEY.match(raw)
        if key:
            path = f"{table}.{key.group(1)}" if table else key.group(1)
            lines.setdefault(path, number)
    return lines


class _Source:
    def __init__(self, name: str, text: str, base_dir: Path) -> None:
        self.name = name
        self.base_dir = base_dir
        self._lines = _key_lines(text)

    def error(self, path: str, message: str) -> ConfigError:
        line = self._lines.get(path)
        if line is None and "." in path:
            line = self._lines.get(path.rsplit(".", 1)[0])
        return ConfigError(self.name, line, path, message)


class _Table:
    """Typed reads from one TOML table; unknown keys are errors (typos must not pass silently)."""

    def __init__(self, source: _Source, path: str, data: Mapping[str, Any]) -> None:
        self.source = source
        self.path = path
        self.data = data
        self.used: set[str] = set()

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, message: str) -> ConfigError:
        return self.source.error(self._key(key), message)

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, kind: type[T], default: T | None = None, *, required: bool = False) -> T:
        self.used.add(key)
        if key not in self.data:
            if required or default is None:
                raise self.error(key, f"missing (expected {_kind_name(kind)})")
            return default
        value = self.data[key]
        # bool is a subclass of int: "priority = true" must not pass as 1.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.error(key, f"expected {_kind_name(kind)}, got {type(value).__name__} {value!r}")
        return value

    def optional(self, key: str, kind: type[T]) -> T | None:
        if key not in self.data:
            self.used.add(key)
            return None
        return self.get(key, kind, required=True)

    def convert(self, key: str, convert: Callable[[Any], T], what: str, value: Any) -> T:
        try:
            return convert(value)
        except (ValueError, TypeError) as exc:
            raise self.error(key, f"expected {what}, got {value!r} ({exc})") from None

    def address(self, key: str, default: str | None = None) -> IPv4Address:
        text = self.get(key, str, default)
        address = self.convert(key, ip_address, "an IPv4 address", text)
        if not isinstance(address, IPv4Address):
            raise self.error(key, f"expected an IPv4 address, got {text!r}")
        return address

    def network(self, key: str, text: str) -> IPv4Network:
        network = self.convert(key, lambda t: ip_network(t, strict=True), "an IPv4 prefix", text)
        if not isinstance(network, IPv4Network):
            raise self.error(key, f"expected an IPv4 prefix, got {text!r}")
        return network

    def networks(self, key: str, default: list[str] | None = None) -> tuple[IPv4Network, ...]:
        items = self.get(key, list, default if default is not None else [])
        out = []
        for item in items:
            if not isinstance(item, str):
                raise self.error(key, f"expected a list of IPv4 prefixes, got element {item!r}")
            out.append(self.network(key, item))
        return tuple(out)

    def integer(self, key: str, default: int | None, low: int, high: int) -> int:
        value = self.get(key, int, default)
        if not low <= value <= high:
            raise self.error(key, f"expected an integer in {low}..{high}, got {value}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str | None) -> str:
        value = self.get(key, str, default)
        if value not in choices:
            raise self.error(key, f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    def table(self, key: str) -> _Table | None:
        self.used.add(key)
        if key not in self.data:
            return None
        value = self.data[key]
        if not isinstance(value, dict):
            raise self.error(key, "expected a table")
        return _Table(self.source, self._key(key), value)

    def tables(self, key: str) -> Iterator[_Table]:
        self.used.add(key)
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(key, "expected an array of tables ([[" + key + "]])")
        for index, item in enumerate(value):
            yield _Table(self.source, f"{self._key(key)}[{index}]", item)

    def finish(self) -> None:
        for key in self.data:
            if key not in self.used:
                raise self.error(key, "unknown key")


def _kind_name(kind: type[Any]) -> str:
    return {str: "a string", int: "an integer", bool: "true or false", list: "a list"}.get(
        kind, kind.__name__
    )


# --- keys ---------------------------------------------------------------------------------


def _parse_key_text(text: str) -> bytes:
    """``hex:00ff...`` or a bare hex string; anything else is taken as the UTF-8 bytes."""
    text = text.strip()
    body = text[4:] if text.startswith("hex:") else text
    if text.startswith("hex:") or (re.fullmatch(r"[0-9a-fA-F]+", body) and len(body) % 2 == 0):
        try:
            return bytes.fromhex(body)
        except ValueError:
            raise ValueError("not valid hex after 'hex:'") from None
    return text.encode()


def _read_key(table: _Table) -> Secret:
    """Exactly one of ``key`` and ``key_file``. Errors never include the key itself."""
    if table.has("key") == table.has("key_file"):
        raise table.error("key", "give exactly one of 'key' and 'key_file'")
    if table.has("key"):
        raw = table.data["key"]
        table.used.add("key")
        if not isinstance(raw, str):
            # Not table.get(): its message would echo the (secret) value.
            raise table.error("key", f"expected a string, got {type(raw).__name__} (value not shown)")
        try:
            value = _parse_key_text(raw)
        except ValueError as exc:
            raise table.error("key", str(exc)) from None
        table.used.add("key_file")
    else:
        value = _read_secret_file(table, "key_file").value
        table.used.add("key")
    if not 1 <= len(value) <= 64:
        raise table.error("key", f"key must be 1..64 bytes, got {len(value)}")
    return Secret(value)


def _read_secret_file(table: _Table, key: str) -> Secret:
    """A secret from a file that only its owner may read (DESIGN.md section 8)."""
    path = Path(table.get(key, str, required=True))
    if not path.is_absolute():
        path = table.source.base_dir / path
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise table.error(key, f"{path} is readable by group or others (mode {stat.S_IMODE(mode):o}); chmod 600 it")
        return Secret(_parse_key_text(path.read_text()))
    except ConfigError:
        raise  # already located (the mode check): a ValueError too, not to be wrapped twice
    except OSError as exc:
        raise table.error(key, f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise table.error(key, f"{path}: {exc}") from None


# --- router configuration ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MobilitySystemConfig:
    """One Mobile IPv4 system as seen from the router: inner (secure domain) or outer."""

    home_agent: IPv4Address
    home_address: IPv4Address
    spi: int
    key: Secret
    algorithm: str
    lifetime: int
    replay: str
    reverse_tunnel: bool
    #: RFC 3519: "auto" (request; UDP when the home agent sees a NAT), "always" (F flag), "never".
    #: Used by the single system's [inner] and the dual system's [outer]; the dual system's
    #: inner system never requests it (it rides the VPN outside).
    udp_tunnel: str
    inside_prefixes: tuple[IPv4Network, ...] = ()
    home_network: IPv4Network | None = None
    port: int = 434  # the home agent's UDP port (RFC 5944 §3.1); other values for tests only


@dataclass(frozen=True, slots=True)
class VpnConfig:
    vici_socket: str
    connection: str
    gateway: IPv4Address


@dataclass(frozen=True, slots=True)
class UplinkConfig:
    name: str
    interface: str
    kind: str
    priority: int
    metered: bool
    min_signal_dbm: int | None = None
    modem: str | None = None
    apn: str | None = None
    ssids: tuple[str, ...] = ()
    probe_targets: tuple[IPv4Address, ...] = ()
    wpa_control_dir: str = "/run/wpa_supplicant"  # wlan: wpa_supplicant's ctrl_interface


@dataclass(frozen=True, slots=True)
class WebConfig:
    listen_address: IPv4Address
    listen_port: int
    token: Secret | None


@dataclass(frozen=True, slots=True)
class RouterConfig:
    lan_interface: str
    lan_address: IPv4Interface  # the router's own LAN address with its prefix length, e.g. 10.1.1.1/24
    mobile_networks: tuple[IPv4Network, ...]
    history_db: str
    control_socket: str
    state_dir: str
    inner: MobilitySystemConfig
    outer: MobilitySystemConfig | None
    vpn: VpnConfig | None
    uplinks: tuple[UplinkConfig, ...]
    web: WebConfig | None


def _mobility_system(table: _Table, *, outer: bool) -> MobilitySystemConfig:
    home_network_text = table.optional("home_network", str)
    home_network = table.network("home_network", home_network_text) if home_network_text else None
    system = MobilitySystemConfig(
        home_agent=table.address("home_agent"),
        home_address=table.address("home_address"),
        spi=table.integer("spi", None, 256, 0xFFFFFFFF),  # RFC 5944 §1.2: SPIs 0-255 reserved
        key=_read_key(table),
        algorithm=table.choice("algorithm", ALGORITHMS, "hmac-md5"),
        lifetime=table.integer("lifetime", 600, 1, 0xFFFE),  # 0xFFFF means infinity (§3.3)
        replay=table.choice("replay", REPLAY_METHODS, "timestamp"),
        reverse_tunnel=table.get("reverse_tunnel", bool, True),
        udp_tunnel=table.choice("udp_tunnel", ("auto", "always", "never"), "auto"),
        inside_prefixes=table.networks("inside_prefixes") if not outer else (),
        home_network=home_network,
        port=table.integer("port", 434, 1, 65535),
    )
    if outer:
        table.used.add("inside_prefixes")
        if table.has("inside_prefixes"):
            raise table.error("inside_prefixes", "belongs in [inner]")
    if home_network is not None and system.home_address not in home_network:
        raise table.error("home_address", f"{system.home_address} is not inside home_network {home_network}")
    table.finish()
    return system


def _uplink(table: _Table) -> UplinkConfig:
    kind = table.choice("kind", UPLINK_KINDS, None)
    name = table.get("name", str, required=True)
    if not re.fullmatch(r"[a-z][a-z0-9_-]{0,15}", name):
        raise table.error("name", f"expected a short lowercase name, got {name!r}")
    interface = table.get("interface", str, required=True)
    if not 1 <= len(interface) <= 15:
        raise table.error("interface", "interface names are 1..15 characters")
    modem = table.optional("modem", str)
    apn = table.optional("apn", str)
    if kind == "3g" and (modem is None or apn is None):
        raise table.error("modem" if modem is None else "apn", "a 3g uplink needs 'modem' and 'apn'")
    if kind != "3g" and (modem is not None or apn is not None):
        raise table.error("modem" if modem is not None else "apn", f"only a 3g uplink has this (kind is {kind})")
    ssids = tuple(table.get("ssids", list, []))
    if not all(isinstance(s, str) for s in ssids):
        raise table.error("ssids", "expected a list of strings")
    min_signal = table.optional("min_signal_dbm", int)
    if min_signal is not None and not -120 <= min_signal <= 0:
        raise table.error("min_signal_dbm", f"expected -120..0 dBm, got {min_signal}")
    targets = []
    for text in table.get("probe_targets", list, []):
        if not isinstance(text, str):
            raise table.error("probe_targets", "expected a list of IPv4 addresses")
        target = table.convert("probe_targets", ip_address, "an IPv4 address", text)
        if not isinstance(target, IPv4Address):
            raise table.error("probe_targets", f"expected an IPv4 address, got {text!r}")
        targets.append(target)
    uplink = UplinkConfig(
        name=name,
        interface=interface,
        kind=kind,
        priority=table.integer("priority", 50, 0, 1000),
        metered=table.get("metered", bool, kind == "3g"),
        min_signal_dbm=min_signal,
        modem=modem,
        apn=apn,
        ssids=ssids,
        probe_targets=tuple(targets),
        wpa_control_dir=table.get("wpa_control_dir", str, "/run/wpa_supplicant"),
    )
    if kind != "wlan" and table.has("wpa_control_dir"):
        raise table.error("wpa_control_dir", f"only a wlan uplink has this (kind is {kind})")
    table.finish()
    return uplink


def _listen(table: _Table) -> tuple[IPv4Address, int]:
    text = table.get("listen", str, "10.1.1.1:80")
    host, _, port = text.rpartition(":")
    address = table.convert("listen", ip_address, "ADDRESS:PORT", host)
    port_number = table.convert("listen", int, "ADDRESS:PORT", port)
    if not isinstance(address, IPv4Address) or not 1 <= port_number <= 65535:
        raise table.error("listen", f"expected IPv4ADDRESS:PORT, got {text!r}")
    if address.is_unspecified:
        # The status page lives on the LAN side only (DESIGN.md section 8): no wildcard binds.
        raise table.error("listen", "must be the router's LAN address, not 0.0.0.0")
    return address, port_number


def _open(path: str | os.PathLike[str]) -> tuple[_Source, dict[str, Any]]:
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError(str(file), None, "", f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(file), None, "", f"not UTF-8 text (byte {exc.start}): TOML files are UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message already carries "(at line N, column M)".
        match = re.search(r"line (\d+)", str(exc))
        raise ConfigError(str(file), int(match.group(1)) if match else None, "", f"TOML syntax: {exc}") from None
    return _Source(str(file), text, file.parent), data


def load_router_config(path: str | os.PathLike[str]) -> RouterConfig:
    source, data = _open(path)
    top = _Table(source, "", data)
    router = top.table("router") or _Table(source, "router", {})
    inner_table = top.table("inner")
    if inner_table is None:
        raise source.error("inner", "missing [inner] section (the secure-domain home agent)")
    inner = _mobility_system(inner_table, outer=False)
    outer_table, vpn_table = top.table("outer"), top.table("vpn")
    if (outer_table is None) != (vpn_table is None):
        missing = "outer" if outer_table is None else "vpn"
        raise source.error(missing, "[outer] and [vpn] go together (the VPN runs from the outer home address)")
    outer = _mobility_system(outer_table, outer=True) if outer_table else None
    vpn = None
    if vpn_table is not None:
        vpn = VpnConfig(
            vici_socket=vpn_table.get("vici_socket", str, "/run/charon.vici"),
            connection=vpn_table.get("connection", str, required=True),
            gateway=vpn_table.address("gateway"),
        )
        vpn_table.finish()
    uplinks = tuple(_uplink(t) for t in top.tables("uplink"))
    names = [u.name for u in uplinks]
    for index, name in enumerate(names):
        if names.index(name) != index:
            raise source.error(f"uplink[{index}].name", f"duplicate uplink name {name!r}")
    if not uplinks:
        raise source.error("uplink", "at least one [[uplink]] is needed")
    web = None
    web_table = top.table("web")
    if web_table is not None:
        address, port = _listen(web_table)
        token = _read_secret_file(web_table, "token_file") if web_table.has("token_file") else None
        web_table.used.add("token_file")
        web_table.finish()
        web = WebConfig(address, port, token)
    lan_address_text = router.get("lan_address", str, "10.1.1.1/24")
    try:
        lan_interface_form = IPv4Interface(lan_address_text)
        lan_ip = lan_interface_form.ip
    except ValueError as exc:
        raise router.error("lan_address", f"expected ADDRESS/LEN, got {lan_address_text!r} ({exc})") from None
    mobile_networks = router.networks("mobile_networks", ["10.1.1.0/24"])
    if not any(lan_ip in net for net in mobile_networks):
        raise router.error("lan_address", f"{lan_ip} is not inside any mobile network {[str(n) for n in mobile_networks]}")
    config = RouterConfig(
        lan_interface=router.get("lan_interface", str, "br-lan"),
        lan_address=lan_interface_form,
        mobile_networks=mobile_networks,
        history_db=router.get("history_db", str, "/var/lib/router/history.sqlite"),
        control_socket=router.get("control_socket", str, "/run/router/control.sock"),
        state_dir=router.get("state_dir", str, "/var/lib/router"),
        inner=inner,
        outer=outer,
        vpn=vpn,
        uplinks=uplinks,
        web=web,
    )
    router.finish()
    top.finish()
    if outer is not None and inner.spi == outer.spi and inner.home_agent == outer.home_agent:
        raise source.error("outer.spi", "inner and outer systems share home agent and SPI")
    return config


# --- home agent configuration ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MobileNodeConfig:
    home_address: IPv4Address
    spi: int
    key: Secret
    algorithm: str
    replay: str
    mobile_networks: tuple[IPv4Network, ...]
    nai: str | None = None


@dataclass(frozen=True, slots=True)
class HomeAgentConfig:
    address: IPv4Address
    home_network: IPv4Network
    max_lifetime: int
    port: int
    home_interface: str | None
    mobile_nodes: tuple[MobileNodeConfig, ...]
    replay_window: int = 7
    #: RFC 3519 UDP tunnelling (NAT traversal); its data path is router.udptunnel (a TUN).
    udp_tunnelling: bool = True
    #: Keepalive Interval sent in assenting UDP Tunnel Replies (0 = the node's default, 110 s).
    udp_keepalive_interval: int = 0
    #: Where the replay state (RFC 5944 §5.7: last accepted Identification) survives restarts.
    state_dir: str = "/var/lib/router-ha"


def load_home_agent_config(path: str | os.PathLike[str]) -> HomeAgentConfig:
    source, data = _open(path)
    top = _Table(source, "", data)
    ha = top.table("home_agent")
    if ha is None:
        raise source.error("home_agent", "missing [home_agent] section")
    address = ha.address("address")
    home_network = ha.network("home_network", ha.get("home_network", str, required=True))
    if address not in home_network:
        raise ha.error("address", f"{address} is not inside home_network {home_network}")
    nodes: list[MobileNodeConfig] = []
    seen_spis: dict[int, int] = {}
    seen_homes: dict[IPv4Address, int] = {}
    for index, table in enumerate(top.tables("mobile_node")):
        node = MobileNodeConfig(
            home_address=table.address("home_address"),
            spi=table.integer("spi", None, 256, 0xFFFFFFFF),
            key=_read_key(table),
            algorithm=table.choice("algorithm", ALGORITHMS, "hmac-md5"),
            replay=table.choice("replay", REPLAY_METHODS, "timestamp"),
            mobile_networks=table.networks("mobile_networks"),
            nai=table.optional("nai", str),
        )
        table.finish()
        if node.home_address not in home_network:
            raise table.error("home_address", f"{node.home_address} is not inside home_network {home_network}")
        if node.home_address == address:
            raise table.error("home_address", "is the home agent's own address")
        if node.home_address in seen_homes:
            raise table.error("home_address", f"duplicate of mobile_node[{seen_homes[node.home_address]}]")
        seen_homes[node.home_address] = index
        seen_spis.setdefault(node.spi, index)
        for other in nodes:
            for net in node.mobile_networks:
                if any(net.overlaps(o) for o in other.mobile_networks):
                    raise table.error("mobile_networks", f"{net} overlaps another mobile node's networks")
        nodes.append(node)
    if not nodes:
        raise source.error("mobile_node", "at least one [[mobile_node]] is needed")
    config = HomeAgentConfig(
        address=address,
        home_network=home_network,
        max_lifetime=ha.integer("max_lifetime", 600, 1, 0xFFFE),
        port=ha.integer("port", 434, 1, 65535),
        home_interface=ha.optional("home_interface", str),
        mobile_nodes=tuple(nodes),
        replay_window=ha.integer("replay_window", 7, 1, 3600),
        udp_tunnelling=ha.get("udp_tunnelling", bool, True),
        udp_keepalive_interval=ha.integer("udp_keepalive_interval", 0, 0, 65535),
        state_dir=ha.get("state_dir", str, "/var/lib/router-ha"),
    )
    ha.finish()
    top.finish()
    return config
