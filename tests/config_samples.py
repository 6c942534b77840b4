"""The lab-shaped router and home agent configs (DESIGN.md 3a), shared by the config tests
and the config fuzz targets (which mutate them)."""

from pathlib import Path

INNER_KEY = "00112233445566778899aabbccddeeff"

ROUTER_TOML = f"""\
[router]
lan_interface = "br-lan"
mobile_networks = ["10.1.1.0/24"]

[inner]
home_agent = "10.10.0.1"
home_address = "10.10.0.50"
spi = 256
key = "hex:{INNER_KEY}"
inside_prefixes = ["10.0.0.0/8"]

[outer]
home_agent = "192.0.2.1"
home_address = "192.0.2.50"
home_network = "192.0.2.0/24"
spi = 257
key_file = "outer.key"

[vpn]
connection = "corp"
gateway = "192.0.2.2"

[[uplink]]
name = "wlan"
interface = "wlan0"
kind = "wlan"
priority = 10

[[uplink]]
name = "cell"
interface = "ppp0"
kind = "3g"
modem = "/dev/ttyUSB2"
apn = "internet"
priority = 50

[web]
listen = "10.1.1.1:80"
"""

HA_TOML = f"""\
[home_agent]
address = "10.10.0.1"
home_network = "10.10.0.0/24"
max_lifetime = 600

[[mobile_node]]
home_address = "10.10.0.50"
spi = 256
key = "hex:{INNER_KEY}"
algorithm = "hmac-md5"
mobile_networks = ["10.1.1.0/24"]
"""


def write_loopback_ha_config(
    directory: Path,
    port: int,
    *,
    home_address: str = "127.0.0.50",
    mobile_networks: str = "10.1.1.0/24",
    key: str = INNER_KEY,
    extra: str = "",
) -> Path:
    """A home agent on 127.0.0.1 (home network 127/8, no UDP tunnelling, state in
    `directory`) with one mobile node: the config of the daemon-level unit tests. `extra`
    adds [home_agent] lines (max_lifetime, home_interface...)."""
    path = directory / "ha.toml"
    path.write_text(f"""[home_agent]
address = "127.0.0.1"
home_network = "127.0.0.0/8"
port = {port}
udp_tunnelling = false
state_dir = "{directory}"
{extra}
[[mobile_node]]
home_address = "{home_address}"
spi = 256
key = "hex:{key}"
mobile_networks = ["{mobile_networks}"]
""")
    return path
