"""Boot the guest image under QEMU and run a command or tests inside it.

Theory of operation: the guest's PID 1 (qemu/guest/init) mounts three virtio-9p shares the
runner sets up: the repository read-only at /src (so code changes need no image rebuild),
./out/ writable at /out (pcaps, junit, screenshots), and a per-run control directory at /job.
It runs /job/cmd, writes the exit status to /job/rc and ends the VM. The runner streams the
guest console live and returns the status from /job/rc; no status file means the guest died.

CLI (``python3 -m qemu.run``)::

    --cmd 'shell command'        run it inside as root (cwd /src, PYTHONPATH=/src)
    --tests PATH [pytest args]   run python3 -m pytest PATH inside
    --shell                      interactive root shell on the console (exit or Ctrl-D ends it)
    --forward 8080:80            host TCP 127.0.0.1:8080 -> guest 10.0.2.15:80 (repeatable)

Library::

    with boot(BootConfig(forwards=[Forward(8080, 80)])) as guest:
        guest.run("ip -br link").check()
        guest.run("setsid lab-up >/tmp/lab.log 2>&1 &")   # keeps running after run() returns

Exit statuses of the CLI: the guest command's own, or 124 (timeout), 125 (guest ended without
a status: boot failure, kernel panic, crash), 126 (the image could not be built).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import selectors
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO / "qemu" / "build-image.sh"
QBOOT = Path("/usr/share/qemu/qboot.rom")
AGENT_PORT_NAME = "mr.agent"
EXIT_TIMEOUT = 124
EXIT_GUEST_DIED = 125
EXIT_NO_IMAGE = 126
# With PVH + qboot the first console line appears in ~4 s under TCG (more on a loaded host);
# a guest that printed nothing after this long is not booting that way, so the runner tries
# the next way (bzImage; TCG after KVM). KVM boots in ~1 s when it works at all.
FIRST_OUTPUT_DEADLINE = 60.0
KVM_FIRST_OUTPUT_DEADLINE = 20.0
# qemu/guest/init prints this once the guest can run the job. A KVM boot counts only once it
# got this far: on these machines KVM may also start and then die with an emulation failure.
READY_MARKER = b"qemu-init: ready"


class RunnerError(RuntimeError):
    """The runner could not boot the guest or lost it (not a failure of the guest command)."""


@dataclass(frozen=True, slots=True)
class Forward:
    """A host TCP port forwarded to a guest port (QEMU user networking hostfwd)."""

    host_port: int
    guest_port: int
    host_address: str = "127.0.0.1"

    @classmethod
    def parse(cls, text: str) -> Forward:
        """Parse ``HOSTPORT:GUESTPORT`` or ``HOSTADDR:HOSTPORT:GUESTPORT``."""
        parts = text.split(":")
        try:
            if len(parts) == 2:
                return cls(int(parts[0]), int(parts[1]))
            if len(parts) == 3:
                return cls(int(parts[1]), int(parts[2]), parts[0])
        except ValueError:
            pass
        raise ValueError(
            f"--forward expects HOSTPORT:GUESTPORT or ADDR:HOSTPORT:GUESTPORT, got {text!r}"
        )

    def hostfwd(self) -> str:
        return f"hostfwd=tcp:{self.host_address}:{self.host_port}-:{self.guest_port}"


@dataclass(frozen=True, slots=True)
class Image:
    """A built image directory (see qemu/build-image.sh for what is in it)."""

    directory: Path

    @property
    def disk(self) -> Path:
        return self.directory / "root.img"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.cpio"

    @property
    def vmlinux(self) -> Path | None:
        path = self.directory / "vmlinux"
        return path if path.exists() and QBOOT.exists() else None

    @property
    def bzimage(self) -> Path:
        return self.directory / "vmlinuz"


@dataclass(slots=True)
class BootConfig:
    """How to boot the guest. Defaults suit the test lab under TCG on two cores."""

    memory_mib: int = 512
    cpus: int = 2
    # auto (default): KVM if /dev/kvm opens and KVM has not failed on this host before, else
    # TCG; a KVM boot that shows no console output is recorded (kvm_verdict_path) and TCG
    # takes over, so only the first run on a machine pays for the try. KVM fails on these
    # machines (QEMU aborts "failed to set MSR", or the guest hangs). tcg: TCG only; kvm: KVM only.
    accel: str = os.environ.get("MOBILE_ROUTER_ACCEL", "auto")
    kernel: str = "auto"  # auto (PVH vmlinux, bzImage on failure) | pvh | bzimage
    forwards: list[Forward] = field(default_factory=list)
    out_dir: Path = REPO / "out"
    verbose: bool = False  # kernel boot messages on the console
    extra_cmdline: str = ""
    image_dir: Path | None = None  # None: build or reuse the cached image
    interactive: bool = False  # the host terminal drives the guest console (--shell)


def build_image() -> Image:
    """Build the image if needed (cached by content hash) and return it."""
    result = subprocess.run([str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise RunnerError(f"{BUILD_SCRIPT} failed with status {result.returncode}")
    return Image(Path(lines[-1]))


@dataclass(frozen=True, slots=True)
class Attempt:
    """One way to boot: accelerator and kernel entry."""

    kvm: bool
    pvh: bool

    def describe(self) -> str:
        return f"{'KVM' if self.kvm else 'TCG'} + {'PVH vmlinux' if self.pvh else 'bzImage'}"


def attempts(config: BootConfig, image: Image) -> list[Attempt]:
    """Ways to boot, best first; the runner moves on when one shows no console output."""
    kernels = {"auto": [True, False], "pvh": [True], "bzimage": [False]}[config.kernel]
    if image.vmlinux is None:
        kernels = [False]
    tcg = [Attempt(False, pvh) for pvh in kernels]
    kvm = [Attempt(True, pvh) for pvh in kernels]
    if config.accel == "auto":
        # A KVM that fails here fails with either kernel: one try, then TCG.
        return [kvm[0], *tcg] if kvm_usable() and not kvm_failed_before() else tcg
    return kvm if config.accel == "kvm" else tcg


def kvm_usable() -> bool:
    """/dev/kvm opens read-write (necessary, not sufficient: see BootConfig.accel)."""
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
    except OSError:
        return False
    return True


def kvm_verdict_path() -> Path:
    """Where a failed KVM boot is remembered (beside the image cache, outside the clone)."""
    cache = os.environ.get("MOBILE_ROUTER_CACHE", "/var/cache/mobile-router")
    return Path(cache) / "kvm-verdict"


def host_key() -> str:
    """What a KVM verdict holds for: this host kernel and this QEMU binary. A kernel or QEMU
    upgrade may fix KVM, so either one changing makes the verdict stale."""
    qemu = shutil.which("qemu-system-x86_64") or "-"
    try:
        stat = os.stat(qemu)
        binary = f"{qemu}:{stat.st_size}:{int(stat.st_mtime)}"
    except OSError:
        binary = qemu
    return f"{os.uname().release} {binary}"


def kvm_failed_before() -> bool:
    """A KVM boot already failed on this host (same kernel, same QEMU)."""
    try:
        lines = kvm_verdict_path().read_text().splitlines()
    except OSError:
        return False
    return any(line.startswith("fail ") and line[5:] == host_key() for line in lines)


def record_kvm_failure() -> None:
    """Remember that KVM showed nothing here, so later runs go straight to TCG."""
    path = kvm_verdict_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"fail {host_key()}\n")
    except OSError as error:  # a read-only cache costs one KVM try per run, nothing more
        print(f"qemu.run: cannot record the KVM verdict in {path}: {error}", file=sys.stderr)


def qemu_command(
    image: Image, config: BootConfig, job_dir: Path, attempt: Attempt, agent_socket: Path | None
) -> list[str]:
    """The full QEMU command line for one boot."""
    cmdline = ["console=ttyS0", "panic=-1", "mitigations=off", "i8042.noaux", "i8042.nopnp"]
    cmdline += [] if config.verbose else ["quiet", "loglevel=3"]
    cmdline += shlex.split(config.extra_cmdline)
    kernel = image.vmlinux if attempt.pvh else image.bzimage
    assert kernel is not None
    accel = ["-accel", "tcg,thread=multi", "-cpu", "max"]
    if attempt.kvm:
        accel = ["-accel", "kvm", "-cpu", "host"]
    netdev = ",".join(["user,id=net0", *(forward.hostfwd() for forward in config.forwards)])
    command = [
        "qemu-system-x86_64",
        "-nodefaults", "-no-user-config", "-no-reboot",
        "-machine", "pc", *accel,
        "-smp", str(config.cpus), "-m", f"{config.memory_mib}M",
        "-display", "none", "-monitor", "none",
        # signal=off: Ctrl-C in --shell goes to the guest, not to QEMU.
        "-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console",
        *(["-bios", str(QBOOT)] if attempt.pvh else []),
        "-kernel", str(kernel), "-initrd", str(image.initrd),
        "-append", " ".join(cmdline),
        "-drive", f"file={image.disk},format=raw,if=virtio,snapshot=on",
        "-netdev", netdev, "-device", "virtio-net-pci,netdev=net0",
        *_share("src", REPO, readonly=True),
        *_share("out", config.out_dir, readonly=False),
        *_share("job", job_dir, readonly=False),
    ]  # fmt: skip
    if agent_socket is not None:
        command += [
            "-chardev", f"socket,id=agent,path={agent_socket},server=on,wait=off",
            "-device", "virtio-serial-pci",
            "-device", f"virtserialport,chardev=agent,name={AGENT_PORT_NAME}",
        ]  # fmt: skip
    return command


def _share(tag: str, path: Path, readonly: bool) -> list[str]:
    # security_model=none: the guest's root writes files as the host user running QEMU,
    # which is what the host wants to read back in ./out/.
    options = f"local,id={tag},path={path},security_model=none"
    if readonly:
        options += ",readonly=on"
    return ["-fsdev", options, "-device", f"virtio-9p-pci,fsdev={tag},mount_tag={tag}"]


class ConsoleStream:
    """Copies the guest console to a sink, without carriage returns, on a thread."""

    def __init__(
        self, source: IO[bytes], sink: Callable[[bytes], None], keep_cr: bool = False
    ) -> None:
        self._source = source
        self._sink = sink
        self._keep_cr = keep_cr  # a terminal needs them; logs and pipes do not
        self.first_output = threading.Event()
        self.ready = threading.Event()  # the guest init printed READY_MARKER
        self._tail = b""
        self._thread = threading.Thread(target=self._pump, name="console", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        fd = self._source.fileno()
        while chunk := os.read(fd, 65536):
            self.first_output.set()
            if not self.ready.is_set():
                seen = self._tail + chunk  # the marker may straddle two reads
                if READY_MARKER in seen:
                    self.ready.set()
                self._tail = seen[-len(READY_MARKER) :]
            self._sink(chunk if self._keep_cr else chunk.replace(b"\r", b""))

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)


def write_stdout(chunk: bytes) -> None:
    sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()


@dataclass(slots=True)
class Boot:
    """One QEMU process with its job directory; stop() always cleans up."""

    process: subprocess.Popen[bytes]
    console: ConsoleStream
    job_dir: Path
    started: float

    def wait(self, timeout: float | None) -> bool:
        """Wait for QEMU to exit; False on timeout."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        self.console.join(5)
        return True

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.console.join(5)

    def exit_status(self) -> int | None:
        """The guest command's status from /job/rc, None if the guest never wrote one."""
        try:
            return int((self.job_dir / "rc").read_text().strip())
        except (OSError, ValueError):
            return None


