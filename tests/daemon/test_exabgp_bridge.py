"""The ExaBGP API-process bridge copies both ways, byte for byte, with bounded buffers."""

from __future__ import annotations

import os
import socket
import threading

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
