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


def pump(sock: socket.socket, stdin: int, stdout: int) -> None:
    """Copy stdin -> sock and sock -> stdout until either side closes.  A side is read only
    while less than HIGH_WATER of it waits, so a slow reader slows the writer (the pipe's own
    back-pressure) instead of a buffer that grows and is copied on every write."""
    pending_out = bytearray()
    pending_sock = bytearray()
    while True:
        readers: list[int] = []
        if len(pending_out) < HIGH_WATER:
            readers.append(sock.fileno())
        if len(pending_sock) < HIGH_WATER:
            readers.append(stdin)
        writers: list[int] = ([stdout] if pending_out else []) + (
            [sock.fileno()] if pending_sock else []
        )
        readable, writable, _ = select.select(readers, writers, [])
        if stdin in readable:
            data = os.read(stdin, CHUNK)
            if not data:  # ExaBGP is gone: hand the daemon what it said last, then end
                sock.sendall(pending_sock)
                return
            pending_sock += data
        if sock.fileno() in readable:
            data = sock.recv(CHUNK)
            if not data:
                _write_all(stdout, pending_out)
                return
            pending_out += data
        if stdout in writable and pending_out:
            del pending_out[: os.write(stdout, pending_out)]  # bytearray: cheap from the front
        if sock.fileno() in writable and pending_sock:
            del pending_sock[: sock.send(pending_sock)]


def _write_all(fd: int, data: bytearray) -> None:
    while data:
        del data[: os.write(fd, data)]


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