def start(
    config: BootConfig,
    job_dir: Path,
    sink: Callable[[bytes], None],
    agent_socket: Path | None = None,
) -> Boot:
    """Boot the guest on the job in job_dir, trying the ways of attempts() in turn."""
    image = Image(config.image_dir) if config.image_dir else build_image()
    missing = [path.name for path in (image.disk, image.initrd, image.bzimage) if not path.exists()]
    if missing:
        raise RunnerError(
            f"image {image.directory} lacks {', '.join(missing)}: use qemu/build-image.sh"
        )
    config.out_dir.mkdir(parents=True, exist_ok=True)
    if shutil.which("qemu-system-x86_64") is None:
        raise RunnerError("qemu-system-x86_64 not found: run scripts/deps.sh qemu")
    ways = attempts(config, image)
    if config.accel == "auto" and not ways[0].kvm and kvm_failed_before():
        print(f"qemu.run: KVM failed on this host before ({kvm_verdict_path()}): TCG",
              file=sys.stderr)  # fmt: skip
    for index, attempt in enumerate(ways):
        boot = _spawn(image, config, job_dir, attempt, sink, agent_socket)
        deadline = KVM_FIRST_OUTPUT_DEADLINE if attempt.kvm else FIRST_OUTPUT_DEADLINE
        if index == len(ways) - 1 or _shows_output(boot, deadline, attempt.kvm):
            return boot
        boot.stop()
        if attempt.kvm and not ways[index + 1].kvm:
            record_kvm_failure()
        print(f"qemu.run: {attempt.describe()} did not boot; "
              f"trying {ways[index + 1].describe()}", file=sys.stderr)  # fmt: skip
    raise AssertionError("unreachable")


