"""The local control socket: one JSON request per line in, one JSON reply per line out.

Root only: the socket lives in a 0700 directory, is itself 0600, and each connection's peer
credentials (SO_PEERCRED) are checked, so a mis-set umask cannot open it to other users.
Requests are `{"command": "status"}`; replies are `{"ok": true, "result": ...}` or
`{"ok": false, "error": "..."}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

log = logging.getLogger(__name__)

Handler = Callable[[Mapping[str, object]], Awaitable[object] | object]
MAX_REQUEST = 64 * 1024


class ControlServer:
    """Serves the commands in `handlers` on a UNIX socket."""

    def __init__(self, path: Path, handlers: Mapping[str, Handler], *, allowed_uid: int = 0):
        self.path = path
        self.handlers = handlers
        self.allowed_uid = allowed_uid
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o700)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket of an earlier run; the instance lock guards us
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_REQUEST
            )
        finally:
            os.umask(old_umask)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            sock = writer.get_extra_info("socket")
            if sock is not None and _peer_uid(sock) not in (self.allowed_uid, 0):
                await _reply(writer, {"ok": False, "error": "permission denied: root only"})
                return
            while line := await reader.readline():
                await _reply(writer, await self._dispatch(line))
        except (ConnectionError, asyncio.LimitOverrunError, ValueError) as exc:
            log.debug("control connection dropped: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _dispatch(self, line: bytes) -> dict[str, object]:
        try:
            request = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "request is not JSON"}
        if not isinstance(request, dict) or not isinstance(request.get("command"), str):
            return {"ok": False, "error": 'request must be {"command": NAME, ...}'}
        handler = self.handlers.get(request["command"])
        if handler is None:
            known = ", ".join(sorted(self.handlers))
            return {"ok": False, "error": f"unknown command {request['command']!r} ({known})"}
        try:
            result = handler(request)
            if asyncio.iscoroutine(result):
                result = await result
        except Exception as exc:  # one bad command must not take the daemon down
            log.exception("control command %s failed", request["command"])
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return {"ok": True, "result": result}


async def _reply(writer: asyncio.StreamWriter, message: Mapping[str, object]) -> None:
    writer.write(json.dumps(message, default=str).encode() + b"\n")
    await writer.drain()


def _peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class ControlClientError(RuntimeError):
    """The daemon could not be reached or refused the request."""


def request(path: Path, command: str, timeout: float = 10.0, **params: object) -> object:
    """Send one command to a running daemon and return its result (blocking)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            raise ControlClientError(f"no afbr daemon at {path} (is `afbr run` running?)") from None
        except PermissionError:
            raise ControlClientError(f"{path}: permission denied (root only)") from None
        except OSError as exc:
            raise ControlClientError(f"{path}: {exc.strerror}") from None
        sock.sendall(json.dumps({"command": command, **params}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            data += chunk
    try:
        reply = json.loads(data)
    except ValueError:
        raise ControlClientError(f"{path}: the daemon closed the connection") from None
    if not reply.get("ok"):
        raise ControlClientError(str(reply.get("error")))
    return reply.get("result")
