"""RFC 3519 Mobile IP UDP tunnelling: the user-space data path (behind a flag; see datapath)."""

from router.udptunnel.datapath import (
    HomeAgentTunnel,
    MobileTunnel,
    SignallingTransport,
    TunnelCounters,
)
from router.udptunnel.keepalive import KeepaliveAction, KeepaliveMonitor
from router.udptunnel.peers import Peer, PeerTable
from router.udptunnel.tun import DEFAULT_TUN_NAME, open_tun, tunnel_mtu

__all__ = [
    "DEFAULT_TUN_NAME",
    "HomeAgentTunnel",
    "KeepaliveAction",
    "KeepaliveMonitor",
    "MobileTunnel",
    "Peer",
    "PeerTable",
    "SignallingTransport",
    "TunnelCounters",
    "open_tun",
    "tunnel_mtu",
]
