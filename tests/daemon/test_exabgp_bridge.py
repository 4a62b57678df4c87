"""The ExaBGP API-process bridge copies both ways, byte for byte, with bounded buffers, and
never blocks one way on the other: bursts larger than any pipe cross both ways at once."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from afbr.daemon.exabgp_bridge import HIGH_WATER, pump


def test_pump_copies_both_ways_when_the_daemon_reads_slowly() -> None:
    daemon_side, bridge_side = socket.socketpair()
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    from_exabgp = os.urandom(3 * HIGH_WATER + 123)  # more than the bridge may hold
    to_exabgp = b"announce route 192.0.2.0/24 next-hop self\n" * 5000
    received = bytearray()
    echoed = bytearray()

    all_echoed = threading.Event()

    def exabgp() -> None:
        with os.fdopen(stdin_w, "wb") as out:
            out.write(from_exabgp)  # blocks while the bridge holds HIGH_WATER: back-pressure
            out.flush()
            all_echoed.wait(10)  # then ExaBGP exits: the bridge must still deliver the rest

    def exabgp_reads() -> None:
        while chunk := os.read(stdout_r, 65536):
            echoed.extend(chunk)
            if len(echoed) >= len(to_exabgp):
                all_echoed.set()

    def daemon() -> None:
        daemon_side.sendall(to_exabgp)
        while len(received) < len(from_exabgp):
            chunk = daemon_side.recv(4096)  # small reads: a slow daemon
            if not chunk:
                break
            received.extend(chunk)

    threads = [threading.Thread(target=f) for f in (exabgp, exabgp_reads, daemon)]
    for t in threads:
        t.start()
    pump(bridge_side, stdin_r, stdout_w)  # ends when ExaBGP closes its side
    os.close(stdout_w)
    for t in threads:
        t.join(10)
    daemon_side.close()
    bridge_side.close()
    os.close(stdin_r)
    os.close(stdout_r)
    assert bytes(received) == from_exabgp
    assert bytes(echoed) == to_exabgp


BURST = 2 * HIGH_WATER + 12345  # more than 1 MiB, and more than the bridge may hold


def _burst_through_bridge(tmp_path: Path, blocked: str) -> tuple[bytes, bytes, bytes, bytes]:
    """Start a real bridge process between a socket we accept on ("the daemon") and its
    stdin/stdout ("ExaBGP"); both sides send BURST at once.  The `blocked` side writes its
    whole burst with blocking writes before it reads anything (ExaBGP's API writes are
    blocking); the other side reads while it writes.  Returns what each side sent and got."""
    path = tmp_path / "bridge.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(1)
        listener.settimeout(20)
        proc = subprocess.Popen(
            [sys.executable, "-m", "afbr.daemon.exabgp_bridge", str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        daemon, _ = listener.accept()
    assert proc.stdin is not None and proc.stdout is not None
    exabgp_in, exabgp_out = proc.stdin, proc.stdout.fileno()
    to_daemon, to_exabgp = os.urandom(BURST), os.urandom(BURST)
    got_daemon, got_exabgp = bytearray(), bytearray()

    def exabgp_writes() -> None:
        exabgp_in.write(to_daemon)
        exabgp_in.flush()

    def exabgp_reads() -> None:
        while len(got_exabgp) < BURST and (chunk := os.read(exabgp_out, 65536)):
            got_exabgp.extend(chunk)

    def daemon_writes() -> None:
        daemon.sendall(to_exabgp)

    def daemon_reads() -> None:
        while len(got_daemon) < BURST and (chunk := daemon.recv(65536)):
            got_daemon.extend(chunk)

    def one_after_the_other(*steps: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            for step in steps:
                step()

        return run

    if blocked == "exabgp":
        sides = [one_after_the_other(exabgp_writes, exabgp_reads), daemon_writes, daemon_reads]
    else:
        sides = [exabgp_writes, exabgp_reads, one_after_the_other(daemon_writes, daemon_reads)]

    def guarded(side: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            with contextlib.suppress(OSError, ValueError):  # the bridge killed on a deadlock
                side()

        return run

    threads = [threading.Thread(target=guarded(side), daemon=True) for side in sides]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = any(thread.is_alive() for thread in threads)
    try:
        assert not stuck, (
            f"deadlock: ExaBGP got {len(got_exabgp)}, the daemon {len(got_daemon)} of {BURST}"
        )
        exabgp_in.close()  # ExaBGP ends: the bridge exits, closing the daemon's connection
        assert proc.wait(timeout=10) == 0
        assert daemon.recv(1) == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        daemon.close()
    return to_daemon, bytes(got_daemon), to_exabgp, bytes(got_exabgp)


@pytest.mark.parametrize("blocked", ["exabgp", "daemon"])
def test_a_bridge_process_carries_bursts_both_ways_at_once(tmp_path: Path, blocked: str) -> None:
    to_daemon, got_daemon, to_exabgp, got_exabgp = _burst_through_bridge(tmp_path, blocked)
    assert got_daemon == to_daemon
    assert got_exabgp == to_exabgp


def test_the_daemon_closing_ends_the_pump_after_its_last_words() -> None:
    daemon_side, bridge_side = socket.socketpair()
    stdin_r, stdin_w = os.pipe()  # ExaBGP stays, silent
    stdout_r, stdout_w = os.pipe()
    last_words = b"withdraw route 192.0.2.0/24\n" * 10000  # more than the pipe holds
    echoed = bytearray()

    def exabgp_reads() -> None:
        while chunk := os.read(stdout_r, 65536):
            echoed.extend(chunk)

    def daemon_says_its_last_and_goes() -> None:
        daemon_side.sendall(last_words)
        daemon_side.close()

    reader = threading.Thread(target=exabgp_reads)
    sender = threading.Thread(target=daemon_says_its_last_and_goes)
    reader.start()
    sender.start()
    pump(bridge_side, stdin_r, stdout_w)
    os.close(stdout_w)
    reader.join(10)
    sender.join(10)
    for fd in (stdin_r, stdin_w, stdout_r):
        os.close(fd)
    bridge_side.close()
    assert bytes(echoed) == last_words
