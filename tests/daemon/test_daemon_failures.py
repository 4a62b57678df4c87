"""`afbr run` when a part fails: the failure is shown, logged with its reason, and retried.

- ExaBGP cannot be started (no such program): `afbr status` says `failed: <reason>` and the
  supervisor keeps trying with its backoff; the daemon itself stays up and answers.
- nft fails once (a fault injector first on PATH, tests/daemon/nft_fault.py): the reconcile is
  reported failed and retried with backoff, and the decapsulation filter ends up installed;
  a table deleted behind the daemon's back comes back at the periodic resync.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from nft_fault import INJECTED, nft_failing_once

from afbr.daemon.control_socket import ControlClientError, request
from afbr.daemon.sync_scheduler import RESYNC_INTERVAL
from afbr.lab.daemon_base import BgpNeighbor
from afbr.lab.netns import Lab
from afbr.lab.peers import GoBgp
from afbr.lab.reflector_lab import (
    CORE_PREFIX,
    RR_ASN,
    RR_ROUTER_ID,
    reflector_lab,
    write_client_config,
)

FILTER_ROW = "decapsulated traffic is filtered against what each AFBR advertised"


def wait_for(probe: Callable[[], Any], timeout: float, what: str, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (ControlClientError, KeyError):
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}:\n" + log.read_text()[-4000:])


def test_a_missing_exabgp_shows_failed_in_status_and_is_retried(tmp_path: Path) -> None:
    """No namespace needed: with its ExaBGP never started, the daemon binds nothing."""
    config = write_client_config(
        tmp_path,
        "a",
        str(CORE_PREFIX[6][2]),
        str(CORE_PREFIX[6][1]),
        prefixes=["198.51.100.0/25"],
        preference=["gre"],
    )
    missing = tmp_path / "nowhere" / "exabgp"
    log = tmp_path / "afbr.log"
    socket_path = tmp_path / "afbr.sock"
    argv = [sys.executable, "-m", "afbr", "run", "-c", str(config), "--no-dataplane"]
    with log.open("wb") as out:
        proc = subprocess.Popen([*argv, "--exabgp", str(missing)], stdout=out, stderr=out)
    try:
        status = wait_for(
            lambda: (s := request(socket_path, "status"))["exabgp"]["restarts"] >= 2 and s,
            timeout=20,
            what="two failed starts of ExaBGP",
            log=log,
        )
        assert status["exabgp"]["state"].startswith("failed: ")
        assert str(missing) in status["exabgp"]["state"]
        shown = subprocess.run(
            [sys.executable, "-m", "afbr", "status", "--socket", str(socket_path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert f"exabgp: state failed: [Errno 2] No such file or directory: '{missing}'" in (
            shown.stdout
        )
        errors = [line for line in log.read_text().splitlines() if " ERROR " in line]
        assert len(errors) >= 2
        assert all(str(missing) in line and "trying again" in line for line in errors)
        assert proc.poll() is None  # the daemon stays up
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()


@pytest.mark.interop
@pytest.mark.netns
def test_nft_failing_once_is_retried_and_the_filter_installed(lab: Lab, tmp_path: Path) -> None:
    """One AFBR and a GoBGP reflector with Graceful Restart, whose End-of-RIB opens the gate
    at once; with no remote AFBR there is no tunnel to build (the host kernel may have none),
    only the filter."""
    topo = reflector_lab(lab, tmp_path, core=6, clients=["a"])
    neighbor = BgpNeighbor(
        topo.addresses["a"], RR_ASN, "md5-a-secret", rr_client=True, passive=True, name="a"
    )
    rr = GoBgp(
        topo.rr,
        tmp_path / "gobgp",
        asn=RR_ASN,
        router_id=RR_ROUTER_ID,
        local_address=topo.rr_address,
        neighbors=[neighbor],
        graceful_restart=True,  # End-of-RIB (RFC 4724 §2)
    ).start()
    workdir = tmp_path / "afbr-a"
    workdir.mkdir()
    config = write_client_config(
        workdir,
        "a",
        topo.addresses["a"],
        topo.rr_address,
        prefixes=["198.51.100.0/25"],
        preference=["gre"],
    )
    injector = nft_failing_once(tmp_path / "bin")
    log = workdir / "afbr.log"
    host = topo.clients["a"]
    proc = host.popen(
        sys.executable,
        "-m",
        "afbr",
        "run",
        "-c",
        str(config),
        log=log,
        env={"PATH": f"{injector}:{os.environ['PATH']}"},
    )
    rr.wait_established(topo.addresses["a"], timeout=40)
    socket_path = workdir / "afbr.sock"

    def status() -> dict[str, Any]:
        return request(socket_path, "status")  # type: ignore[no-any-return]

    done = wait_for(
        lambda: (s := status())["drops"]["decap_filter_installed"] == 1 and s,
        timeout=40,
        what="the filter installed",
        log=log,
    )
    daemon = done["daemon"]
    assert daemon["sync_errors"] == 1 and daemon["sync_retries"] >= 1, daemon
    assert daemon["syncs"] >= 1
    assert done["drops"]["dataplane_errors"] == 1
    text = log.read_text()
    assert INJECTED in text and "softwire reconcile failed (1 in a row); retrying in 1s" in text
    assert "chain input" in host.run("nft", "list", "table", "inet", "afbr")
    audit = {row["requirement"]: row for row in request(socket_path, "audit")}
    assert audit[FILTER_ROW]["status"] == "pass"

    # Deleted behind the daemon's back: the drop log's refresh sees it gone, the audit row
    # fails, and the periodic resync (no BGP change) writes the table again.
    host.run("nft", "delete", "table", "inet", "afbr")
    resyncs = daemon["resyncs"]
    wait_for(
        lambda: status()["drops"]["decap_filter_installed"] == 0,
        timeout=15,
        what="the deleted table seen",
        log=log,
    )
    audit = {row["requirement"]: row for row in request(socket_path, "audit")}
    assert audit[FILTER_ROW]["status"] == "fail"
    wait_for(
        lambda: (
            (s := status())["daemon"]["resyncs"] > resyncs
            and s["drops"]["decap_filter_installed"] == 1
        ),
        timeout=RESYNC_INTERVAL + 15,
        what="the periodic resync",
        log=log,
    )
    assert "chain input" in host.run("nft", "list", "table", "inet", "afbr")
    assert status()["daemon"]["resync_repairs"] >= 1  # counted as a repair, not a no-op
    shown = json.loads(
        host.run(sys.executable, "-m", "afbr", "status", "--json", "--socket", str(socket_path))
    )
    assert {"sync_errors", "sync_retries", "resyncs"} <= set(shown["daemon"])
    host.stop(proc)
    assert proc.returncode == 0, log.read_text()[-3000:]
