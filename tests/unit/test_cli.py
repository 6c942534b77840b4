"""The control socket (router/web/control.py) and the CLI client (router/cli.py), end to end."""

from __future__ import annotations

import io
import json
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from router import cli
from router.web.control import ControlServer, start_control_server
from router.web.schema import check_status
from router.web.source import FakeStatusSource
from tests.unit.test_web_http import NOW, LoopThread


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.stop()


@pytest.fixture
def daemon(loop: LoopThread, tmp_path: Path) -> Iterator[tuple[FakeStatusSource, Path]]:
    source = FakeStatusSource(clock=lambda: NOW)
    path = tmp_path / "run" / "router" / "control.sock"
    server = loop.run(start_control_server(source, path))
    yield source, path
    loop.run(server.close())


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_socket_is_root_only(daemon: tuple[FakeStatusSource, Path]) -> None:
    _, path = daemon
    mode = path.stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_status_json_round_trip(daemon: tuple[FakeStatusSource, Path]) -> None:
    source, path = daemon
    code, out, err = run_cli("status", "--json", "--socket", str(path))
    assert (code, err) == (0, "")
    status = json.loads(out)
    assert check_status(status) == []
    assert status == json.loads(json.dumps(source.status()))


def test_status_human_summary(daemon: tuple[FakeStatusSource, Path]) -> None:
    source, path = daemon
    source.set_situation("outside")
    code, out, _ = run_cli("--socket", str(path), "status")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("situation  outside for 3m 12s  (cell 100.64.0.7 outside every inside prefix")
    header = next(line for line in lines if line.startswith("UPLINK"))
    assert header.split() == ["UPLINK", "KIND", "IFACE", "STATE", "ROLE", "SIGNAL", "RTT", "LOSS", "SCORE",
                              "METERED", "ADDRESS", "TX/RX"]
    cell = next(line for line in lines if line.startswith("cell "))
    assert cell.split()[:5] == ["cell", "3g", "ppp0", "up", "active"]
    assert "112 ms" in cell and "-87 dBm" in cell and "6/10" in cell
    assert any(line.startswith("inner ") and "10.99.0.3" in line for line in lines)
    assert any(line.startswith("vpn        up, V 10.99.0.3") for line in lines)


def test_handovers(daemon: tuple[FakeStatusSource, Path]) -> None:
    source, path = daemon
    code, out, _ = run_cli("handovers", "--socket", str(path))
    assert code == 0
    assert out.splitlines()[0].split()[:4] == ["TIME", "(UTC)", "KIND", "FROM"]
    assert "phases: link 0.0 ms, inner_registered 95 ms, lan_route 180 ms, vpn_down 240 ms" in out
    code, out, _ = run_cli("handovers", "--json", "--socket", str(path))
    assert json.loads(out) == source.status()["handovers"]


def test_actions(daemon: tuple[FakeStatusSource, Path]) -> None:
    source, path = daemon
    assert run_cli("uplink", "prefer", "cell", "--socket", str(path)) == (0, "preferring uplink cell\n", "")
    code, out, err = run_cli("uplink", "prefer", "moon", "--socket", str(path))
    assert code == 1 and out == "" and "unknown uplink 'moon'" in err
    assert run_cli("reconnect", "--socket", str(path))[0] == 0
    assert source.actions == [("uplink_prefer", {"name": "cell"}), ("reconnect", {})]


def test_socket_from_the_environment(daemon: tuple[FakeStatusSource, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    _, path = daemon
    monkeypatch.setenv("ROUTER_CONTROL_SOCKET", str(path))
    assert run_cli("status")[0] == 0


def test_daemon_not_running(tmp_path: Path) -> None:
    code, out, err = run_cli("status", "--socket", str(tmp_path / "missing.sock"))
    assert code == 2 and out == ""
    assert err == f"router: the router daemon is not running (nothing answers on {tmp_path / 'missing.sock'})\n"
    # A stale socket file (daemon crashed): connection refused, same answer.
    stale = tmp_path / "stale.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(stale))
    sock.close()
    code, _, err = run_cli("reconnect", "--socket", str(stale))
    assert code == 2 and "not running" in err


def test_usage_errors_exit_2() -> None:
    assert run_cli()[0] == 2
    assert run_cli("uplink")[0] == 2
    assert run_cli("frobnicate")[0] == 2


def test_control_server_replaces_a_stale_socket_but_not_a_file(loop: LoopThread, tmp_path: Path) -> None:
    stale = tmp_path / "control.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(stale))
    sock.close()
    server = loop.run(start_control_server(FakeStatusSource(clock=lambda: NOW), stale))
    try:
        assert run_cli("status", "--socket", str(stale))[0] == 0
        # A second daemon on the same path is refused while the first one answers.
        with pytest.raises(RuntimeError, match="already answering"):
            loop.run(start_control_server(FakeStatusSource(), stale))
    finally:
        loop.run(server.close())
    assert not stale.exists()  # removed on close
    regular = tmp_path / "not-a-socket"
    regular.write_text("precious")
    with pytest.raises(RuntimeError, match="not a socket"):
        loop.run(start_control_server(FakeStatusSource(), regular))
    assert regular.read_text() == "precious"


def raw_exchange(path: Path, payload: bytes) -> list[dict[str, object]]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return [json.loads(line) for line in data.splitlines()]


def test_protocol_errors_do_not_end_the_conversation(daemon: tuple[FakeStatusSource, Path]) -> None:
    _, path = daemon
    answers = raw_exchange(path, b'not json\n[1,2]\n{"cmd": "rm -rf"}\n\n{"cmd": "uplink_prefer"}\n'
                                 b'\xff\xfe\n{"cmd": "status"}\n')
    assert [a["ok"] for a in answers] == [False, False, False, False, False, True]
    assert answers[0]["error"] == "request is not valid JSON"
    assert "unknown cmd 'rm -rf'" in str(answers[2]["error"])
    assert "needs a 'name'" in str(answers[3]["error"])


def test_an_oversized_request_is_refused(daemon: tuple[FakeStatusSource, Path]) -> None:
    _, path = daemon
    answers = raw_exchange(path, b"{" + b" " * 70000 + b"}\n")
    assert answers == [{"ok": False, "error": "request longer than 65536 bytes"}]


def test_a_failing_source_is_an_error_answer_not_a_crash(loop: LoopThread, tmp_path: Path) -> None:
    class Broken(FakeStatusSource):
        def status(self) -> dict[str, object]:
            raise RuntimeError("torn")

    path = tmp_path / "c.sock"
    server: ControlServer = loop.run(start_control_server(Broken(clock=lambda: NOW), path))
    try:
        code, _, err = run_cli("status", "--socket", str(path))
        assert code == 1 and "status failed inside the daemon" in err
        assert run_cli("reconnect", "--socket", str(path))[0] == 0  # still serving
    finally:
        loop.run(server.close())


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_other_users_cannot_connect(daemon: tuple[FakeStatusSource, Path]) -> None:
    _, path = daemon
    pid = os.fork()
    if pid == 0:  # the child becomes 'nobody' and tries
        try:
            os.setgid(65534)
            os.setuid(65534)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(path))
            os._exit(1)
        except PermissionError:
            os._exit(0)
        except BaseException:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
