"""The command-line client: ``python -m router status|handovers|uplink prefer NAME|reconnect``.

It talks to the running daemon over its control socket (router/web/control.py; root only).
Exit codes: 0 done; 1 the daemon refused (e.g. unknown uplink); 2 usage error or the daemon
cannot be reached (not running, socket missing, permission denied, no answer).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from router.web import fmt
from router.web.control import DEFAULT_SOCKET

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_UNREACHABLE = 2
ANSWER_LIMIT = 8 * 1024 * 1024


class Unreachable(Exception):
    """The daemon cannot be asked: the message says why and what to do."""


def request(path: str, message: dict[str, Any], timeout_s: float = 20.0) -> dict[str, Any]:
    """Send one request over the control socket and return the decoded answer."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            raise Unreachable(f"the router daemon is not running (nothing answers on {path})") from None
        except PermissionError:
            raise Unreachable(f"permission denied on {path}: the control socket is root-only") from None
        except OSError as exc:
            raise Unreachable(f"cannot connect to {path}: {exc.strerror or exc}") from None
        try:
            sock.sendall(json.dumps(message).encode() + b"\n")
            buffer = bytearray()
            while not buffer.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buffer += chunk
                if len(buffer) > ANSWER_LIMIT:
                    raise Unreachable("the daemon's answer is too large")
        except TimeoutError:
            raise Unreachable(f"the daemon did not answer within {timeout_s:g} s") from None
        except OSError as exc:
            raise Unreachable(f"lost the connection to the daemon: {exc.strerror or exc}") from None
    finally:
        sock.close()
    if not buffer.endswith(b"\n"):
        raise Unreachable("the daemon closed the connection without answering")
    try:
        answer = json.loads(buffer)
    except ValueError:
        raise Unreachable("the daemon's answer is not JSON") from None
    if not isinstance(answer, dict):
        raise Unreachable("the daemon's answer is not a JSON object")
    return answer


# --- human output ---------------------------------------------------------------------------


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]


def format_status(status: dict[str, Any]) -> str:
    now = float(status.get("now") or 0.0)
    t = fmt.text
    lines: list[str] = []
    situation = status.get("situation") or {}
    lines.append(f"situation  {fmt.label(situation.get('name'))} for {fmt.age(situation.get('since'), now)}"
                 f"  ({t(situation.get('reason'))})")
    lines.append(f"router     v{t(status.get('version'))}, up {fmt.dur(status.get('uptime_s'))}")
    lines.append("")
    rows = [["UPLINK", "KIND", "IFACE", "STATE", "ROLE", "SIGNAL", "RTT", "LOSS", "SCORE", "METERED",
             "ADDRESS", "TX/RX"]]
    for u in status.get("uplinks") or []:
        role = "active" if u.get("active") else "standby" if u.get("standby") else "-"
        rows.append([t(u.get("name")), t(u.get("kind")), t(u.get("interface")), t(u.get("state")), role,
                     fmt.dbm(u.get("signal_dbm")), fmt.ms(u.get("rtt_ms")), fmt.pct(u.get("loss_pct")),
                     f"{fmt.num(u.get('score'))}/{fmt.num(u.get('score_max'))}", fmt.yesno(u.get("metered")),
                     t(u.get("address")), f"{fmt.size(u.get('tx_bytes'))}/{fmt.size(u.get('rx_bytes'))}"])
    lines += _table(rows) if len(rows) > 1 else ["no uplinks"]
    lines.append("")
    rows = [["SYSTEM", "HOME AGENT", "HOME ADDRESS", "CARE-OF", "STATE", "LIFETIME", "LAST REPLY"]]
    for system, reg in sorted((status.get("registrations") or {}).items()):
        rows.append([system, t(reg.get("home_agent")), t(reg.get("home_address")), t(reg.get("care_of_address")),
                     t(reg.get("state")), fmt.dur(reg.get("lifetime_left_s")),
                     f"{t(reg.get('last_code'))} {t(reg.get('last_message'))}"])
    lines += _table(rows)
    lines.append("")
    vpn = status.get("vpn") or {}
    lines.append(f"vpn        {t(vpn.get('state'))}, V {t(vpn.get('virtual_ip'))}, gateway {t(vpn.get('gateway'))}, "
                 f"SA age {fmt.dur(vpn.get('sa_age_s'))}, sent {fmt.size(vpn.get('tx_bytes'))}, "
                 f"received {fmt.size(vpn.get('rx_bytes'))}")
    network = status.get("mobile_network") or {}
    clients = network.get("clients") or []
    lines.append(f"lan        {', '.join(map(str, network.get('prefixes') or [])) or fmt.DASH}, "
                 f"router {t(network.get('lan_address'))}, {len(clients)} DHCP client(s)")
    for c in clients:
        lines.append(f"           {t(c.get('hostname'))} {t(c.get('address'))} {t(c.get('mac'))}")
    handovers = status.get("handovers") or []
    if handovers:
        h = handovers[0]
        lines.append(f"last move  {fmt.clock(h.get('at'))} UTC {t(h.get('from'))} -> {t(h.get('to'))}, "
                     f"gap {fmt.ms(h.get('gap_ms'))} ({t(h.get('reason'))})")
    return "\n".join(lines)


