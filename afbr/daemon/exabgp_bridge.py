"""The process ExaBGP runs as its API process: a pipe between ExaBGP and the afbr daemon.

    python -m afbr.daemon.exabgp_bridge SOCKET

ExaBGP's JSON lines on stdin go to the daemon's bridge socket; the daemon's command lines come
back and go to stdout, which ExaBGP reads.  Nothing is parsed here.  If the daemon is not
reachable (it is restarting) the bridge retries for a while; when either side closes, it exits
and ExaBGP's own respawn or the daemon's supervisor brings a new one.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys
import time
from collections.abc import Callable

RETRY_SECONDS = 30.0
CHUNK = 1 << 18
HIGH_WATER = 4 * CHUNK  # stop reading a side while this much waits for the other one


def connect(path: str, deadline: float) -> socket.socket:
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
        else:
            return sock


class _Flow:
    """One direction: what was read from `src` waits in `pending` until `dst` takes it."""

    def __init__(
        self, src: int, dst: int, read: Callable[[], bytes], write: Callable[[bytearray], int]
    ) -> None:
        self.src = src
        self.dst = dst
        self._read = read
        self._write = write
        self.pending = bytearray()
        self.src_open = True  # no EOF from src yet
        self.dst_open = True  # dst still takes bytes

    def wants_read(self) -> bool:
        # Back-pressure: read only while less than HIGH_WATER waits.  Once dst is gone what
        # src says is dropped, so src is read on (a blocked writer there could not go on).
        return self.src_open and (len(self.pending) < HIGH_WATER or not self.dst_open)

    def wants_write(self) -> bool:
        return self.dst_open and bool(self.pending)

    def finished(self) -> bool:
        """Nothing more can come through: src ended and all of it was delivered, or dst is
        gone."""
        return (not self.src_open and not self.pending) or not self.dst_open

    def read(self) -> None:
        try:
            data = self._read()
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionError:  # a reset: like EOF
            data = b""
        if not data:
            self.src_open = False
        elif self.dst_open:
            self.pending += data

    def write(self) -> None:
        try:
            sent = self._write(self.pending)  # never blocks: partial writes are normal
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionError:  # EPIPE, a reset: dst is gone, what waits for it too
            self.dst_open = False
            self.pending.clear()
            return
        del self.pending[:sent]  # bytearray: cheap from the front


def pump(sock: socket.socket, stdin: int, stdout: int) -> None:
    """Copy stdin -> sock and sock -> stdout until either side closes, delivering what the
    closing side said last.  Every descriptor is non-blocking and each direction's buffer is
    bounded: a side is read only while less than HIGH_WATER of it waits for the other one, so
    a slow reader slows the writer (back-pressure) and a full pipe one way never stops the
    other way (ExaBGP writes to us with blocking writes and reads our output only between
    them: a bridge blocked writing to it while it is blocked writing to us would deadlock)."""
    sock_fd = sock.fileno()
    up = _Flow(stdin, sock_fd, lambda: os.read(stdin, CHUNK), sock.send)
    down = _Flow(sock_fd, stdout, lambda: sock.recv(CHUNK), lambda b: os.write(stdout, b))
    flows = (up, down)
    blocking = {fd: os.get_blocking(fd) for fd in (stdin, stdout)}
    for fd in blocking:
        os.set_blocking(fd, False)
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        # Go on while no direction is finished, or one whose source closed still delivers.
        while not any(f.finished() for f in flows) or any(
            not f.src_open and not f.finished() for f in flows
        ):
            readers = [f.src for f in flows if f.wants_read()]
            writers = [f.dst for f in flows if f.wants_write()]
            readable, writable, _ = select.select(readers, writers, [])
            for flow in flows:
                if flow.src in readable:
                    flow.read()
                if flow.dst in writable:
                    flow.write()
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(timeout)
            for fd, was_blocking in blocking.items():
                os.set_blocking(fd, was_blocking)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m afbr.daemon.exabgp_bridge SOCKET", file=sys.stderr)
        return 2
    try:
        sock = connect(argv[1], time.monotonic() + RETRY_SECONDS)
    except OSError as exc:
        print(f"afbr-bridge: cannot reach the afbr daemon at {argv[1]}: {exc}", file=sys.stderr)
        return 1
    with sock, contextlib.suppress(BrokenPipeError, ConnectionError):
        pump(sock, sys.stdin.fileno(), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
