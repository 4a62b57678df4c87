"""SIGTERM stops `afbr run` cleanly, again and again: exit status 0, no ERROR, no traceback.

The daemon runs with --no-dataplane in a namespace of its own (its ExaBGP listens on the core
address, which exists only there); its one neighbor never answers, so each start is the same:
ExaBGP starts, its API process (afbr.daemon.exabgp_bridge) connects to the daemon's bridge
socket, and SIGTERM arrives with that connection's handler waiting in readline().  Python
3.11's asyncio logged an ERROR with a CancelledError traceback for such a handler when it was
still waiting as the daemon's run() returned (a race with the bridge seeing ExaBGP killed), so
the last test keeps a bridge connection open through shutdown on purpose.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from afbr.daemon.control_socket import ControlClientError, request
from afbr.daemon.runtime import AfbrDaemon
from afbr.lab.netns import Lab
from afbr.lab.reflector_lab import CORE_PREFIX, write_client_config

STARTS = 20
TIME_BUDGET = 60.0  # seconds: as many of STARTS as fit
CORE_ADDRESS = str(CORE_PREFIX[6][2])
NEIGHBOR = str(CORE_PREFIX[6][1])  # nobody: the session stays down


def wait_for_bridge(socket_path: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until the daemon counts its ExaBGP's API process connected."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if request(socket_path, "status")["daemon"]["bridge_connections"] >= 1:
                return
        except ControlClientError:
            pass
        time.sleep(0.05)
    raise AssertionError("ExaBGP's API process never connected:\n" + log.read_text()[-3000:])


@pytest.mark.netns
def test_sigterm_again_and_again_logs_no_error(lab: Lab, tmp_path: Path) -> None:
    host = lab.host("d")
    host.ip_batch([f"addr add {CORE_ADDRESS}/64 dev lo nodad"])
    config = write_client_config(
        tmp_path, "a", CORE_ADDRESS, NEIGHBOR, prefixes=["198.51.100.0/25"], preference=["gre"]
    )
    log = tmp_path / "afbr.log"
    socket_path = tmp_path / "afbr.sock"
    started = time.monotonic()
    runs = 0
    while runs < STARTS and time.monotonic() - started < TIME_BUDGET:
        proc = host.popen(
            sys.executable, "-m", "afbr", "run", "-c", str(config), "--no-dataplane", log=log
        )
        wait_for_bridge(socket_path, proc, log)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text()[-3000:]
        host.processes.remove(proc)
        runs += 1
    text = log.read_text()
    assert runs >= 5, f"only {runs} starts in {TIME_BUDGET:.0f}s"
    assert text.count("afbr.daemon: stopping the control plane") == runs
    assert "Traceback" not in text, text
    assert not [line for line in text.splitlines() if " ERROR " in line], text


STAND_IN_EXABGP = """\
#!{python}
\"\"\"A stand-in for ExaBGP, for tests only: instead of ExaBGP and its API process it starts
a client of the daemon's bridge socket in a session of its own, which keeps the connection
open, silent, after this process is killed; then it sleeps.\"\"\"
import subprocess, sys, time
HOLD = "import os, socket, sys, time; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
HOLD += "open(sys.argv[2], 'w').write(str(os.getpid())); time.sleep(60)"
argv = [sys.executable, "-c", HOLD, {bridge!r}, {pid_file!r}]
null = subprocess.DEVNULL  # not our stdout: the daemon reads that until it closes
subprocess.Popen(argv, stdin=null, stdout=null, stderr=null, start_new_session=True)
time.sleep(60)
"""


def test_a_bridge_connection_open_at_sigterm_ends_without_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_client_config(
        tmp_path, "a", CORE_ADDRESS, NEIGHBOR, prefixes=["198.51.100.0/25"], preference=["gre"]
    )
    stand_in = tmp_path / "exabgp"
    pid_file = tmp_path / "holder.pid"
    daemon = AfbrDaemon(config, exabgp=str(stand_in))
    stand_in.write_text(
        STAND_IN_EXABGP.format(
            python=sys.executable, bridge=str(daemon.bridge_path), pid_file=str(pid_file)
        )
    )
    stand_in.chmod(0o755)

    async def scenario() -> int:
        run = asyncio.create_task(daemon.run())
        deadline = time.monotonic() + 20
        while not (daemon.counters["bridge_connections"] and pid_file.exists()):
            assert not run.done() and time.monotonic() < deadline
            await asyncio.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)  # to the daemon's own handler
        return await asyncio.wait_for(run, 20)

    try:
        with caplog.at_level(logging.DEBUG):
            assert asyncio.run(scenario()) == 0
    finally:
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
    assert "ExaBGP bridge connection closed at shutdown" in caplog.text  # it was open
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
