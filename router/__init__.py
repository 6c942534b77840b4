"""Mobile router firmware: one process keeps a LAN reachable while it roams.

See DESIGN.md (shared) for the layering: pure core (``mip``, ``policy``) below thin
drivers (``net``, ``vpn``, ``uplink``, ``lan``, ``web``, ``store``) below one
composition root (``daemon``).
"""

__version__ = "0.1.0"
