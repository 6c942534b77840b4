"""Guest side of qemu.run.boot(): runs the host's shell commands, one at a time.

Runs inside the guest from /src (not baked into the image; changes need no rebuild), started
by the guest init as the job. Talks JSON lines over the virtio-serial port the runner adds:
  host -> guest  {"cmd": "shell text", "timeout": seconds}   or   {"exit": status}
  guest -> host  {"hello": uptime}  once, then per command {"rc": n, "stdout": s, "stderr": s}
Command output goes to files, not pipes, so a command may leave daemons running in the
background (`setsid lab-up >/tmp/lab.log 2>&1 &`) without the agent waiting for them.
Stdlib only: it starts in well under a second under TCG.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO

PORT_NAME = "mr.agent"
TIMEOUT_STATUS = 124


def find_port(name: str, wait: float = 10.0) -> Path:
    """The /dev node of the named virtio-serial port (no udev, so no /dev/virtio-ports link)."""
    subprocess.run(["modprobe", "virtio_console"], check=False)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        for entry in Path("/sys/class/virtio-ports").glob("vport*"):
            name_file = entry / "name"
            if name_file.exists() and name_file.read_text().strip() == name:
                return Path("/dev") / entry.name
        time.sleep(0.05)
    raise SystemExit(f"agent: no virtio-serial port named {name}")


def run_command(command: str, timeout: float | None) -> dict[str, Any]:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            ["sh", "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,  # a timeout kills the command's whole group
        )
        try:
            status = process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            status = TIMEOUT_STATUS
        out.seek(0)
        err.seek(0)
        return {
            "rc": status,
            "stdout": out.read().decode(errors="replace"),
            "stderr": err.read().decode(errors="replace"),
        }


def send(port: BinaryIO, message: dict[str, Any]) -> None:
    port.write(json.dumps(message).encode() + b"\n")
    port.flush()


def serve(port: BinaryIO) -> int:
    send(port, {"hello": Path("/proc/uptime").read_text().split()[0]})
    while line := port.readline():
        request = json.loads(line)
        if "exit" in request:
            return int(request["exit"])
        send(port, run_command(str(request["cmd"]), request.get("timeout")))
    return 0


def main(argv: list[str]) -> int:
    path = find_port(PORT_NAME)
    with open(path, "r+b", buffering=0) as port:
        return serve(port)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