def _shows_output(boot: Boot, deadline: float, until_ready: bool = False) -> bool:
    """Did the guest print anything (until_ready: the ready marker) before the deadline?
    QEMU refusing the kernel (no PVH note) or KVM exits at once without output, so an exit
    ends the wait early."""
    seen = boot.console.ready if until_ready else boot.console.first_output
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if seen.wait(0.1):
            return True
        if boot.process.poll() is not None:
            boot.console.join(1)
            return seen.is_set()
    return False


def _spawn(
    image: Image,
    config: BootConfig,
    job_dir: Path,
    attempt: Attempt,
    sink: Callable[[bytes], None],
    agent_socket: Path | None,
) -> Boot:
    command = qemu_command(image, config, job_dir, attempt, agent_socket)
    if config.verbose:
        print("qemu.run: " + shlex.join(command), file=sys.stderr)
    stdin = None if config.interactive else subprocess.DEVNULL
    process = subprocess.Popen(command, stdin=stdin, stdout=subprocess.PIPE)
    assert process.stdout is not None
    console = ConsoleStream(process.stdout, sink, keep_cr=config.interactive)
    return Boot(process, console, job_dir, time.monotonic())


def run_script(script: str, config: BootConfig, timeout: float) -> int:
    """Boot, run a shell script inside as root, return its exit status (or 124/125)."""
    with tempfile.TemporaryDirectory(prefix="mr-job-") as tmp:
        job_dir = Path(tmp)
        (job_dir / "cmd").write_text(script + "\n")
        boot = start(config, job_dir, write_stdout)
        try:
            finished = boot.wait(timeout)
        finally:
            boot.stop()
        elapsed = time.monotonic() - boot.started
        if not finished:
            print(f"qemu.run: TIMEOUT after {timeout:.0f} s: guest killed", file=sys.stderr)
            return EXIT_TIMEOUT
        status = boot.exit_status()
        if status is None:
            print(f"qemu.run: guest ended after {elapsed:.1f} s WITHOUT an exit status "
                  f"(boot failure or crash; QEMU status {boot.process.returncode})",
                  file=sys.stderr)  # fmt: skip
            return EXIT_GUEST_DIED
        _report_memory(job_dir)
        print(f"qemu.run: guest command exited {status} after {elapsed:.1f} s", file=sys.stderr)
        return status


