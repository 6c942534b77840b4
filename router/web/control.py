"""The local control socket: newline-delimited JSON over a root-only UNIX stream socket.

Protocol (one JSON object per line each way; a connection may carry several requests):

    {"cmd": "status"}                          -> {"ok": true, "status": {...SCHEMA.md...}}
    {"cmd": "handovers"}                       -> {"ok": true, "handovers": [...]}
    {"cmd": "uplink_prefer", "name": "cell"}   -> {"ok": true, "result": {...}}
    {"cmd": "reconnect"}                       -> {"ok": true, "result": {...}}
    anything wrong                             -> {"ok": false, "error": "what was wrong"}

Access: the socket file is created with mode 0600 (bound under a 0177 umask, so there is no
window in which it is wider), in a directory created 0700 if missing; each peer's credentials
(SO_PEERCRED) must also be root or the daemon's own user. A stale socket file from a crashed
daemon is replaced; a live one (another daemon answering) is an error, and a non-socket file
at the path is never deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
import struct
from pathlib import Path
from typing import Any

from router.web.schema import normalise, sanitise
from router.web.source import StatusSource

log = logging.getLogger(__name__)

DEFAULT_SOCKET = "/run/router/control.sock"
MAX_LINE = 65536
IDLE_TIMEOUT_S = 60.0
ACTION_TIMEOUT_S = 15.0
COMMANDS = ("status", "handovers", "uplink_prefer", "reconnect")


def _encode(value: dict[str, Any]) -> bytes:
    return json.dumps(sanitise(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def _peer_uid(sock: socket.socket | None) -> int | None:
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", raw)
    return int(uid)


async def handle_request(source: StatusSource, request: Any) -> dict[str, Any]:
    """One request object -> one response object. Never raises for bad input."""
    if not isinstance(request, dict):
        return {"ok": False, "error": "request must be a JSON object with a 'cmd'"}
    cmd = request.get("cmd")
    if cmd not in COMMANDS:
        return {"ok": False, "error": f"unknown cmd {cmd!r}; expected one of {', '.join(COMMANDS)}"}
    try:
        if cmd in ("status", "handovers"):
            snapshot = source.status()
            if not isinstance(snapshot, dict):
                raise TypeError(f"status() returned {type(snapshot).__name__}")
            status = normalise(snapshot)
            if cmd == "status":
                return {"ok": True, "status": status}
            return {"ok": True, "handovers": status.get("handovers") or []}
        args = {k: v for k, v in request.items() if k != "cmd"}
        result = await asyncio.wait_for(source.action(cmd, args), ACTION_TIMEOUT_S)
        return {"ok": True, "result": result}
    except ValueError as exc:
        return {"ok": False, "error": str(exc)}
    except TimeoutError:
        return {"ok": False, "error": "the daemon did not finish the action in time"}
    except Exception:
        log.exception("control: %s failed", cmd)
        return {"ok": False, "error": f"{cmd} failed inside the daemon (see its log)"}


def _prepare_path(path: Path) -> None:
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise RuntimeError(f"control socket path {path} exists and is not a socket; not touching it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(str(path))
    except OSError:
        path.unlink()  # stale: left by a daemon that died
        return
    finally:
        probe.close()
    raise RuntimeError(f"another daemon is already answering on {path}")


def bind_private_socket(path: Path) -> socket.socket:
    """A listening UNIX socket at ``path`` that only its owner (root) can connect to."""
    _prepare_path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    sock.listen(16)
    sock.setblocking(False)
    return sock


class ControlServer:
    def __init__(self, source: StatusSource, path: str | os.PathLike[str] = DEFAULT_SOCKET) -> None:
        self.source = source
        self.path = Path(path)
        self._server: asyncio.Server | None = None
        self._inode: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        sock = bind_private_socket(self.path)
        self._inode = self.path.stat().st_ino
        self._server = await asyncio.start_unix_server(self._accept, sock=sock, limit=MAX_LINE)
        log.info("control: listening on %s", self.path)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._connection(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=1.0)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None
        # Remove the socket file only if it is still ours (a successor may have replaced it).
        with contextlib.suppress(OSError):
            if self._inode is not None and self.path.stat().st_ino == self._inode:
                self.path.unlink()

    async def __aenter__(self) -> ControlServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            uid = _peer_uid(writer.get_extra_info("socket"))
            if uid is not None and uid not in (0, os.geteuid()):
                log.warning("control: refused peer uid %d", uid)
                writer.write(_encode({"ok": False, "error": "permission denied"}))
                await writer.drain()
                return
            while True:
                try:
                    line = await asyncio.wait_for(reader.readuntil(b"\n"), IDLE_TIMEOUT_S)
                except (asyncio.IncompleteReadError, TimeoutError):
                    return
                except asyncio.LimitOverrunError:
                    writer.write(_encode({"ok": False, "error": f"request longer than {MAX_LINE} bytes"}))
                    await writer.drain()
                    return
                if not line.strip():
                    continue
                try:
                    request = json.loads(line)
                except (UnicodeDecodeError, ValueError):
                    response: dict[str, Any] = {"ok": False, "error": "request is not valid JSON"}
                else:
                    response = await handle_request(self.source, request)
                writer.write(_encode(response))
                await writer.drain()
        except (ConnectionError, OSError):
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("control: connection failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)


async def start_control_server(source: StatusSource,
                               path: str | os.PathLike[str] = DEFAULT_SOCKET) -> ControlServer:
    """Listen on the control socket (mode 0600) until ``close()``."""
    server = ControlServer(source, path)
    await server.start()
    return server
