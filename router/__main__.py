"""``python -m router --config FILE`` runs the daemon; ``python -m router status|handovers|uplink|reconnect`` talks to it."""

import sys

CLI_COMMANDS = {"status", "handovers", "uplink", "reconnect"}


def run() -> int:
    # Import only what the command needs: the CLI must start fast and never pull pyroute2.
    if len(sys.argv) > 1 and sys.argv[1] in CLI_COMMANDS:
        from router.cli import main as cli_main

        return cli_main(sys.argv[1:])
    from router.daemon import main

    return main(sys.argv[1:])


sys.exit(run())
