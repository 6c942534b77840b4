"""The lab world's topology and address plan, as data (DESIGN.md section 5).

Hosts are network namespaces; links are veth pairs. Access points are layer-2 bridges between
their radio and an uplink, as real enterprise APs are: the gateway and DHCP server of each
WLAN live upstream (corp core, internet core), except the rogue AP, which brings its own.

    lan-host --lan-- router(br-lan) ~~wlan0~~ ap-corp --corp-wlan-- corp(br-wlan 10.30.0.1)
                        |            ~~~~~~~~ ap-ext ----ext------- inet(br-dmz 192.0.2.254)
                        |            ~~~~~~~~ ap-hotspot -hotspot-- inet(hs0 198.51.100.1)
                        |            ~~~~~~~~ ap-rogue (SSID corp, own 10.30.0.0/24, NAT) --rogue-- inet
                        +--ppp0~~pty~~ cell(100.64.0.1) --cell-- inet
    inet(br-dmz): outer-ha 192.0.2.1, vpn-gw 192.0.2.2 (inside leg 10.0.0.2) --vpn-gw-in-- corp
    corp: br-home 10.10.0.0/24 (inner-ha .1), br-srv 10.20.0.0/24 (cn .10), 10.99.0.0/24 -> vpn-gw

Transit links use TEST-NET-3 (203.0.113.0/24) and 10.0.0.0/30. The internet core has no route
to 10.0.0.0/8: the VPN gateway is the only way between outside and inside.
"""

from __future__ import annotations

from dataclasses import dataclass

# -- well-known addresses the tests and the product's lab config use -------------------------
LAN_PREFIX = "10.1.1.0/24"
ROUTER_LAN_ADDRESS = "10.1.1.1"
LAN_HOST_ADDRESS = "10.1.1.10"
OUTER_HA_ADDRESS = "192.0.2.1"
VPN_GATEWAY_ADDRESS = "192.0.2.2"
VPN_GATEWAY_INSIDE_ADDRESS = "10.0.0.2"
VPN_POOL = "10.99.0.0/24"
VPN_PROTECTED = "10.0.0.0/8"
VPN_GATEWAY_ID = "vpn-gw.lab"
VPN_ROUTER_ID = "router.lab"
VPN_PSK = "lab-vpn-preshared-key"  # lab only; the product reads keys from root-only files
INNER_HA_ADDRESS = "10.10.0.1"
CORRESPONDENT_ADDRESS = "10.20.0.10"
INTERNET_CORE_ADDRESS = "203.0.113.1"  # inet's end of the cell transit: a pingable "internet"
CELL_GATEWAY_ADDRESS = "100.64.0.1"
CELL_SUBSCRIBER_ADDRESS = "100.64.0.10"
CELL_PREFIX = "100.64.0.0/24"
CELL_APN = "internet"
WLAN_PASSPHRASE = "lab-wlan-passphrase"


@dataclass(frozen=True, slots=True)
class End:
    """One end of a link: a device in a host, with addresses or a bridge to join."""

    host: str
    device: str
    addresses: tuple[str, ...] = ()
    bridge: str | None = None


@dataclass(frozen=True, slots=True)
class Link:
    """A veth pair. Its name is what the knobs (`shape`, `cut`) take."""

    name: str
    a: End
    b: End


@dataclass(frozen=True, slots=True)
class Bridge:
    host: str
    name: str
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Route:
    host: str
    destination: str
    via: str


@dataclass(frozen=True, slots=True)
class DhcpScope:
    """A dnsmasq instance serving one subnet."""

    name: str
    host: str
    interface: str
    first: str
    last: str
    gateway: str


@dataclass(frozen=True, slots=True)
class AccessPoint:
    """A hostapd on its own hwsim radio, bridging the air to `uplink`."""

    name: str
    host: str
    ssid: str
    channel: int
    uplink: str
    dhcp: str
    radio: int


HOSTS: tuple[str, ...] = (
    "lan-host", "router", "ap-corp", "ap-ext", "ap-hotspot", "ap-rogue",
    "cell", "inet", "outer-ha", "vpn-gw", "corp", "inner-ha", "cn",
)

FORWARDING_HOSTS: tuple[str, ...] = ("inet", "cell", "corp", "vpn-gw", "ap-rogue")

# The router's radio is hwsim radio 0; each AP has its own.
ROUTER_RADIO = 0
ROUTER_WLAN = "wlan0"
AP_WLAN = "ap0"
AP_BRIDGE = "br0"
ROUTER_LAN_BRIDGE = "br-lan"

BRIDGES: tuple[Bridge, ...] = (
    Bridge("router", ROUTER_LAN_BRIDGE, (f"{ROUTER_LAN_ADDRESS}/24",)),
    Bridge("inet", "br-dmz", ("192.0.2.254/24",)),
    Bridge("corp", "br-home", ("10.10.0.254/24",)),
    Bridge("corp", "br-srv", ("10.20.0.1/24",)),
    Bridge("corp", "br-wlan", ("10.30.0.1/24",)),
    Bridge("ap-corp", AP_BRIDGE),
    Bridge("ap-ext", AP_BRIDGE),
    Bridge("ap-hotspot", AP_BRIDGE),
    Bridge("ap-rogue", AP_BRIDGE, ("10.30.0.1/24",)),
)

