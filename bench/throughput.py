"""Throughput and per-packet overhead in the QEMU guest, three paths in ONE guest run.

The same world, the same uplink (3G: ppp0 over the lab's modem pty), the same correspondent
(cn, 10.20.0.10, in the secure domain), iperf3 from lan-host, one after the other:

(a) plain routing: no tunnel; lab-only glue for this step (undone after it): the router
    masquerades the LAN to X on ppp0, the internet core routes 10.20.0.0/24 to the VPN gateway,
    whose firewall lets this one flow pass in clear, and corp routes X's prefix back;
(b) one ESP tunnel: site-to-site from X, the LAN 10.1.1.0/24 <-> the servers 10.20.0.0/24
    (IKEv2 PSK, aes128gcm16 as the product's connection), a connection of the bench's own
    loaded over vici into the lab's gateway charon and the lab's router-side charon; corp
    routes the LAN to the gateway for this step; lan-host's packets cross unchanged (no NAT,
    no virtual IP, no Mobile IP);
(c) the full nesting IP-in-IP(X -> T_HA)[ESP(T -> T_gw)[IP-in-IP(V -> S_HA)[packet]]], built
    from the product's own plans by qemu.lab.nesting (the same setup as tests/qemu/test_nesting.py).

For each path: the path MTU lan-host sees (DF ping bisection), the overhead on the wire
(DF pings of 1028 bytes and of the path MTU, captured on the internet core's end of the cell
link and decoded by tshark: outer IP length minus inner length, compared with bench.overhead's
arithmetic), a 4 MiB TCP transfer with DF set that must arrive whole (a PMTU black hole
stalls it), and ROUNDS x SECONDS of iperf3 lan-host -> cn. Then, with (c) still built, ROUNDS
more of (c) and (b) in turn (the bench's child loaded into the product's charon, up only for
its rounds): the paths above run minutes apart, and on a shared machine under TCG the load
drifts by 2x between them, so DESIGN.md's `throughput.nested_vs_esp` pairs the interleaved
rounds; the one-after-the-other ratio is `.sequential`. Ratios pair round i with round i.

Host: ``python3 -m bench throughput`` (or ``python3 -m bench.throughput``) boots the guest.
"""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.guest import inside_guest, run_in_guest, write_guest_rows
from bench.overhead import EspTransform, nested_overhead
from bench.results import Metric, median, ratio

NAME = "throughput"
PATHS = ("plain", "esp", "nested")
# Transfers that must arrive whole: lan-host -> cn on every path, and back through the nesting
# (with (a) masquerading and (b) selecting the LAN by policy, only lan-host opens connections).
DIRECTIONS = {"plain": ("lan-host->cn",), "esp": ("lan-host->cn",), "nested": ("lan-host->cn", "cn->lan-host")}
BENCH_ID = "bench.lab"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m bench.throughput")
    parser.add_argument("--in-guest", action="store_true", help="(used by the host half)")
    parser.add_argument("--seconds", type=float, default=5.0, help="iperf3 time per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s, no UDP tunnel")
    parser.add_argument("--udp-tunnel", action="store_true", help="with --quick: the UDP tunnel too")
    return parser.parse_args(argv)


def outer_lengths(pcap: Path, source: str, destination: str) -> list[int]:
    """Total length of the outermost IP header of every frame from `source` to `destination`."""
    done = subprocess.run(["tshark", "-n", "-r", str(pcap), "-T", "fields", "-E", "occurrence=f",
                           "-e", "ip.src", "-e", "ip.dst", "-e", "ip.len"],
                          capture_output=True, text=True, check=True, timeout=120)
    lengths = []
    for line in done.stdout.splitlines():
        fields = line.split("\t")
        if len(fields) == 3 and fields[0] == source and fields[1] == destination and fields[2]:
            lengths.append(int(fields[2]))
    return lengths


