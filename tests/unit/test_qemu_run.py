"""The QEMU runner's pure parts: port forwards, boot attempts and the remembered KVM verdict,
the QEMU command line. No QEMU is started here (tests/qemu boots the real guest)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qemu import run


@pytest.fixture
def image(tmp_path: Path) -> run.Image:
    for name in ("root.img", "initrd.cpio", "vmlinuz"):
        (tmp_path / name).write_bytes(b"")
    return run.Image(tmp_path)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("MOBILE_ROUTER_CACHE", str(directory))
    return directory


def describe(ways: list[run.Attempt]) -> list[str]:
    return [way.describe() for way in ways]


def test_forward_parse() -> None:
    assert run.Forward.parse("8080:80") == run.Forward(8080, 80)
    assert run.Forward.parse("0.0.0.0:8080:80") == run.Forward(8080, 80, "0.0.0.0")
    assert run.Forward(8080, 80).hostfwd() == "hostfwd=tcp:127.0.0.1:8080-:80"
    for bad in ("8080", "a:80", "1:2:3:4"):
        with pytest.raises(ValueError, match="--forward expects"):
            run.Forward.parse(bad)


def test_default_accel_detects_kvm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOBILE_ROUTER_ACCEL", raising=False)
    args, _ = run.parse_args(["--cmd", "true"])
    assert args.accel == "auto"


def test_auto_tries_kvm_once_then_tcg(
    image: run.Image, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run, "kvm_usable", lambda: True)
    ways = run.attempts(run.BootConfig(accel="auto"), image)
    assert describe(ways) == ["KVM + bzImage", "TCG + bzImage"]


def test_auto_without_dev_kvm_is_tcg(
    image: run.Image, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run, "kvm_usable", lambda: False)
    assert describe(run.attempts(run.BootConfig(accel="auto"), image)) == ["TCG + bzImage"]


def test_kvm_failure_is_remembered_per_host(
    image: run.Image, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run, "kvm_usable", lambda: True)
    monkeypatch.setattr(run, "host_key", lambda: "6.1.0 qemu:1:2")
    assert not run.kvm_failed_before()
    run.record_kvm_failure()
    assert (cache / "kvm-verdict").read_text() == "fail 6.1.0 qemu:1:2\n"
    assert run.kvm_failed_before()
    assert describe(run.attempts(run.BootConfig(accel="auto"), image)) == ["TCG + bzImage"]
    # An explicit --accel kvm still tries KVM.
    assert describe(run.attempts(run.BootConfig(accel="kvm"), image)) == ["KVM + bzImage"]
    # Another host kernel or QEMU: the verdict is stale, KVM is tried again.
    monkeypatch.setattr(run, "host_key", lambda: "6.12.0 qemu:1:2")
    assert not run.kvm_failed_before()
    assert describe(run.attempts(run.BootConfig(accel="auto"), image))[0] == "KVM + bzImage"


def test_start_records_a_silent_kvm_boot(
    image: run.Image, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The boot loop: KVM shows nothing -> stopped, verdict written, TCG returned."""
    monkeypatch.setattr(run, "kvm_usable", lambda: True)
    monkeypatch.setattr(run.shutil, "which", lambda name: f"/usr/bin/{name}")
    spawned: list[run.Attempt] = []
    stopped: list[run.Attempt] = []

    class FakeBoot:
        def __init__(self, attempt: run.Attempt) -> None:
            self.attempt = attempt

        def stop(self) -> None:
            stopped.append(self.attempt)

    def fake_spawn(*args: object) -> FakeBoot:
        attempt = args[3]
        assert isinstance(attempt, run.Attempt)
        spawned.append(attempt)
        return FakeBoot(attempt)

    monkeypatch.setattr(run, "_spawn", fake_spawn)
    monkeypatch.setattr(run, "_shows_output", lambda boot, deadline, ready: not boot.attempt.kvm)
    config = run.BootConfig(accel="auto", image_dir=image.directory, out_dir=tmp_path / "out")
    boot = run.start(config, tmp_path, lambda chunk: None)
    assert describe(spawned) == ["KVM + bzImage", "TCG + bzImage"]
    assert describe(stopped) == ["KVM + bzImage"]
    assert isinstance(boot, FakeBoot) and not boot.attempt.kvm
    assert run.kvm_failed_before()
    # The next run goes straight to TCG.
    spawned.clear()
    run.start(config, tmp_path, lambda chunk: None)
    assert describe(spawned) == ["TCG + bzImage"]


def test_pvh_first_when_the_image_has_vmlinux(
    image: run.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    (image.directory / "vmlinux").write_bytes(b"")
    monkeypatch.setattr(run, "QBOOT", image.directory / "vmlinuz")  # any existing file
    ways = run.attempts(run.BootConfig(accel="tcg"), image)
    assert describe(ways) == ["TCG + PVH vmlinux", "TCG + bzImage"]


def test_qemu_command_shares_and_snapshot(image: run.Image, tmp_path: Path) -> None:
    config = run.BootConfig(accel="tcg", forwards=[run.Forward(8080, 80)], out_dir=tmp_path)
    command = run.qemu_command(image, config, tmp_path / "job", run.Attempt(False, False), None)
    text = " ".join(command)
    assert command[command.index("-accel") + 1].startswith("tcg")
    assert f"file={image.disk},format=raw,if=virtio,snapshot=on" in command
    assert "hostfwd=tcp:127.0.0.1:8080-:80" in text
    for tag in ("src", "out", "job"):
        assert f"mount_tag={tag}" in text
    assert f"path={run.REPO},security_model=none,readonly=on" in text


def test_console_sees_the_ready_marker_across_reads() -> None:
    """A KVM boot counts once the guest init says it is ready, even when the marker arrives
    split over two reads; plain output is not enough."""
    import os

    read_fd, write_fd = os.pipe()
    chunks: list[bytes] = []
    with os.fdopen(read_fd, "rb", buffering=0) as source:
        console = run.ConsoleStream(source, chunks.append)
        os.write(write_fd, b"[    0.9] kernel says hello\r\n")
        assert console.first_output.wait(5)
        assert not console.ready.is_set()
        os.write(write_fd, b"qemu-init: rea")
        os.write(write_fd, b"dy after 1.0 s\n")
        assert console.ready.wait(5)
        os.close(write_fd)
        console.join(5)
    assert b"".join(chunks) == b"[    0.9] kernel says hello\nqemu-init: ready after 1.0 s\n"