LINKS: tuple[Link, ...] = (
    Link("lan", End("router", "lan0", bridge=ROUTER_LAN_BRIDGE),
         End("lan-host", "eth0", (f"{LAN_HOST_ADDRESS}/24",))),
    Link("cell", End("cell", "up0", ("203.0.113.2/30",)),
         End("inet", "cell0", (f"{INTERNET_CORE_ADDRESS}/30",))),
    Link("hotspot", End("ap-hotspot", "up0", bridge=AP_BRIDGE),
         End("inet", "hs0", ("198.51.100.1/24",))),
    Link("ext", End("ap-ext", "up0", bridge=AP_BRIDGE), End("inet", "ext0", bridge="br-dmz")),
    Link("outer-ha", End("outer-ha", "eth0", (f"{OUTER_HA_ADDRESS}/24",)),
         End("inet", "oha0", bridge="br-dmz")),
    Link("vpn-gw", End("vpn-gw", "eth0", (f"{VPN_GATEWAY_ADDRESS}/24",)),
         End("inet", "vgw0", bridge="br-dmz")),
    Link("vpn-gw-in", End("vpn-gw", "in0", (f"{VPN_GATEWAY_INSIDE_ADDRESS}/30",)),
         End("corp", "vgw0", ("10.0.0.1/30",))),
    Link("corp-wlan", End("ap-corp", "up0", bridge=AP_BRIDGE),
         End("corp", "apc0", bridge="br-wlan")),
    Link("inner-ha", End("inner-ha", "eth0", (f"{INNER_HA_ADDRESS}/24",)),
         End("corp", "iha0", bridge="br-home")),
    Link("cn", End("cn", "eth0", (f"{CORRESPONDENT_ADDRESS}/24",)),
         End("corp", "cn0", bridge="br-srv")),
    Link("rogue", End("ap-rogue", "up0", ("203.0.113.6/30",)),
         End("inet", "rogue0", ("203.0.113.5/30",))),
)

ROUTES: tuple[Route, ...] = (
    Route("lan-host", "default", ROUTER_LAN_ADDRESS),
    Route("cell", "default", INTERNET_CORE_ADDRESS),
    Route("inet", CELL_PREFIX, "203.0.113.2"),
    Route("outer-ha", "default", "192.0.2.254"),
    Route("vpn-gw", "default", "192.0.2.254"),
    Route("vpn-gw", VPN_PROTECTED, "10.0.0.1"),
    Route("corp", VPN_POOL, VPN_GATEWAY_INSIDE_ADDRESS),
    Route("inner-ha", "default", "10.10.0.254"),
    Route("cn", "default", "10.20.0.1"),
    Route("ap-rogue", "default", "203.0.113.5"),
)

DHCP_SCOPES: tuple[DhcpScope, ...] = (
    DhcpScope("corp", "corp", "br-wlan", "10.30.0.100", "10.30.0.199", "10.30.0.1"),
    DhcpScope("ext", "inet", "br-dmz", "192.0.2.100", "192.0.2.199", "192.0.2.254"),
    DhcpScope("hotspot", "inet", "hs0", "198.51.100.100", "198.51.100.199", "198.51.100.1"),
    DhcpScope("rogue", "ap-rogue", AP_BRIDGE, "10.30.0.100", "10.30.0.199", "10.30.0.1"),
)

ACCESS_POINTS: tuple[AccessPoint, ...] = (
    AccessPoint("corp", "ap-corp", "corp", 1, "corp-wlan", "corp", radio=1),
    AccessPoint("ext", "ap-ext", "ext", 6, "ext", "ext", radio=2),
    AccessPoint("hotspot", "ap-hotspot", "hotspot", 11, "hotspot", "hotspot", radio=3),
    # The rogue claims the corporate SSID (and knows its passphrase) from the outside world.
    AccessPoint("rogue", "ap-rogue", "corp", 6, "rogue", "rogue", radio=4),
)
RADIOS = 1 + len(ACCESS_POINTS)

# The rogue AP exists from `up()` on but is only switched on by the `rogue_ap_up` knob.
ROGUE = "rogue"


def access_point(name: str) -> AccessPoint:
    for ap in ACCESS_POINTS:
        if ap.name == name:
            return ap
    raise KeyError(f"no access point {name!r}; have {[ap.name for ap in ACCESS_POINTS]}")


def link(name: str) -> Link:
    for candidate in LINKS:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no link {name!r}; have {[candidate.name for candidate in LINKS]}")


def dhcp_scope(name: str) -> DhcpScope:
    for scope in DHCP_SCOPES:
        if scope.name == name:
            return scope
    raise KeyError(f"no DHCP scope {name!r}")


def host_of(address: str) -> str:
    """The namespace that holds `address` on one of its own links (not a bridge address)."""
    for link in LINKS:
        for end in (link.a, link.b):
            if any(cidr.split("/")[0] == address for cidr in end.addresses):
                return end.host
    raise KeyError(f"no lab host owns {address}")
