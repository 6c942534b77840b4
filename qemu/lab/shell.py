"""Running commands and daemons inside the lab's network namespaces.

The lab is test infrastructure, so it drives the kernel with the ordinary tools (`ip`, `tc`,
`iw`, `nft`) rather than the product's pyroute2 adapter: a failing command raises `LabError`
with the command line and its output, never a silent skip.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


class LabError(RuntimeError):
    """The lab world could not be built, or a peer misbehaved."""


def in_namespace(namespace: str | None, argv: Sequence[str]) -> list[str]:
    """The argv that runs `argv` inside `namespace` (or as is, for the root namespace)."""
    if namespace is None:
        return list(argv)
    return ["ip", "netns", "exec", namespace, *argv]


def run(
    argv: Sequence[str],
    namespace: str | None = None,
    *,
    check: bool = True,
    stdin: str | None = None,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; raise `LabError` with its output when it fails."""
    full = in_namespace(namespace, argv)
    try:
        result = subprocess.run(
            full,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=None if env is None else {**os.environ, **env},
        )
    except subprocess.TimeoutExpired as error:
        raise LabError(f"timed out after {timeout}s: {' '.join(full)}") from error
    if check and result.returncode != 0:
        raise LabError(
            f"command failed (rc={result.returncode}): {' '.join(full)}\n"
            f"{result.stdout}{result.stderr}".rstrip()
        )
    return result


def ip_batch(namespace: str | None, commands: Sequence[str]) -> None:
    """Many `ip` commands in one process: forks are expensive under QEMU's TCG."""
    if not commands:
        return
    argv = ["ip", "-batch", "-"] if namespace is None else ["ip", "-n", namespace, "-batch", "-"]
    run(argv, stdin="\n".join(commands) + "\n")


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    interval: float = 0.05,
    on_timeout: Callable[[], str] | None = None,
) -> float:
    """Poll until `condition()` holds; return the seconds it took, or raise naming `what`."""
    start = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            detail = on_timeout() if on_timeout else ""
            raise LabError(f"timed out after {timeout:.1f}s waiting for {what}\n{detail}".rstrip())
        time.sleep(interval)


def tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


class Daemon:
    """One foreground process of a peer, in a namespace, with its own log file.

    `ready` is polled after start; the process dying first, or `ready_timeout` passing,
    raises with the log tail. The process leads its own session so that stopping it also
    ends its children (chat under pppd, charon under unshare).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        namespace: str | None = None,
        *,
        ready: Callable[[], bool] | None = None,
        ready_timeout: float = 20.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.namespace = namespace
        self.ready = ready
        self.ready_timeout = ready_timeout
        self.env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None
        self._launched_at = 0.0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.running and self.process else None

    def start(self) -> float:
        """Start and wait until ready; return the seconds that took."""
        self.launch()
        return self.wait_ready()

    def launch(self) -> None:
        """Start without waiting: launch several peers, then `wait_ready` on each."""
        if self.running:
            raise LabError(f"{self.name} is already running (pid {self.pid})")
        self._launched_at = time.monotonic()
        with self.log_path.open("ab") as log:
            log.write(f"--- start {time.strftime('%H:%M:%S')}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                in_namespace(self.namespace, self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **self.env},
            )

    def wait_ready(self) -> float:
        """Wait for the readiness condition; return seconds since launch."""
        if self.ready is not None:
            self._wait_ready()
        self.startup_seconds = time.monotonic() - self._launched_at
        return self.startup_seconds

    def _wait_ready(self) -> None:
        ready = self.ready
        assert ready is not None

        def up_or_dead() -> bool:
            if not self.running:
                assert self.process is not None
                raise LabError(
                    f"{self.name} exited (rc={self.process.returncode}) before it was ready; "
                    f"log {self.log_path}:\n{tail(self.log_path)}"
                )
            return ready()

        try:
            wait_until(up_or_dead, self.ready_timeout, f"{self.name} to be ready",
                       on_timeout=lambda: f"log {self.log_path}:\n{tail(self.log_path)}")
        except LabError:
            self.stop(signal.SIGKILL)
            raise

    def send_signal(self, signum: int) -> None:
        """Send a signal to the daemon's whole process group."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 5.0) -> None:
        """Stop (gracefully by default); escalate to SIGKILL after `timeout`."""
        if self.process is None:
            return
        self.send_signal(signum)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.send_signal(signal.SIGKILL)
            self.process.wait(5)
        # The group may still hold children that outlived the leader.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def wait_exit(self, timeout: float) -> int:
        """Wait for the daemon to end on its own; return its exit status."""
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired as error:
            raise LabError(f"{self.name} still running after {timeout}s") from error

    def restart(self) -> float:
        self.stop()
        return self.start()

    def log_tail(self, lines: int = 25) -> str:
        return tail(self.log_path, lines)
