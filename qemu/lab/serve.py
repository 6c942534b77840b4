"""Serve the router's LAN status page out of the lab, to the host's browser.

The product's page listens on 10.1.1.1:80 in the router namespace, LAN side only (its
nftables rule drops the port on every interface but br-lan and lo). QEMU's user networking
forwards a host port to the guest's *root* namespace (``Forward(host_port, guest_port)`` in
qemu.run). Two socats bridge the namespaces through a Unix socket, since a file system path
is reachable from every network namespace and needs no veth pair or route:

    host 127.0.0.1:H --QEMU hostfwd--> guest root ns, socat TCP-LISTEN:G,fork
        --> unix socket <run_dir>/page.sock
        --> router ns, socat UNIX-LISTEN,fork --> TCP 10.1.1.1:80 (arrives on lo: allowed)

Nothing of this is the product: the relay is lab plumbing, like the captures.

For the demo (``make demo ARGS=--serve``), inside the guest, with the world and the product up::

    from qemu.lab.serve import serve_page, hold
    relay = serve_page(world, guest_port=8080, host_port=args.host_port)
    # prints "status page: http://127.0.0.1:<host_port>/" once /api/status answers through it
    hold(relay)          # blocks until SIGINT/SIGTERM, then stops the relay

and on the host ``boot(BootConfig(forwards=[Forward(host_port, 8080)]))``.

``python3 -m qemu.lab.serve --product ...`` (in the guest) builds a world, starts the
single-system product on 3G, moves it to the hotspot (one handover), gives lan-host a lease
and serves the page until a stop file appears: the host's browser test drives it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from . import plan
from .shell import Daemon, LabError, run, wait_until
from .world import World

PAGE_PORT = 80  # the product's [web] listen port in the lab (qemu/lab/product.py)
DEFAULT_GUEST_PORT = 8080
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an env proxy


class PageRelay:
    """The two socats; ``start()`` waits until the page answers through them."""

    def __init__(self, world: World, guest_port: int = DEFAULT_GUEST_PORT,
                 target: str = plan.ROUTER_LAN_ADDRESS, target_port: int = PAGE_PORT) -> None:
        self.world = world
        self.guest_port = guest_port
        self.run_dir = world.run_dir / "page-relay"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.socket = self.run_dir / "page.sock"
        self.inner = Daemon(
            "page-relay-router",
            ["socat", f"UNIX-LISTEN:{self.socket},fork,unlink-early,mode=600",
             f"TCP:{target}:{target_port},connect-timeout=5"],
            self.run_dir / "router-side.log", world.ns("router"),
            ready=self.socket.exists, ready_timeout=20)
        self.outer = Daemon(
            "page-relay-root",
            ["socat", f"TCP-LISTEN:{guest_port},fork,reuseaddr", f"UNIX-CONNECT:{self.socket}"],
            self.run_dir / "root-side.log", None)

    @property
    def local_url(self) -> str:
        """The page as seen from the guest's root namespace (through the relay)."""
        return f"http://127.0.0.1:{self.guest_port}/"

    def start(self, timeout: float = 120.0) -> float:
        """Start both sides; wait until /api/status answers 200 through them; seconds taken."""
        started = time.monotonic()
        self.inner.start()
        self.outer.start()
        wait_until(self.answers, timeout, f"the status page through the relay at {self.local_url}",
                   interval=0.5, on_timeout=self._logs)
        return time.monotonic() - started

    def answers(self) -> bool:
        try:
            with _DIRECT.open(self.local_url + "api/status", timeout=5) as reply:
                return bool(reply.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def fetch_status(self) -> dict[str, Any]:
        with _DIRECT.open(self.local_url + "api/status", timeout=10) as reply:
            data: dict[str, Any] = json.loads(reply.read())
            return data

    def stop(self) -> None:
        self.outer.stop()
        self.inner.stop()
        self.socket.unlink(missing_ok=True)

    def _logs(self) -> str:
        return "\n".join(f"{d.name}:\n{d.log_tail(10)}" for d in (self.inner, self.outer))


def serve_page(world: World, guest_port: int = DEFAULT_GUEST_PORT, host_port: int | None = None,
               timeout: float = 120.0) -> PageRelay:
    """Relay the router's page to ``guest_port`` in the guest's root namespace and print
    ``status page: http://127.0.0.1:<host_port>/`` (the host side of the QEMU forward; the
    guest port when ``host_port`` is None) once it answers. The product must be running."""
    relay = PageRelay(world, guest_port)
    try:
        relay.start(timeout)
    except BaseException:
        relay.stop()
        raise
    print(f"status page: http://127.0.0.1:{host_port or guest_port}/", flush=True)
    return relay


def hold(relay: PageRelay, stop_file: Path | None = None) -> None:
    """Keep serving until SIGINT/SIGTERM (or ``stop_file`` appears); then stop the relay."""
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            if stop_file is not None and stop_file.exists():
                break
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        relay.stop()


# -- the scene the host's browser test looks at --------------------------------------------------


def product_scene(world: World) -> Any:
    """The single-system product with real history: up on 3G, lan-host leased, then moved to
    the hotspot by the router's own policy (a make-before-break handover cell -> wlan)."""
    from .product import Product

    world.ap_down("hotspot")
    run(["ip", "-n", world.ns("inet"), "route", "replace", plan.LAN_PREFIX, "via", plan.OUTER_HA_ADDRESS])
    product = Product(world)
    product.start_home_agent()
    product.start_router()
    product.wait_router_log("lan route -> tunnel from", timeout=180)
    world.lan_host_dhcp(timeout=30)
    world.ap_up("hotspot")
    product.wait_router_log("lan route -> tunnel from 198.51.100.", timeout=120)
    # Some LAN traffic through the tunnel, so the byte counters have something to show.
    world.ping("lan-host", plan.INTERNET_CORE_ADDRESS, count=3, interval=0.2, wait=1.0)
    return product


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m qemu.lab.serve", description=__doc__.split("\n")[0])
    parser.add_argument("--product", action="store_true", required=True,
                        help="build the world, start the single-system product (see product_scene)")
    parser.add_argument("--guest-port", type=int, default=DEFAULT_GUEST_PORT)
    parser.add_argument("--host-port", type=int, help="the host side of the QEMU forward (for the URL line)")
    parser.add_argument("--ready-file", type=Path, help="written (JSON) once the page answers through the relay")
    parser.add_argument("--stop-file", type=Path, help="stop serving when this file appears")
    args = parser.parse_args(argv)
    if not Path("/src").is_dir():
        raise SystemExit("qemu.lab.serve runs inside the QEMU guest")
    started = time.monotonic()
    world = World(static_lan=False)
    product = None
    try:
        world.up()
        print(f"lab: world up in {time.monotonic() - started:.1f} s", flush=True)
        product = product_scene(world)
        print(f"lab: product registered and moved to the hotspot after {time.monotonic() - started:.1f} s",
              flush=True)
        relay = serve_page(world, args.guest_port, args.host_port)
        if args.ready_file is not None:
            args.ready_file.write_text(json.dumps({"seconds": time.monotonic() - started,
                                                   "router_log": str(product.router.log_path)}))
        hold(relay, args.stop_file)
    except LabError as error:
        print(f"lab: {error}", file=sys.stderr, flush=True)
        if product is not None:
            print("--- router log (tail)\n" + product.router.log_tail(60), file=sys.stderr, flush=True)
        return 1
    finally:
        if product is not None:
            product.stop()
        world.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