def esp_bytes(xfrm_state: str, source: str, destination: str) -> int:
    """Bytes the outbound SA `source` -> `destination` carried, from `ip -s xfrm state`."""
    for block in re.split(r"^src ", xfrm_state, flags=re.M)[1:]:
        if block.startswith(f"{source} dst {destination}\n") and "lifetime current:" in block:
            current = block.split("lifetime current:", 1)[1].split("(bytes)", 1)[0]
            return int(current.strip())
    return 0


def vici_session(path: Path) -> Any:
    import socket

    import vici

    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(path))
    return vici.Session(sock)


def esp_connection(gateway_side: bool) -> dict[str, Any]:
    """vici `load-conn` for path (b): IKEv2 PSK, LAN 10.1.1.0/24 <-> servers 10.20.0.0/24,
    aes128gcm16 as the product's connection; its own identity so the gateway picks it."""
    from qemu.lab import plan

    lan, servers = [plan.LAN_PREFIX], ["10.20.0.0/24"]
    ids = {"local": {"auth": "psk", "id": BENCH_ID}, "remote": {"auth": "psk", "id": plan.VPN_GATEWAY_ID}}
    if gateway_side:
        ids = {"local": ids["remote"], "remote": ids["local"]}
    child = {"local_ts": servers if gateway_side else lan, "remote_ts": lan if gateway_side else servers,
             "esp_proposals": ["aes128gcm16", "default"]}
    ends = {"local_addrs": [plan.VPN_GATEWAY_ADDRESS]} if gateway_side else {"remote_addrs": [plan.VPN_GATEWAY_ADDRESS]}
    return {"bench": {"version": "2", **ends, "proposals": ["aes128-sha256-modp2048", "default"],
                      **ids, "children": {"bench": child}}}


