"""The narrow interface between the daemon and the web/CLI layer, and a fake for tests and demos.

Theory of operation: the web server, the metrics page and the control socket never reach into
the daemon's objects. They pull a JSON-ready snapshot (``status()``), a few time series for the
plots (``series()``) and push two actions (``action()``). The daemon implements
:class:`StatusSource`; everything under ``router.web`` is then testable against
:class:`FakeStatusSource`. The snapshot's schema is documented in ``router/web/SCHEMA.md`` and
checked by :func:`router.web.schema.check_status`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

#: The actions a source must accept (``action(name, args)``).
ACTIONS = ("uplink_prefer", "reconnect")

#: The situations the page knows how to colour.
SITUATIONS = ("inside", "outside", "outer_home", "unknown")

Series = dict[str, list[tuple[float, float]]]


@runtime_checkable
class StatusSource(Protocol):
    """What the daemon provides to the status page, the metrics and the control socket."""

    def status(self) -> dict[str, Any]:
        """A JSON-ready snapshot (schema: router/web/SCHEMA.md). Cheap: called per request."""
        ...

    def series(self) -> Series:
        """Time series for the plots: ``rtt_ms.<uplink>``, ``signal_dbm.<uplink>``,
        ``score.<uplink>``; each a list of ``(unix_time, value)``, oldest first, ~10 minutes."""
        ...

    async def action(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run ``uplink_prefer`` (``{"name": UPLINK}``) or ``reconnect`` (``{}``).

        Returns a small JSON-ready result (e.g. ``{"accepted": true, "message": "..."}``).
        Raises ``ValueError`` with a message fit for the user on bad input (unknown action,
        unknown uplink, missing argument)."""
        ...


# --- the fake -----------------------------------------------------------------------------


def _lab_uplinks() -> list[dict[str, Any]]:
    return [
        {
            "name": "wlan", "kind": "wlan", "interface": "wlan0", "state": "up",
            "active": False, "standby": False, "signal_dbm": -44.0, "rtt_ms": 3.2,
            "loss_pct": 0.0, "score": 10, "score_max": 10, "metered": False,
            "address": "10.30.0.23", "tx_bytes": 18_734_112, "rx_bytes": 91_220_874,
        },
        {
            "name": "cell", "kind": "3g", "interface": "ppp0", "state": "up",
            "active": False, "standby": True, "signal_dbm": -87.0, "rtt_ms": 112.0,
            "loss_pct": 1.5, "score": 6, "score_max": 10, "metered": True,
            "address": "100.64.0.7", "tx_bytes": 2_044_001, "rx_bytes": 7_912_310,
        },
    ]


