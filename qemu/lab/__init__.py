"""The lab world inside the QEMU guest: one network namespace per host, real peers, knobs.

    from qemu.lab import World, plan
    with World() as world:                      # ~7-16 s under TCG; leftovers removed first
        world.router.associate("corp")          # wpa_supplicant on the router's hwsim wlan0
        lease = world.router.dhcp()             # busybox udhcpc; address applied, no route
        address, seconds = world.router.dial()  # AT chat + pppd over the emulated modem
        world.router.default_route("ppp0")

Knobs (methods of `World`): ap_down(name, silent=False) / ap_up / ap_txpower(name, mBm);
rogue_ap_up / rogue_ap_down; shape(link, delay_ms, jitter_ms, rate_kbit, loss_percent) /
unshape / cut / uncut (link names in `plan.LINKS`); cell_nat(on); stop_peer(name, silent) /
restart_peer(name) for hostapd-<ap>, dhcp-<scope>, vpn-gw, pppd-cell, modem;
modem_signal(0-31|99) / modem_registration("home"|"searching"|"denied"|...) / modem_sim(ready) /
modem_hang(hung) / modem_detach(). Looking: ping, capture, exec, lan_host_dhcp.
The router's strongSwan client: `world.router.start_vpn_client()`, `vici_session()`, and the
`vpn.router_connection()` / `vpn.router_secret()` messages to load. Addresses: `plan`.
`python3 -m qemu.lab up --hold` keeps a world up by hand.
"""

from . import plan
from .modem import ModemState, Registration
from .shell import LabError
from .world import Capture, LinkCondition, PingResult, World

__all__ = ["Capture", "LabError", "LinkCondition", "ModemState", "PingResult", "Registration",
           "World", "plan"]
