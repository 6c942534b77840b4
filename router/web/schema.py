"""The status snapshot's schema as data, a checker, and the JSON sanitiser every output uses.

``check_status(snapshot)`` returns a list of problems (empty when the snapshot conforms to
router/web/SCHEMA.md); the tests run it on the fake and the lead can run it on the daemon's
snapshot. ``sanitise`` makes any snapshot safe to serialise: tuples become lists, non-finite
floats become null, keys become strings, and anything whose key looks like key material
(``key``, ``psk``, ``secret``, ``token``, ``password``) is replaced, so a careless source can
never put a secret on the page (DESIGN.md section 8).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from typing import Any

NUM = (int, float)
OPT_NUM = (int, float, type(None))
OPT_STR = (str, type(None))
OPT_INT = (int, type(None))

SITUATION = {"name": (str,), "since": OPT_NUM, "reason": (str,)}
UPLINK = {
    "name": (str,), "kind": (str,), "interface": (str,), "state": (str,), "active": (bool,),
    "standby": (bool,), "signal_dbm": OPT_NUM, "rtt_ms": OPT_NUM, "loss_pct": OPT_NUM,
    "score": OPT_NUM, "score_max": OPT_NUM, "metered": (bool,), "address": OPT_STR,
    "tx_bytes": OPT_INT, "rx_bytes": OPT_INT,
}
REGISTRATION = {
    "home_agent": (str,), "home_address": (str,), "care_of_address": OPT_STR, "state": (str,),
    "lifetime_left_s": OPT_NUM, "last_code": OPT_INT, "last_message": OPT_STR,
    "round_trip_ms": OPT_NUM,
}
VPN = {"state": (str,), "virtual_ip": OPT_STR, "gateway": OPT_STR, "sa_age_s": OPT_NUM,
       "tx_bytes": OPT_INT, "rx_bytes": OPT_INT}
CLIENT = {"mac": (str,), "address": (str,), "hostname": OPT_STR, "expires": OPT_NUM}
HANDOVER = {"at": NUM, "kind": (str,), "from": OPT_STR, "to": OPT_STR, "reason": (str,),
            "gap_ms": OPT_NUM, "phases": (list,)}
PHASE = {"name": (str,), "at_ms": NUM}
TOP = {"situation": (dict,), "uplinks": (list,), "registrations": (dict,), "vpn": (dict,),
       "mobile_network": (dict,), "handovers": (list,), "counters": (dict,), "version": (str,),
       "uptime_s": NUM, "now": NUM}

# "single": one Mobile IP system only (no [outer]/[vpn]), so no domain detection.
SITUATION_NAMES = ("inside", "outside", "outer_home", "single", "unknown")

_SECRETISH = re.compile(r"(^|_)(key|keys|psk|secret|secrets|token|tokens|password|passphrase)$", re.I)
REDACTED = "<redacted>"


def _typename(kinds: tuple[type, ...]) -> str:
    return " or ".join("null" if k is type(None) else k.__name__ for k in kinds)


def _check_fields(where: str, value: Any, spec: Mapping[str, tuple[type, ...]], problems: list[str]) -> None:
    if not isinstance(value, dict):
        problems.append(f"{where}: expected an object, got {type(value).__name__}")
        return
    for key, kinds in spec.items():
        if key not in value:
            problems.append(f"{where}.{key}: missing")
            continue
        item = value[key]
        # bool is an int in Python; a count must not be a bool and a flag must not be a number.
        if isinstance(item, bool) and bool not in kinds:
            problems.append(f"{where}.{key}: expected {_typename(kinds)}, got bool")
        elif not isinstance(item, kinds):
            problems.append(f"{where}.{key}: expected {_typename(kinds)}, got {type(item).__name__}")


def check_status(snapshot: Any) -> list[str]:
    """Every way ``snapshot`` departs from SCHEMA.md (extra keys are allowed)."""
    problems: list[str] = []
    _check_fields("status", snapshot, TOP, problems)
    if problems:
        return problems
    _check_fields("situation", snapshot["situation"], SITUATION, problems)
    if snapshot["situation"].get("name") not in SITUATION_NAMES:
        problems.append(f"situation.name: expected one of {SITUATION_NAMES}")
    for i, uplink in enumerate(snapshot["uplinks"]):
        _check_fields(f"uplinks[{i}]", uplink, UPLINK, problems)
    # "outer" is absent in single-system mode (no [outer] in the config).
    if "inner" not in snapshot["registrations"]:
        problems.append("registrations.inner: missing")
    for system, registration in snapshot["registrations"].items():
        _check_fields(f"registrations.{system}", registration, REGISTRATION, problems)
    _check_fields("vpn", snapshot["vpn"], VPN, problems)
    network = snapshot["mobile_network"]
    _check_fields("mobile_network", network, {"prefixes": (list,), "lan_address": OPT_STR,
                                              "clients": (list,)}, problems)
    for i, client in enumerate(network.get("clients") or []):
        _check_fields(f"mobile_network.clients[{i}]", client, CLIENT, problems)
    for i, handover in enumerate(snapshot["handovers"]):
        _check_fields(f"handovers[{i}]", handover, HANDOVER, problems)
        for j, phase in enumerate(handover.get("phases") or [] if isinstance(handover, dict) else []):
            _check_fields(f"handovers[{i}].phases[{j}]", phase, PHASE, problems)
    for name, count in snapshot["counters"].items():
        if not isinstance(count, int) or isinstance(count, bool):
            problems.append(f"counters.{name}: expected int, got {type(count).__name__}")
    return problems


def sanitise(value: Any, _depth: int = 0) -> Any:
    """A JSON-safe deep copy: lists for tuples, null for NaN/inf, str keys, secrets redacted."""
    if _depth > 32:
        return None
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = str(key)
            out[name] = REDACTED if _SECRETISH.search(name) else sanitise(item, _depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [sanitise(item, _depth + 1) for item in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int):
        return value
    # Anything else (an address object, an enum) is shown by its text form.
    return str(value)


def _at(handover: Any) -> float:
    at = handover.get("at") if isinstance(handover, dict) else None
    return float(at) if isinstance(at, int | float) and not isinstance(at, bool) and math.isfinite(at) else -math.inf


def normalise(snapshot: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """The documented shape for what every consumer relies on: ``now`` present (the source's
    clock, else ours) and the handover log newest first, whatever order the source keeps."""
    out = sanitise(snapshot)
    if not isinstance(out.get("now"), int | float) or isinstance(out.get("now"), bool):
        out["now"] = time.time() if now is None else now
    if isinstance(out.get("handovers"), list):
        out["handovers"] = sorted(out["handovers"], key=_at, reverse=True)
    return out  # type: ignore[no-any-return]
