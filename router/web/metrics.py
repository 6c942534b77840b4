"""Prometheus text exposition (format 0.0.4) from a status snapshot.

Counters in the snapshot are flat ``dotted.names``; the conventions in SCHEMA.md turn them into
labelled families (``registrations.inner.accepted`` ->
``router_registrations_total{system="inner",result="accepted"}``); any other counter appears
as ``router_events_total{name="..."}`` so nothing is lost and no metric name is ever built from
untrusted text. Gauges come from the rest of the snapshot; missing values (``null``) are
omitted, as Prometheus expects, rather than exported as 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    return None


def _format_value(value: float) -> str:
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


class _Family:
    def __init__(self, name: str, kind: str, help_text: str) -> None:
        self.name = name
        self.kind = kind
        self.help = help_text
        self.samples: list[tuple[tuple[tuple[str, str], ...], float]] = []

    def add(self, value: Any, **labels: Any) -> None:
        number = _number(value)
        if number is None:
            return
        self.samples.append((tuple((k, str(v)) for k, v in labels.items()), number))


class Exposition:
    """Families in a fixed order; each rendered once with its HELP and TYPE lines."""

    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}

    def family(self, name: str, kind: str, help_text: str) -> _Family:
        if name not in self._families:
            self._families[name] = _Family(name, kind, help_text)
        return self._families[name]

    def render(self) -> str:
        lines: list[str] = []
        for family in self._families.values():
            if not family.samples:
                continue
            lines.append(f"# HELP {family.name} {escape_help(family.help)}")
            lines.append(f"# TYPE {family.name} {family.kind}")
            for labels, value in family.samples:
                if labels:
                    text = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels)
                    lines.append(f"{family.name}{{{text}}} {_format_value(value)}")
                else:
                    lines.append(f"{family.name} {_format_value(value)}")
        return "\n".join(lines) + "\n"


_SITUATIONS = ("inside", "outside", "outer_home", "single", "unknown")


def render_metrics(status: Mapping[str, Any], http_counters: Mapping[str, int] | None = None) -> str:
    """The whole ``/metrics`` page for one snapshot (and the web server's own counters)."""
    out = Exposition()
    info = out.family("router_info", "gauge", "Firmware version (always 1).")
    info.add(1, version=status.get("version", "unknown"))
    out.family("router_uptime_seconds", "gauge", "Seconds since the daemon started.").add(status.get("uptime_s"))

    situation = status.get("situation") or {}
    fam = out.family("router_situation", "gauge", "1 for the current situation (domain detection), else 0.")
    current = situation.get("name")
    for name in _SITUATIONS:
        fam.add(1 if current == name else 0, situation=name)

    counters = status.get("counters") or {}
    registrations = out.family("router_registrations_total", "counter",
                               "Registration attempts answered, by mobility system and result.")
    denials = out.family("router_registration_denials_total", "counter",
                         "Registration denials, by mobility system and RFC 5944 reply code.")
    handovers = out.family("router_handovers_total", "counter", "Handovers, by cause.")
    dropped = out.family("router_input_dropped_total", "counter",
                         "Messages dropped on input, by reason (replayed, forged, malformed...).")
    events = out.family("router_events_total", "counter", "Other daemon counters, by name.")
    for key in sorted(counters):
        value = counters[key]
        parts = str(key).split(".")
        if parts[0] == "registrations" and len(parts) == 3:
            registrations.add(value, system=parts[1], result=parts[2])
        elif parts[0] == "denials" and len(parts) == 3:
            denials.add(value, system=parts[1], code=parts[2])
        elif parts[0] == "handovers" and len(parts) == 2:
            handovers.add(value, cause=parts[1])
        elif parts[0] == "dropped" and len(parts) == 2:
            dropped.add(value, reason=parts[1])
        else:
            events.add(value, name=str(key))

    uplinks = [u for u in status.get("uplinks") or [] if isinstance(u, Mapping)]
    up = out.family("router_uplink_up", "gauge", "1 if the uplink's state is up.")
    active = out.family("router_uplink_active", "gauge", "1 for the uplink carrying traffic.")
    standby = out.family("router_uplink_standby", "gauge", "1 for an uplink held ready as standby.")
    rtt = out.family("router_uplink_rtt_seconds", "gauge", "Probe round-trip time over the uplink.")
    loss = out.family("router_uplink_loss_ratio", "gauge", "Probe loss over the uplink (0..1).")
    score = out.family("router_uplink_score", "gauge", "Health score (0..score_max, hysteresis).")
    score_max = out.family("router_uplink_score_max", "gauge", "Maximum health score.")
    signal = out.family("router_uplink_signal_dbm", "gauge", "Radio signal strength.")
    metered = out.family("router_uplink_metered", "gauge", "1 if traffic on the uplink costs money.")
    tx = out.family("router_uplink_transmit_bytes_total", "counter", "Bytes sent on the uplink interface.")
    rx = out.family("router_uplink_receive_bytes_total", "counter", "Bytes received on the uplink interface.")
    for u in uplinks:
        labels = {"uplink": u.get("name", "?"), "kind": u.get("kind", "?")}
        up.add(u.get("state") == "up", **labels)
        active.add(bool(u.get("active")), **labels)
        standby.add(bool(u.get("standby")), **labels)
        rtt_ms = _number(u.get("rtt_ms"))
        rtt.add(None if rtt_ms is None else rtt_ms / 1000.0, **labels)
        loss_pct = _number(u.get("loss_pct"))
        loss.add(None if loss_pct is None else loss_pct / 100.0, **labels)
        score.add(u.get("score"), **labels)
        score_max.add(u.get("score_max"), **labels)
        signal.add(u.get("signal_dbm"), **labels)
        metered.add(bool(u.get("metered")), **labels)
        tx.add(u.get("tx_bytes"), **labels)
        rx.add(u.get("rx_bytes"), **labels)

    registered = out.family("router_registration_registered", "gauge",
                            "1 while the mobility system's binding is registered.")
    lifetime = out.family("router_registration_lifetime_remaining_seconds", "gauge",
                          "Seconds left on the current binding.")
    reg_rtt = out.family("router_registration_round_trip_seconds", "gauge",
                         "Last registration request -> reply time.")
    for system, reg in sorted((status.get("registrations") or {}).items()):
        if not isinstance(reg, Mapping):
            continue
        registered.add(reg.get("state") == "registered", system=system)
        lifetime.add(reg.get("lifetime_left_s"), system=system)
        rt = _number(reg.get("round_trip_ms"))
        reg_rtt.add(None if rt is None else rt / 1000.0, system=system)

    vpn = status.get("vpn") or {}
    out.family("router_vpn_up", "gauge", "1 while the IPsec VPN is up.").add(vpn.get("state") == "up")
    out.family("router_vpn_sa_age_seconds", "gauge", "Age of the current IKE SA.").add(vpn.get("sa_age_s"))
    out.family("router_vpn_transmit_bytes_total", "counter", "Bytes sent through the VPN.").add(vpn.get("tx_bytes"))
    out.family("router_vpn_receive_bytes_total", "counter", "Bytes received through the VPN.").add(vpn.get("rx_bytes"))

    network = status.get("mobile_network") or {}
    out.family("router_lan_clients", "gauge", "DHCP leases on the mobile network.").add(
        len(network.get("clients") or []))

    handover_log = [h for h in status.get("handovers") or [] if isinstance(h, Mapping)]
    if handover_log:
        newest = max(handover_log, key=lambda h: _number(h.get("at")) or 0.0)
        gap = _number(newest.get("gap_ms"))
        out.family("router_last_handover_gap_seconds", "gauge",
                   "LAN traffic gap of the most recent handover.").add(
            None if gap is None else gap / 1000.0, kind=newest.get("kind", "?"))
        out.family("router_last_handover_timestamp_seconds", "gauge",
                   "Unix time of the most recent handover.").add(newest.get("at"))

    if http_counters:
        http = out.family("router_http_responses_total", "counter", "Status page responses, by code.")
        other = out.family("router_http_events_total", "counter",
                           "Status page connection events (dropped slow clients, busy refusals...).")
        for key in sorted(http_counters):
            if key.startswith("responses."):
                http.add(http_counters[key], code=key.split(".", 1)[1])
            else:
                other.add(http_counters[key], event=key)
    return out.render()