def _report_memory(job_dir: Path) -> None:
    """One line on how much guest memory the run used (MemTotal - MemAvailable at the end)."""
    with contextlib.suppress(OSError, ValueError, KeyError):
        fields = dict(line.split(":", 1) for line in (job_dir / "meminfo").read_text().splitlines())
        total, available = (
            int(fields[key].split()[0]) // 1024 for key in ("MemTotal", "MemAvailable")
        )
        print(
            f"qemu.run: guest memory used {total - available} MiB of {total} MiB", file=sys.stderr
        )


# --- library mode: a running guest with a command agent --------------------------------------


@dataclass(frozen=True, slots=True)
class Completed:
    """Result of Guest.run()."""

    command: str
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> Completed:
        if self.returncode != 0:
            raise RunnerError(
                f"guest command failed ({self.returncode}): {self.command}\n{self.stdout}{self.stderr}"
            )
        return self


class Guest:
    """A booted guest running qemu/guest/agent.py; run() executes shell commands in it."""

    def __init__(self, boot: Boot, channel: socket.socket) -> None:
        self.boot = boot
        self._channel = channel
        self._reader = channel.makefile("rb")
        self._lock = threading.Lock()

    def run(self, command: str, timeout: float = 600.0) -> Completed:
        """Run a shell command as root in the guest (cwd /src). Background jobs keep running."""
        request = json.dumps({"cmd": command, "timeout": timeout}) + "\n"
        with self._lock:
            self._channel.sendall(request.encode())
            self._channel.settimeout(timeout + 30)
            line = self._reader.readline()
        if not line:
            raise RunnerError(f"guest agent gone while running: {command}")
        reply = json.loads(line)
        return Completed(command, int(reply["rc"]), reply["stdout"], reply["stderr"])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._channel.sendall(b'{"exit": 0}\n')
        if not self.boot.wait(30):
            self.boot.stop()
        self._channel.close()


