"""Serve the status page from the fake source, cycling through the situations.

    python3 -m router.web.demo [--listen 127.0.0.1:8080] [--token-file FILE] [--every 20]

For looking at the page without the lab; the daemon serves the real one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence

from router.web.api import start_web_server
from router.web.source import FakeStatusSource


async def _run(host: str, port: int, token: bytes | None, every: float) -> None:
    source = FakeStatusSource()
    server = await start_web_server(source, host, port, token=token)
    print(f"status page: http://{host}:{server.port}/", flush=True)
    order = ("inside", "outside", "outer_home", "outside")
    step = 0
    try:
        while True:
            await asyncio.sleep(every)
            step += 1
            source.set_situation(order[step % len(order)])
    finally:
        await server.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m router.web.demo", description=__doc__.split("\n")[1])
    parser.add_argument("--listen", default="127.0.0.1:8080", help="ADDRESS:PORT (default %(default)s)")
    parser.add_argument("--token-file", help="file holding the action token (else actions are off)")
    parser.add_argument("--every", type=float, default=20.0, help="seconds per situation")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    token = None
    if args.token_file:
        with open(args.token_file, "rb") as file:
            token = file.read().strip()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(host, int(port), token, args.every))
    return 0


if __name__ == "__main__":
    sys.exit(main())
