"""`afbr run` says why a neighbor stays down when the keys do not match (TCP-MD5, RFC 2385).

The daemon runs with --no-dataplane in namespace `d`; its one neighbor, in namespace `n`,
connects to ExaBGP's listener with a key that differs from the daemon's.  The kernel in `d`
drops those SYNs and counts them; the daemon's periodic check names the neighbor in a
warning and `afbr status` carries the diagnosis, in JSON and in its text view.
"""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

import pytest

from afbr.daemon.control_socket import ControlClientError, request
from afbr.lab.netns import Lab
from afbr.lab.reflector_lab import CORE_PREFIX, write_client_config
from afbr.lab.tcp_md5 import md5_socket

pytestmark = [pytest.mark.netns]

CORE_ADDRESS = str(CORE_PREFIX[6][2])
NEIGHBOR = str(CORE_PREFIX[6][1])


def test_a_wrong_key_shows_as_the_down_neighbors_diagnosis(lab: Lab, tmp_path: Path) -> None:
    d, n = lab.host("d"), lab.host("n")
    lab.link(d, "eth0", n, "eth0")
    d.ip_batch([f"addr add {CORE_ADDRESS}/64 dev eth0 nodad"])
    n.ip_batch([f"addr add {NEIGHBOR}/64 dev eth0 nodad"])
    config = write_client_config(
        tmp_path, "a", CORE_ADDRESS, NEIGHBOR, prefixes=["198.51.100.0/25"], preference=["gre"]
    )
    log = tmp_path / "afbr.log"
    socket_path = tmp_path / "afbr.sock"
    d.popen(sys.executable, "-m", "afbr", "run", "-c", str(config), "--no-dataplane", log=log)

    def status() -> Any:
        with suppress(ControlClientError):
            return request(socket_path, "status")
        return None

    found = None
    deadline = time.monotonic() + 40
    while found is None and time.monotonic() < deadline:
        # The neighbor's BGP speaker tries again and again, with the wrong key.
        with closing(md5_socket(n, CORE_ADDRESS, b"not-the-daemons-key")) as client:
            client.settimeout(0.5)
            with suppress(TimeoutError, ConnectionRefusedError):
                client.connect((CORE_ADDRESS, 179))
        current = status()
        if current is not None and "diagnosis" in current["neighbors"][0]:
            found = current
    assert found is not None, log.read_text()[-3000:]
    neighbor = found["neighbors"][0]
    assert neighbor["address"] == NEIGHBOR and neighbor["state"] == "down"
    assert neighbor["diagnosis"].startswith("TCP-MD5 mismatch or missing key? (TCPMD5Failure=")
    text = log.read_text()
    assert f"BGP neighbor {NEIGHBOR} down while the kernel dropped TCP segments" in text
    shown = subprocess.run(
        [sys.executable, "-m", "afbr", "status", "--socket", str(socket_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert f"{NEIGHBOR}  yes  down: TCP-MD5 mismatch or missing key? (TCPMD5" in shown