def format_handovers(handovers: list[dict[str, Any]]) -> str:
    if not handovers:
        return "no handovers yet"
    lines: list[str] = []
    rows = [["TIME (UTC)", "KIND", "FROM", "TO", "GAP", "REASON"]]
    for h in handovers:
        rows.append([fmt.clock(h.get("at")), fmt.text(h.get("kind")), fmt.text(h.get("from")),
                     fmt.text(h.get("to")), fmt.ms(h.get("gap_ms")), fmt.text(h.get("reason"))])
    table = _table(rows)
    lines.append(table[0])
    for line, h in zip(table[1:], handovers, strict=True):
        lines.append(line)
        phases = ", ".join(f"{fmt.text(p.get('name'))} {fmt.ms(p.get('at_ms'))}"
                           for p in h.get("phases") or [] if isinstance(p, dict))
        if phases:
            lines.append(f"    phases: {phases}")
    return "\n".join(lines)


# --- argument parsing -----------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--socket", default=argparse.SUPPRESS,
                        help=f"control socket (default $ROUTER_CONTROL_SOCKET or {DEFAULT_SOCKET})")
    parser = argparse.ArgumentParser(prog="python -m router", parents=[common],
                                     description="Ask the running router daemon.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    status = commands.add_parser("status", parents=[common], help="situation, uplinks, registrations, VPN")
    status.add_argument("--json", action="store_true", help="the raw snapshot (router/web/SCHEMA.md)")
    handovers = commands.add_parser("handovers", parents=[common], help="the handover log with phase timings")
    handovers.add_argument("--json", action="store_true")
    uplink = commands.add_parser("uplink", parents=[common], help="uplink actions")
    uplink_actions = uplink.add_subparsers(dest="uplink_action", required=True, metavar="ACTION")
    prefer = uplink_actions.add_parser("prefer", parents=[common], help="prefer this uplink")
    prefer.add_argument("name")
    commands.add_parser("reconnect", parents=[common], help="re-register and re-key now")
    return parser


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    """Run one CLI command (``argv`` without the program name). Returns the exit code."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_UNREACHABLE
    path = getattr(args, "socket", None) or os.environ.get("ROUTER_CONTROL_SOCKET") or DEFAULT_SOCKET
    if args.command == "status":
        message: dict[str, Any] = {"cmd": "status"}
    elif args.command == "handovers":
        message = {"cmd": "handovers"}
    elif args.command == "uplink":
        message = {"cmd": "uplink_prefer", "name": args.name}
    else:
        message = {"cmd": "reconnect"}
    try:
        answer = request(path, message)
    except Unreachable as exc:
        print(f"router: {exc}", file=err)
        return EXIT_UNREACHABLE
    if not answer.get("ok"):
        print(f"router: {answer.get('error', 'the daemon refused')}", file=err)
        return EXIT_REFUSED
    if args.command == "status":
        status = answer.get("status") or {}
        print(json.dumps(status, indent=2) if args.json else format_status(status), file=out)
    elif args.command == "handovers":
        handovers = answer.get("handovers") or []
        print(json.dumps(handovers, indent=2) if args.json else format_handovers(handovers), file=out)
    else:
        result = answer.get("result") or {}
        print(result.get("message") or json.dumps(result) if isinstance(result, dict) else str(result), file=out)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