@contextlib.contextmanager
def boot(
    config: BootConfig | None = None,
    sink: Callable[[bytes], None] = write_stdout,
    ready_timeout: float = 180.0,
) -> Iterator[Guest]:
    """Boot the guest with a command agent; yields a Guest; powers it off on exit."""
    config = config or BootConfig()
    with tempfile.TemporaryDirectory(prefix="mr-job-") as tmp:
        job_dir = Path(tmp)
        agent_socket = job_dir / "agent.sock"
        (job_dir / "cmd").write_text("exec python3 /src/qemu/guest/agent.py\n")
        running = start(config, job_dir, sink, agent_socket)
        try:
            channel = _connect_agent(running, agent_socket, ready_timeout)
            guest = Guest(running, channel)
            try:
                yield guest
            finally:
                guest.close()
        finally:
            running.stop()


def _connect_agent(running: Boot, path: Path, timeout: float) -> socket.socket:
    """Connect to the agent's virtio-serial socket and wait for its hello line."""
    deadline = time.monotonic() + timeout
    channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    while True:
        try:
            channel.connect(str(path))
            break
        except OSError:
            if running.process.poll() is not None or time.monotonic() > deadline:
                raise RunnerError("QEMU exited before the agent socket appeared") from None
            time.sleep(0.05)
    selector = selectors.DefaultSelector()
    selector.register(channel, selectors.EVENT_READ)
    hello = b""
    while not hello.endswith(b"\n"):
        if running.process.poll() is not None:
            raise RunnerError("guest ended before its agent said hello (see console)")
        if time.monotonic() > deadline:
            raise RunnerError(f"guest agent not ready after {timeout:.0f} s")
        if selector.select(0.5):
            data = channel.recv(1)
            if not data:
                raise RunnerError("agent channel closed before hello")
            hello += data
    selector.close()
    return channel


# --- CLI ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    # allow_abbrev=False: pytest options after --tests must not be read as abbreviations of ours.
    parser = argparse.ArgumentParser(
        prog="python3 -m qemu.run", description=__doc__.split("\n")[0], allow_abbrev=False
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--cmd", help="shell command to run inside the guest as root")
    mode.add_argument(
        "--tests", metavar="PATH", help="pytest path inside the repo; extra args follow"
    )
    mode.add_argument("--shell", action="store_true", help="interactive root shell in the guest")
    parser.add_argument(
        "--timeout", type=float, default=1800, help="seconds before the guest is killed"
    )
    parser.add_argument("--memory", type=int, default=512, help="guest memory in MiB (default 512)")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--accel", choices=["tcg", "auto", "kvm"], default=BootConfig().accel,
                        help="auto (default; env MOBILE_ROUTER_ACCEL): KVM if it boots here, else "
                        "TCG, a KVM failure is remembered per host kernel and QEMU; tcg; kvm")  # fmt: skip
    parser.add_argument("--kernel", choices=["auto", "pvh", "bzimage"], default="auto")
    parser.add_argument("--forward", action="append", type=Forward.parse, default=[],
                        metavar="[ADDR:]HOSTPORT:GUESTPORT")  # fmt: skip
    parser.add_argument("--out", type=Path, default=REPO / "out", help="host dir shared as /out")
    parser.add_argument("--image", type=Path, help="use this image dir instead of building")
    parser.add_argument("--verbose", action="store_true", help="kernel messages, QEMU command line")
    return parser.parse_known_args(argv)


# The job's stdin is /dev/null; a shell needs the console as its controlling terminal.
SHELL_SCRIPT = """stty -F /dev/ttyS0 sane 2>/dev/null
export TERM=linux
exec setsid --ctty --wait bash -i <>/dev/ttyS0 >&0 2>&1"""


def script_for(args: argparse.Namespace, extra: list[str]) -> str:
    if args.cmd is not None or args.shell:
        if extra:
            raise SystemExit(f"qemu.run: unexpected arguments: {extra}")
        return SHELL_SCRIPT if args.shell else str(args.cmd)
    # No cache provider: /src is read-only. Results that must survive go to /out.
    pytest = ["python3", "-m", "pytest", "-p", "no:cacheprovider", str(args.tests), *extra]
    return "exec " + shlex.join(pytest)


def main(argv: Sequence[str] | None = None) -> int:
    args, extra = parse_args(sys.argv[1:] if argv is None else argv)
    config = BootConfig(
        memory_mib=args.memory,
        cpus=args.cpus,
        accel=args.accel,
        kernel=args.kernel,
        forwards=list(args.forward),
        out_dir=args.out.resolve(),
        verbose=args.verbose,
        image_dir=args.image,
        interactive=bool(args.shell),
    )
    try:
        return run_script(script_for(args, extra), config, args.timeout)
    except RunnerError as error:
        print(f"qemu.run: {error}", file=sys.stderr)
        return EXIT_NO_IMAGE


if __name__ == "__main__":
    sys.exit(main())