def in_guest(args: argparse.Namespace) -> int:
    from qemu.lab import World, nesting, plan
    from qemu.lab.captures import record
    from qemu.lab.nesting import (
        CN,
        T_GW,
        T_HA,
        TRANSFER_BYTES,
        exact_transfer,
        iperf,
        iperf_server,
        path_mtu,
    )

    seconds, rounds = (3.0, 1) if args.quick else (args.seconds, args.rounds)
    out = Path("/out/bench/throughput")
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    results: dict[str, dict[str, Any]] = {}
    world = World()
    timings.update(world.up())

    def r(host: str, *argv: str, check: bool = True) -> str:
        return world.exec(host, list(argv), check=check)

    def measure(path: str, endpoint: str, computed: Callable[[int], int] | None,
                directions: tuple[tuple[str, str, str, int], ...]) -> None:
        """Everything for one path; `endpoint` is the outer header's destination on the cell link."""
        got: dict[str, Any] = {"mbps": [], "overhead": {}, "complete": {}}
        results[path] = got  # partial results stay when a later step fails
        got["pmtu"] = path_mtu(world, "lan-host", CN)
        for inner in (1028, got["pmtu"]):
            pcap = out / f"{path}-{inner}.pcap"
            with record(world, "inet", "cell0", pcap):
                pinged = r("lan-host", "ping", "-n", "-c", "3", "-i", "0.3", "-W", "2", "-M", "do",
                           "-s", str(inner - 28), CN, check=False)
            lengths = [n for n in outer_lengths(pcap, care_of, endpoint) if n >= inner]
            if not lengths:
                raise AssertionError(f"{path}: no {inner}-byte ping on the cell link\n{pinged}")
            wire = Counter(lengths).most_common(1)[0][0]
            got["overhead"][inner] = (wire - inner, computed(inner) if computed else 0)
        for sender, receiver, address, port in directions:
            received = exact_transfer(world, sender, receiver, address, port)
            got["complete"][f"{sender}->{receiver}"] = received / TRANSFER_BYTES
        with iperf_server(world, "cn"):
            for _ in range(rounds):
                result = iperf(world, "lan-host", CN, reverse=False, seconds=seconds)
                got["mbps"].append(result["mbit_s"])
                print(f"  {path}: iperf3 lan-host -> cn {result}", flush=True)
        print(f"  {path}: {got}", flush=True)

    up = (("lan-host", "cn", CN, 5001),)
    failed: list[str] = []
    care_of = ""

    def plain_step() -> None:
        # (a) plain routing, lab-only glue, removed afterwards.
        r("router", "nft", "add table ip bench_nat; add chain ip bench_nat post "
          "{ type nat hook postrouting priority srcnat; }; "
          f"add rule ip bench_nat post oifname ppp0 ip saddr {plan.LAN_PREFIX} masquerade")
        r("inet", "ip", "route", "replace", "10.20.0.0/24", "via", plan.VPN_GATEWAY_ADDRESS)
        r("corp", "ip", "route", "replace", plan.CELL_PREFIX, "via", plan.VPN_GATEWAY_INSIDE_ADDRESS)
        for match in (f"ip saddr {plan.CELL_PREFIX} ip daddr 10.20.0.0/24",
                      f"ip saddr 10.20.0.0/24 ip daddr {plan.CELL_PREFIX}"):
            r("vpn-gw", "sh", "-c", f"nft insert rule inet lab_vpn_gw forward_filter {match} accept comment bench")
        try:
            measure("plain", CN, None, up)
        finally:
            r("router", "nft", "delete", "table", "ip", "bench_nat", check=False)
            r("inet", "ip", "route", "del", "10.20.0.0/24", check=False)
            r("corp", "ip", "route", "del", plan.CELL_PREFIX, check=False)
            listing = r("vpn-gw", "nft", "-a", "list", "chain", "inet", "lab_vpn_gw", "forward_filter")
            for line in listing.splitlines():
                if 'comment "bench"' in line:
                    handle = line.rsplit("handle", 1)[1].strip()
                    r("vpn-gw", "nft", "delete", "rule", "inet", "lab_vpn_gw", "forward_filter",
                      "handle", handle, check=False)

    def esp_step() -> None:
        # (b) one ESP tunnel from X: site-to-site LAN <-> servers, a connection of its own
        # loaded into the gateway's and the router's lab charons over vici, removed after.
        from qemu.lab import vpn

        gateway = vici_session(world.run_dir / "charon-vpn-gw" / "charon.vici")
        gateway.load_conn(esp_connection(gateway_side=True))
        timings["lab charon start"] = world.router.start_vpn_client()
        client = world.router.vici_session()
        client.load_shared(vpn.router_secret())
        client.load_conn(esp_connection(gateway_side=False))
        r("corp", "ip", "route", "replace", plan.LAN_PREFIX, "via", plan.VPN_GATEWAY_INSIDE_ADDRESS)
        started = time.monotonic()
        try:
            for _ in client.initiate({"child": "bench", "ike": "bench", "timeout": 30000}):
                pass
            timings["ESP from X up"] = time.monotonic() - started
            states = r("router", "ip", "xfrm", "state")
            print(f"router xfrm states (ESP from X):\n{states}", flush=True)
            esp = EspTransform(udp_encapsulated="encap type espinudp" in states)
            assert "rfc4106(gcm(aes))" in states and " 128" in states, "not AES-GCM-16: fix EspTransform"
            try:
                measure("esp", str(T_GW), esp.overhead, up)
            except Exception:
                for host, command in (("router", "ip route show table all"), ("router", "ip -s xfrm state"),
                                      ("router", "ip xfrm policy"), ("vpn-gw", "ip xfrm policy"),
                                      ("vpn-gw", "ip route show table all"), ("corp", "ip route")):
                    print(f"--- {host}: {command}\n{r(host, *command.split(), check=False)}", flush=True)
                print(world.router.vpn_client.log_tail(30), flush=True)
                raise
        finally:
            for _ in client.terminate({"ike": "bench", "timeout": 10000}):
                pass
            gateway.unload_conn({"name": "bench"})
            world.router.vpn_client.daemon.stop()
            r("corp", "ip", "route", "del", plan.LAN_PREFIX, check=False)

    def nested_step() -> None:
        # (c) the full nesting, the product's plans.
        with nesting.outside(world, timings) as dual:
            states = r("router", "ip", "xfrm", "state")
            esp = EspTransform(udp_encapsulated="encap type espinudp" in states)
            assert "rfc4106(gcm(aes))" in states, states
            try:
                measure("nested", str(T_HA), lambda inner: nested_overhead(inner, esp),
                        (*up, ("cn", "lan-host", plan.LAN_HOST_ADDRESS, 5002)))
            except Exception:
                print(dual.diagnostics(), flush=True)
                raise
            interleave(dual)

    def interleave(dual: Any) -> None:
        """(c) and (b) again, round by round in turn, so the machine's load drift hits both:
        the bench's site-to-site child from X is loaded into the product's charon (the lab
        charon cannot run beside it) and brought up for the (b) rounds only; while it is up its
        policy takes lan-host's packets before the nesting does (xfrm is looked up after the
        route), and corp routes the LAN to the gateway instead of the inner home agent."""
        nested_mbps: list[float] = []
        esp_mbps: list[float] = []
        results["nested_interleaved"] = {"mbps": nested_mbps}
        results["esp_interleaved"] = {"mbps": esp_mbps}
        gateway = vici_session(world.run_dir / "charon-vpn-gw" / "charon.vici")
        gateway.load_conn(esp_connection(gateway_side=True))
        client = vici_session(dual.charon.vici_socket)
        connection = esp_connection(gateway_side=False)
        connection["bench"]["local_addrs"] = [care_of]
        client.load_conn(connection)
        try:
            with iperf_server(world, "cn"):
                for _ in range(rounds):
                    nested_mbps.append(iperf(world, "lan-host", CN, reverse=False, seconds=seconds)["mbit_s"])
                    r("corp", "ip", "route", "replace", plan.LAN_PREFIX, "via", plan.VPN_GATEWAY_INSIDE_ADDRESS)
                    for _ in client.initiate({"child": "bench", "ike": "bench", "timeout": 30000}):
                        pass
                    try:
                        esp_mbps.append(iperf(world, "lan-host", CN, reverse=False, seconds=seconds)["mbit_s"])
                        carried = esp_bytes(r("router", "ip", "-s", "xfrm", "state"), care_of, plan.VPN_GATEWAY_ADDRESS)
                        assert carried > 100_000, f"the (b) round did not ride the bench SA ({carried} bytes)"
                    finally:
                        for _ in client.terminate({"ike": "bench", "timeout": 10000}):
                            pass
                        r("corp", "ip", "route", "replace", plan.LAN_PREFIX, "via", plan.INNER_HA_ADDRESS)
                    print(f"  interleaved: nested {nested_mbps[-1]} / esp {esp_mbps[-1]} Mbit/s "
                          f"(bench SA carried {carried} bytes)", flush=True)
        finally:
            client.unload_conn({"name": "bench"})
            gateway.unload_conn({"name": "bench"})

    try:
        care_of, timings["3G dial"] = world.router.dial()
        r("router", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        world.router.default_route("ppp0")
        for name, step in (("plain", plain_step), ("esp", esp_step)):
            try:
                step()
            except Exception:
                traceback.print_exc()
                failed.append(name)
        r("router", "ip", "route", "del", "default", check=False)
        try:
            nested_step()
        except Exception:
            traceback.print_exc()
            failed.append("nested")
    finally:
        world.down()
    print("stage times: " + ", ".join(f"{k} {v:.2f}" for k, v in timings.items()), flush=True)

    metrics = throughput_rows(results)
    if not args.quick or args.udp_tunnel:
        from bench import udp_tunnel
        from qemu.lab.product import ensure_tun_device

        try:
            ensure_tun_device()
            metrics += udp_tunnel.measure(seconds, rounds, prefix="udp_tunnel.guest", guest=True)
        except Exception:
            traceback.print_exc()
            failed.append("udp_tunnel")
    write_guest_rows(NAME, metrics)
    if failed:
        print(f"throughput: steps that failed: {failed}", flush=True)
    return 1 if failed else 0


def throughput_rows(results: dict[str, dict[str, Any]]) -> list[Metric]:
    """The rows from what each path measured: `results[path]` holds "mbps" (per round),
    "pmtu", "overhead" {inner length: (captured, computed)} and "complete" {direction: ratio}.
    A path that failed, or failed part-way, gives nan (a MISS), never a missing row."""
    nan = math.nan

    def of(path: str) -> dict[str, Any]:
        return results.get(path, {})

    def mbps(path: str) -> list[float]:
        return list(of(path).get("mbps", []))

    def paired(a: str, b: str) -> tuple[list[float], list[float]]:
        n = min(len(mbps(a)), len(mbps(b)))
        return (mbps(a)[:n], mbps(b)[:n]) if n else ([nan], [1.0])

    metrics = [Metric(f"throughput.{path}_mbps", median(mbps(path)), "Mbit/s", ">= 0", mbps(path))
               for path in (*PATHS, "esp_interleaved", "nested_interleaved")]
    # DESIGN.md section 7's ratio from the interleaved rounds (same minutes, same load) when
    # they ran; the one-after-the-other figure beside it.
    interleaved = bool(mbps("nested_interleaved") and mbps("esp_interleaved"))
    metrics += [
        ratio("throughput.nested_vs_esp", *paired("nested_interleaved", "esp_interleaved")
              if interleaved else paired("nested", "esp"), ">= 0.8"),
        ratio("throughput.nested_vs_esp.sequential", *paired("nested", "esp"), ">= 0.8"),
        ratio("throughput.nested_vs_plain", *paired("nested", "plain"), ">= 0"),  # no target: reported
        ratio("throughput.esp_vs_plain", *paired("esp", "plain"), ">= 0"),
    ]
    # The LAN's path MTU through the nesting: the inner tunnel's fixed MTU (router.dataplane).
    pmtu_targets = {"plain": ">= 0", "esp": ">= 0", "nested": ">= 1400"}
    for path in PATHS:
        pmtu = of(path).get("pmtu", nan)
        metrics.append(Metric(f"path_mtu.{path}_bytes", pmtu, "B", pmtu_targets[path]))
        overhead = of(path).get("overhead", {})
        for inner, label in ((1028, "1028"), (pmtu, "full")):
            captured, computed = overhead.get(inner, (nan, nan))
            target = f"== {computed:g}" if not math.isnan(computed) else "== nan"
            metrics.append(Metric(f"overhead.{path}_bytes.{label}", captured, "B", target))
        full = overhead.get(pmtu, (nan, nan))[0] + pmtu
        metrics.append(Metric(f"overhead.{path}_wire_bytes", full, "B", "<= 1500"))
        for direction in DIRECTIONS[path]:
            complete = of(path).get("complete", {}).get(direction, nan)
            metrics.append(Metric(f"tcp.df_bulk_complete.{path}.{direction}", complete, "ratio", "== 1"))
    return metrics


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.in_guest:
        if not inside_guest():
            print("--in-guest: not inside the QEMU guest", file=sys.stderr)
            return 2
        return in_guest(args)
    extra = ["--quick", *(["--udp-tunnel"] if args.udp_tunnel else [])] if args.quick else ["--seconds", str(args.seconds), "--rounds", str(args.rounds)]
    return run_in_guest(NAME, "bench.throughput", extra)


if __name__ == "__main__":
    sys.exit(main())