class FakeStatusSource:
    """A lab-like router in one of the three situations; records the actions it is asked for.

    ``clock`` gives the snapshot's ``now`` (pass a constant for reproducible pages).
    ``set_situation`` switches between plausible complete snapshots of the seed's situations.
    """

    def __init__(self, clock: Callable[[], float] = time.time, *, situation: str = "inside") -> None:
        self.clock = clock
        self.started = clock() - 3725.0
        self.actions: list[tuple[str, dict[str, Any]]] = []
        self.status_calls = 0
        self.counters: dict[str, int] = {
            "registrations.inner.accepted": 14,
            "registrations.inner.denied": 1,
            "registrations.outer.accepted": 6,
            "denials.inner.133": 1,
            "handovers.uplink_lost": 2,
            "handovers.better_uplink": 3,
            "handovers.domain_change": 2,
            "dropped.bad_authenticator": 4,
            "dropped.replayed": 1,
        }
        self.clients: list[dict[str, Any]] = [
            {"mac": "52:54:00:12:34:56", "address": "10.1.1.23", "hostname": "lan-host",
             "expires": self.started + 7200.0},
            {"mac": "52:54:00:ab:cd:ef", "address": "10.1.1.42", "hostname": "tablet",
             "expires": self.started + 7000.0},
        ]
        self.uplinks = _lab_uplinks()
        self.handovers: list[dict[str, Any]] = []
        self._seed_handovers()
        self.situation: dict[str, Any] = {}
        self.registrations: dict[str, dict[str, Any]] = {}
        self.vpn: dict[str, Any] = {}
        self.set_situation(situation)

    def _seed_handovers(self) -> None:
        base = self.started + 60.0
        self.handovers = [
            {"at": base + 1800.0, "kind": "domain", "from": "cell", "to": "wlan",
             "reason": "authenticated reply from inner home agent over wlan (direct)",
             "gap_ms": 180.0,
             "phases": [{"name": "link", "at_ms": 0.0}, {"name": "inner_registered", "at_ms": 95.0},
                        {"name": "lan_route", "at_ms": 180.0}, {"name": "vpn_down", "at_ms": 240.0}]},
            {"at": base + 600.0, "kind": "uplink", "from": "hotspot", "to": "cell",
             "reason": "uplink lost: hotspot beacon loss", "gap_ms": 420.0,
             "phases": [{"name": "detect", "at_ms": 0.0}, {"name": "outer_registered", "at_ms": 310.0},
                        {"name": "vpn_mobike", "at_ms": 390.0}, {"name": "lan_route", "at_ms": 420.0}]},
            {"at": base, "kind": "domain", "from": "wlan", "to": "cell",
             "reason": "corp AP lost; cell 100.64.0.7 outside every inside prefix", "gap_ms": 1310.0,
             "phases": [{"name": "link", "at_ms": 0.0}, {"name": "outer_registered", "at_ms": 240.0},
                        {"name": "vpn_up", "at_ms": 1050.0}, {"name": "inner_registered", "at_ms": 1240.0},
                        {"name": "lan_route", "at_ms": 1310.0}]},
        ]

    # --- knobs for tests and the demo ---

    def set_situation(self, name: str, reason: str | None = None) -> None:
        """Switch to a complete, consistent snapshot of ``name`` (inside/outside/outer_home/unknown)."""
        if name not in SITUATIONS:
            raise ValueError(f"unknown situation {name!r}; expected one of {', '.join(SITUATIONS)}")
        now = self.clock()
        inside = name == "inside"
        active = "wlan" if name in ("inside", "outer_home") else "cell"
        for uplink in self.uplinks:
            uplink["active"] = uplink["name"] == active
            uplink["standby"] = uplink["name"] != active and uplink["state"] == "up"
        wlan_address = {"inside": "10.30.0.23", "outer_home": "192.0.2.50"}.get(name, "198.51.100.20")
        self.uplinks[0]["address"] = wlan_address
        care_of = self.uplinks[0]["address"] if inside else "10.99.0.3"
        default_reasons = {
            "inside": "authenticated registration reply from inner home agent 10.10.0.1 over wlan",
            "outside": "cell 100.64.0.7 outside every inside prefix; smoke-out: no reply",
            "outer_home": "wlan address 192.0.2.50 on the outer home network; VPN up",
            "unknown": "no uplink yet",
        }
        self.situation = {"name": name, "since": now - 192.0,
                          "reason": reason or default_reasons[name], "phase": name}
        self.registrations = {
            "inner": {"home_agent": "10.10.0.1", "home_address": "10.10.0.50",
                      "care_of_address": care_of, "state": "registered", "lifetime_left_s": 412,
                      "last_code": 0, "last_message": "accepted", "round_trip_ms": 8.4},
            "outer": {"home_agent": "192.0.2.1", "home_address": "192.0.2.50",
                      "care_of_address": None if name != "outside" else "100.64.0.7",
                      "state": {"outside": "registered", "outer_home": "at_home"}.get(name, "deregistered"),
                      "lifetime_left_s": 289 if name == "outside" else None,
                      "last_code": 0, "last_message": "accepted",
                      "round_trip_ms": 61.0 if name == "outside" else None},
        }
        vpn_on = name in ("outside", "outer_home")
        self.vpn = {"state": "up" if vpn_on else "down", "virtual_ip": "10.99.0.3" if vpn_on else None,
                    "gateway": "192.0.2.2", "sa_age_s": 187 if vpn_on else None,
                    "tx_bytes": 1_532_900 if vpn_on else 0, "rx_bytes": 6_020_113 if vpn_on else 0}

    # --- the StatusSource interface ---

    def status(self) -> dict[str, Any]:
        self.status_calls += 1
        now = self.clock()
        return {
            "version": "0.1.0",
            "now": now,
            "uptime_s": now - self.started,
            "situation": dict(self.situation),
            "uplinks": [dict(uplink) for uplink in self.uplinks],
            "registrations": {k: dict(v) for k, v in self.registrations.items()},
            "vpn": dict(self.vpn),
            "mobile_network": {"prefixes": ["10.1.1.0/24"], "lan_address": "10.1.1.1",
                               "clients": [dict(c) for c in self.clients]},
            "handovers": [dict(h) for h in self.handovers],
            "counters": dict(self.counters),
        }

    def series(self) -> Series:
        """Deterministic wavy lines over the last ten minutes, one point every 5 s."""
        now = self.clock()
        out: Series = {}
        for index, uplink in enumerate(self.uplinks):
            name = uplink["name"]
            times = [now - 600.0 + 5.0 * i for i in range(121)]
            rtt_base = float(uplink["rtt_ms"] or 10.0)
            signal_base = float(uplink["signal_dbm"] or -70.0)
            out[f"rtt_ms.{name}"] = [
                (t, rtt_base * (1.0 + 0.35 * math.sin(i / 7.0 + index) + 0.15 * math.sin(i / 2.3)))
                for i, t in enumerate(times)]
            out[f"signal_dbm.{name}"] = [
                (t, signal_base + 4.0 * math.sin(i / 11.0 + 2 * index)) for i, t in enumerate(times)]
            out[f"score.{name}"] = [
                (t, float(max(0, min(10, round(float(uplink["score"]) - 2 * (math.sin(i / 9.0) > 0.8))))))
                for i, t in enumerate(times)]
        return out

    async def action(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        if name == "uplink_prefer":
            uplink = args.get("name")
            if not isinstance(uplink, str) or not uplink:
                raise ValueError("uplink_prefer needs a 'name' (an uplink name)")
            names = [u["name"] for u in self.uplinks]
            if uplink not in names:
                raise ValueError(f"unknown uplink {uplink!r}; known: {', '.join(names)}")
            self.actions.append((name, {"name": uplink}))
            return {"accepted": True, "message": f"preferring uplink {uplink}"}
        if name == "reconnect":
            self.actions.append((name, {}))
            return {"accepted": True, "message": "re-registering both systems and re-keying the VPN"}
        raise ValueError(f"unknown action {name!r}; expected one of {', '.join(ACTIONS)}")
