"""The uplink factory's housekeeping: finding a pppd left behind by a crashed daemon."""

from __future__ import annotations

from pathlib import Path

from router.uplink.factory import leftover_pppds
from router.uplink.ppp import pppd_arguments


def fake_process(proc: Path, pid: int, argv: list[str]) -> None:
    (proc / str(pid)).mkdir(parents=True)
    (proc / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")


def test_finds_only_the_pppd_of_this_uplink(tmp_path: Path) -> None:
    ours = pppd_arguments("/dev/ttyUSB2", "cell", 0, tmp_path / "chat")
    fake_process(tmp_path, 101, ours)
    fake_process(tmp_path, 102, pppd_arguments("/dev/ttyUSB3", "cell2", 1, tmp_path / "chat"))
    fake_process(tmp_path, 103, ["/usr/sbin/pppd", "/dev/ttyUSB2", "linkname", "other"])
    fake_process(tmp_path, 104, ["python3", "/dev/ttyUSB2", "linkname", "cell"])
    (tmp_path / "self").mkdir()
    (tmp_path / "105").mkdir()  # exited between the listing and the read: no cmdline
    assert leftover_pppds("/dev/ttyUSB2", "cell", tmp_path) == [101]
    assert leftover_pppds("/dev/ttyUSB9", "cell", tmp_path) == []
