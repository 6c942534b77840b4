"""strongSwan charon instances: the VPN gateway and the router's client.

One charon per namespace, each with a private /run (a bind mount of its own directory, in its
own mount namespace): charon's pid file and sockets sit at compiled-in /run paths, so two
instances in one mount namespace would refuse to start. The vici socket therefore appears as
`<dir>/charon.vici` from outside.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import plan
from .shell import Daemon, run, tail

STRONGSWAN_CONF = """
charon {
    load_modular = yes
    plugins {
        include /etc/strongswan.d/charon/*.conf
        vici {
            socket = unix:///run/charon.vici
        }
    }
    filelog {
        lab {
            path = /run/charon.log
            time_format = %H:%M:%S
            default = 1
            ike = 2
            flush_line = yes
        }
    }
}
include /etc/strongswan.d/*.conf
"""

GATEWAY_SWANCTL = f"""
connections {{
    corp {{
        version = 2
        local_addrs = {plan.VPN_GATEWAY_ADDRESS}
        pools = vpn-pool
        proposals = aes128-sha256-modp2048,default
        local {{
            auth = psk
            id = {plan.VPN_GATEWAY_ID}
        }}
        remote {{
            auth = psk
        }}
        children {{
            corp {{
                local_ts = {plan.VPN_PROTECTED}
                esp_proposals = aes128gcm16,default
            }}
        }}
    }}
}}
pools {{
    vpn-pool {{
        addrs = {plan.VPN_POOL}
    }}
}}
secrets {{
    ike-lab {{
        secret = "{plan.VPN_PSK}"
    }}
}}
"""


class Charon:
    """A charon in `namespace` whose /run is `directory`."""

    def __init__(self, name: str, namespace: str, directory: Path) -> None:
        self.name = name
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.conf = directory / "strongswan.conf"
        self.conf.write_text(STRONGSWAN_CONF)
        self.vici_socket = directory / "charon.vici"
        self.log = directory / "charon.log"
        private_run = f"mount --bind {directory} /run && exec /usr/lib/ipsec/charon"
        self.daemon = Daemon(
            name,
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", private_run],
            directory / "charon.stdout", namespace,
            # The path as charon sees it: `directory` is its /run.
            env={"STRONGSWAN_CONF": "/run/strongswan.conf"},
            ready=self.vici_socket.exists, ready_timeout=30,
        )

    def start(self) -> float:
        self.vici_socket.unlink(missing_ok=True)
        (self.directory / "charon.pid").unlink(missing_ok=True)
        return self.daemon.start()

    def swanctl(self, *args: str) -> str:
        return run(["swanctl", *args, "--uri", f"unix://{self.vici_socket}"]).stdout

    def log_tail(self, lines: int = 30) -> str:
        return tail(self.log, lines)


def gateway(namespace: str, run_dir: Path) -> Charon:
    charon = Charon("vpn-gw", namespace, run_dir / "charon-vpn-gw")
    (charon.directory / "swanctl.conf").write_text(GATEWAY_SWANCTL)
    return charon


def load_gateway_config(charon: Charon) -> None:
    charon.swanctl("--load-all", "--noprompt", "--file", str(charon.directory / "swanctl.conf"))


def router_client(namespace: str, run_dir: Path) -> Charon:
    return Charon("router-charon", namespace, run_dir / "charon-router")


def router_connection(local_address: str | None = None) -> dict[str, Any]:
    """The vici `load-conn` message for the router's client connection "lab"."""
    connection: dict[str, Any] = {
        "version": "2",
        "remote_addrs": [plan.VPN_GATEWAY_ADDRESS],
        "vips": ["0.0.0.0"],
        "proposals": ["aes128-sha256-modp2048", "default"],
        "local": {"auth": "psk", "id": plan.VPN_ROUTER_ID},
        "remote": {"auth": "psk", "id": plan.VPN_GATEWAY_ID},
        "children": {
            "corp": {
                "remote_ts": [plan.VPN_PROTECTED],
                "esp_proposals": ["aes128gcm16", "default"],
            },
        },
    }
    if local_address is not None:
        connection["local_addrs"] = [local_address]
    return {"lab": connection}


def router_secret() -> dict[str, Any]:
    """The vici `load-shared` message for the PSK (no owners: it matches any identity)."""
    return {"type": "IKE", "data": plan.VPN_PSK}


# -- the product's own router-side charon ---------------------------------------------------
# The product's files, read from the checkout (the guest mounts it at /src), so a change to
# them needs no image rebuild. The lab adds only a log and the lab's PSK.
PRODUCT_ROOTFS = Path(__file__).resolve().parents[2] / "rootfs"
PRODUCT_STRONGSWAN_CONF = PRODUCT_ROOTFS / "etc/strongswan.d/mobile-router/strongswan.conf"
PRODUCT_SWANCTL_CONF_D = PRODUCT_ROOTFS / "etc/swanctl/conf.d"
PRODUCT_CONNECTION = "corp"

PRODUCT_LAB_LOG = """
charon {
    filelog {
        lab {
            path = /run/charon.log
            time_format = %H:%M:%S
            default = 1
            ike = 2
            knl = 2
            flush_line = yes
        }
    }
}
"""


def product_router_client(namespace: str, run_dir: Path) -> Charon:
    """A charon in the router namespace run with the product's strongswan.conf and swanctl
    connection (`corp`); load it with `load_product_router_config` once charon is up.

    Stands in for the image's init script; the lab's PSK is provisioned beside it in the
    charon's run directory (the product keeps its PSK in a root-only file, never in the image).
    """
    charon = Charon("router-charon-product", namespace, run_dir / "charon-router-product")
    charon.conf.write_text(f"include {PRODUCT_STRONGSWAN_CONF}\n{PRODUCT_LAB_LOG}")
    secrets = charon.directory / "corp-psk.conf"
    secrets.write_text(
        f'secrets {{\n    ike-corp {{\n        id = {plan.VPN_GATEWAY_ID}\n'
        f'        secret = "{plan.VPN_PSK}"\n    }}\n}}\n'
    )
    secrets.chmod(0o600)
    (charon.directory / "swanctl.conf").write_text(
        f"include {PRODUCT_SWANCTL_CONF_D}/*.conf\ninclude {secrets}\n"
    )
    return charon


def load_product_router_config(charon: Charon) -> str:
    """swanctl --load-all of the product's connection plus the lab's PSK; swanctl's output."""
    return charon.swanctl("--load-all", "--noprompt", "--file", str(charon.directory / "swanctl.conf"))
